"""What a checkpoint needs beyond weights for a resume to continue the run bit for bit: the
random-number states and the position in the data order.

* :func:`capture_rng` / :func:`restore_rng`: torch (CPU, and the run's CUDA device), numpy and
  python ``random`` global states, stored as tensors so the checkpoint stays plain.
* :func:`make_resumable`: USB's training samplers draw each epoch's order from the epoch number
  alone (``DistributedSampler.set_epoch``); a :class:`ResumableSampler` around one additionally
  skips the batches the interrupted run already consumed in that epoch, without loading them.

The loaders draw no other random numbers of their own (``generator`` is None; an iterator's base
seed comes from the global torch state, which the train loop keeps aside while it skips). With
``num_workers > 0`` the augmentations run in worker processes whose random state is not saved,
so such a resume is not exact (the device layer warns).
"""
from __future__ import annotations

import itertools
import random
from typing import Any, Dict, Optional

import numpy as np
import torch
from semilearn.datasets import DistributedSampler
from torch.utils.data import BatchSampler, DataLoader


def capture_rng(device: Optional[torch.device] = None) -> Dict[str, Any]:
    """The global random states as a dict of tensors and ints."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, py_state, py_gauss = random.getstate()
    out = {
        "torch": torch.get_rng_state(),
        "numpy": {"keys": torch.from_numpy(np.asarray(keys, dtype=np.uint32).astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss": py_gauss},
    }
    if device is not None and device.type == "cuda":
        out["cuda"] = torch.cuda.get_rng_state(device)
    return out


def restore_rng(state: Dict[str, Any], device: Optional[torch.device] = None) -> None:
    """Set the global random states from :func:`capture_rng`'s output."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss"]))
    if device is not None and device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


class ResumableSampler(DistributedSampler):
    """Wraps a training sampler: the next pass skips its first ``skip_next`` indices; everything
    else (order, length, ``set_epoch``) is the wrapped sampler's.  A ``DistributedSampler`` so that
    USB's ``DistSamplerSeedHook`` keeps setting the epoch."""

    def __init__(self, inner):  # noqa: D107 - no DistributedSampler.__init__: all state is the inner one's
        self.inner = inner
        self.skip_next = 0

    def __iter__(self):
        skip, self.skip_next = self.skip_next, 0
        return itertools.islice(iter(self.inner), skip, None)

    def __len__(self):
        return len(self.inner)

    def set_epoch(self, epoch):
        if hasattr(self.inner, "set_epoch"):
            self.inner.set_epoch(epoch)


def make_resumable(loader: DataLoader) -> DataLoader:
    """The same loader with a :class:`ResumableSampler` around its sampler (a loader without a
    sampler of its own, or one already resumable, is returned as is)."""
    if isinstance(loader.sampler, ResumableSampler) or loader.batch_sampler is None \
            or type(loader.batch_sampler) is not BatchSampler:
        return loader
    return DataLoader(loader.dataset, batch_size=loader.batch_size, shuffle=False, sampler=ResumableSampler(loader.sampler),
                      num_workers=loader.num_workers, collate_fn=loader.collate_fn, pin_memory=loader.pin_memory,
                      drop_last=loader.drop_last, timeout=loader.timeout, worker_init_fn=loader.worker_init_fn,
                      generator=loader.generator, persistent_workers=loader.persistent_workers)
