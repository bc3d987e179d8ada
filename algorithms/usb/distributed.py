"""Several training processes on torch.distributed: the process group, and the collectives HDL needs.

Launching follows torch's conventions: ``torchrun --nproc_per_node N $(which hdl-train) --config ...``
(or any launcher that sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR`` and
``MASTER_PORT``), so the same command runs across machines.  USB's ``dist_url`` /
``multiprocessing_distributed`` spawning is not used.  The backend is gloo for CPU training and
nccl for CUDA (each process on ``cuda:LOCAL_RANK``).

What is shared between the processes (:class:`hdl.algorithms.usb.hdl_wrapper.HDLMixin`):

* every train step all-gathers the (sample index, feature) rows each process computed, so every
  process writes the same rows into its embedding bank and diagnostics (as USB's SimMatch gathers
  its memory bank);
* at a refresh each process embeds its share of the training set (every ``WORLD_SIZE``-th image),
  the shares are all-gathered into every bank, the labeling runs once on rank 0 and its result is
  broadcast; every process then holds the identical pool, which is checked at each refresh by
  comparing the processes' pool digests (:func:`pool_digest`).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any, List, Optional, Sequence, Tuple

import torch
import torch.distributed as dist

ENV_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@dataclass(frozen=True)
class ProcessGroup:
    """Where this process stands: ``rank`` of ``world_size`` (``local_rank`` on its machine)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: Optional[str] = None

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(env, name: str) -> int:
    raw = env.get(name)
    try:
        value = int(raw)
    except (TypeError, ValueError):
        raise ValueError(f"environment variable {name}: expected an integer, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"environment variable {name}: expected an integer >= 0, got {value}")
    return value


def from_env(env=None) -> ProcessGroup:
    """The process layout torchrun's environment describes (one process when ``WORLD_SIZE`` is unset
    or 1).  A partial or inconsistent environment raises ValueError naming the variable."""
    env = os.environ if env is None else env
    if env.get("WORLD_SIZE") in (None, "", "1"):
        return ProcessGroup()
    world = _env_int(env, "WORLD_SIZE")
    missing = [k for k in ENV_KEYS if not env.get(k)]
    if missing:
        raise ValueError(f"WORLD_SIZE={world} asks for several processes but {', '.join(missing)} "
                         f"{'is' if len(missing) == 1 else 'are'} not set; launch with torchrun "
                         f"(torchrun --nproc_per_node {world} $(which hdl-train) --config ...)")
    rank, local = _env_int(env, "RANK"), _env_int(env, "LOCAL_RANK")
    if rank >= world:
        raise ValueError(f"environment variable RANK: expected 0 <= RANK < WORLD_SIZE={world}, got {rank}")
    return ProcessGroup(rank, world, local)


def process_device(group: ProcessGroup, device: torch.device) -> torch.device:
    """A CUDA device without an index becomes ``cuda:LOCAL_RANK`` when several processes run."""
    if group.distributed and device.type == "cuda":
        return torch.device("cuda", group.local_rank)
    return device


def init(group: ProcessGroup, device: torch.device) -> ProcessGroup:
    """Join the process group (gloo on CPU, nccl on CUDA); a no-op for one process."""
    if not group.distributed:
        return group
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://", rank=group.rank,
                                world_size=group.world_size)
    return ProcessGroup(group.rank, group.world_size, group.local_rank, backend)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


@torch.no_grad()
def gather_rows(idx: torch.Tensor, feats: torch.Tensor, equal_sizes: bool = False) -> Tuple[torch.Tensor, torch.Tensor]:
    """All-gather every process's (index (B_r,), rows (B_r, D)) in rank order; the row counts may
    differ between processes.  ``equal_sizes``: the caller knows every process has as many rows
    (a train step's batch), so the counts are not exchanged and nothing is read on the host.  One
    process: the inputs as they are."""
    if not active():
        return idx, feats
    world = dist.get_world_size()
    device = feats.device
    if equal_sizes:
        all_i = [torch.empty_like(idx) for _ in range(world)]
        all_f = [torch.empty_like(feats) for _ in range(world)]
        dist.all_gather(all_i, idx.contiguous())
        dist.all_gather(all_f, feats.contiguous())
        return torch.cat(all_i), torch.cat(all_f)
    n = torch.tensor([idx.shape[0]], dtype=torch.int64, device=device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes = [int(s) for s in sizes]
    most = max(sizes)
    pad_i = torch.full((most,), -1, dtype=torch.int64, device=device)
    pad_i[: idx.shape[0]] = idx.to(device, torch.int64)
    pad_f = torch.zeros(most, feats.shape[1], dtype=feats.dtype, device=device)
    pad_f[: feats.shape[0]] = feats
    all_i = [torch.empty_like(pad_i) for _ in range(world)]
    all_f = [torch.empty_like(pad_f) for _ in range(world)]
    dist.all_gather(all_i, pad_i)
    dist.all_gather(all_f, pad_f)
    return (torch.cat([t[:s] for t, s in zip(all_i, sizes)]),
            torch.cat([t[:s] for t, s in zip(all_f, sizes)]))


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """``obj`` of rank ``src`` on every process (pickled; tensors should be on the CPU)."""
    if not active():
        return obj
    box = [obj if dist.get_rank() == src else None]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: Any) -> List[Any]:
    """Every process's ``obj``, in rank order (one process: ``[obj]``)."""
    if not active():
        return [obj]
    out: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, obj)
    return out


def tensors_to(obj: Any, device) -> Any:
    """``obj`` with every tensor on ``device``: dicts, lists, tuples and (frozen) dataclasses are
    walked; what crosses processes as a pickle travels on the CPU."""
    import dataclasses

    if torch.is_tensor(obj):
        return obj.to(device)
    if isinstance(obj, dict):
        return {k: tensors_to(v, device) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(tensors_to(v, device) for v in obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.replace(obj, **{f.name: tensors_to(getattr(obj, f.name), device)
                                           for f in dataclasses.fields(obj) if f.init})
    return obj


def pool_digest(tensors: Sequence[torch.Tensor]) -> str:
    """SHA-256 of the tensors' bytes (CPU copies), in order: equal digests <=> equal contents."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str((t.dtype, tuple(t.shape))).encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def shard(n: int, rank: int, world: int) -> torch.Tensor:
    """Positions ``rank, rank + world, ...`` of ``range(n)``: this process's share of a pass."""
    return torch.arange(rank, n, world, dtype=torch.int64)
