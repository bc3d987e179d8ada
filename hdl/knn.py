"""Exact k-nearest-neighbour search by inner product, with interchangeable backends.

Vectors are expected to be L2-normalised float32 rows, so the inner product is the cosine
similarity and larger scores are closer.  Three backends return the same answer (up to the order
of exactly tied scores):

* ``"torch"``: blocked matrix multiply + ``topk`` on the input's device; the reference.
* ``"faiss"``: ``faiss.IndexFlatIP`` on the CPU.
* ``"faiss-gpu"``: ``faiss.GpuIndexFlatIP``; needs a faiss build with GPUs (``faiss-gpu-cu12``).
  CUDA tensors go to it through ``faiss.contrib.torch_utils``: no host copy, results on the GPU.

``"auto"`` picks faiss-gpu for CUDA inputs when faiss sees a GPU and a tiny test search on that
device works, faiss (CPU) for CPU inputs, and torch otherwise: a CUDA input without GPU faiss
stays on its GPU with torch rather than being copied to a CPU index.  When faiss reports a GPU
but its test search fails (e.g. a faiss-gpu wheel built for another CUDA runtime than the one
present), one warning says why and the torch backend runs on the GPU instead; it never raises.
The choice is logged once per backend on the ``"hdl"`` logger.

Sentinels: where fewer than ``k`` neighbours exist (``k`` larger than the base, or than the base
minus the query itself under ``exclude_self``), the missing columns hold index ``-1`` and
similarity ``-inf``.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from typing import Optional, Tuple, Union

import numpy as np
import torch

logger = logging.getLogger("hdl")

BACKENDS = ("auto", "torch", "faiss", "faiss-gpu")
_INSTALL_HINT = (
    "pip install faiss-cpu (or the GPU build in its place, never both: pip uninstall -y faiss-cpu && "
    "pip install faiss-gpu-cu12; docs/gpu.md: FAISS on the GPU); the pure-torch backend works without it"
)
# faiss CPU brute-force block sizes (query rows x base rows per BLAS call); larger than faiss's
# defaults (4096 x 1024) for better matmul efficiency at the cost of a 128 MiB score buffer
FAISS_BLAS_QUERY_BS = 16384
FAISS_BLAS_DATABASE_BS = 2048
_logged_backends: set = set()
_gpu_resources: dict = {}
_gpu_checked: dict = {}  # GPU id -> None when faiss-gpu's test search worked there, else why not

ArrayLike = Union[torch.Tensor, np.ndarray]


def _import_faiss():
    """Return the faiss module or None when it is not installed."""
    try:
        import faiss  # noqa: PLC0415
    except ImportError:
        return None
    return faiss


def faiss_num_gpus() -> int:
    """Number of GPUs faiss can use; 0 without faiss or with a CPU-only build."""
    faiss = _import_faiss()
    if faiss is None or not hasattr(faiss, "get_num_gpus"):
        return 0
    try:
        return int(faiss.get_num_gpus())
    except Exception:  # CPU builds may raise instead of returning 0
        return 0


def _device_id(device: torch.device) -> int:
    return device.index if device.type == "cuda" and device.index is not None else 0


def faiss_gpu_problem(device: torch.device) -> Optional[str]:
    """None when faiss's GPU index works on CUDA ``device`` (checked once per GPU with a 4-row
    search), else why not, in words.  Never raises."""
    device_id = _device_id(device)
    if device_id in _gpu_checked:
        return _gpu_checked[device_id]
    faiss = _import_faiss()
    if faiss is None:
        why = "faiss is not installed"
    elif faiss_num_gpus() == 0:
        why = "faiss has no GPU (faiss.get_num_gpus() == 0: a CPU build, or no visible GPU)"
    else:
        try:
            x = np.eye(4, dtype=np.float32)
            index = _gpu_index(faiss, 4, device_id)
            index.add(x)
            _, idx = index.search(x, 1)
            found = np.asarray(idx).reshape(-1)
            why = None if np.array_equal(found, np.arange(4)) else f"a test search returned {found.tolist()}"
        except Exception as e:  # e.g. a CUDA runtime the faiss-gpu wheel was not built for
            why = f"{type(e).__name__}: {e}".strip()
    _gpu_checked[device_id] = why
    return why


def resolve_backend(backend: str, device: torch.device) -> str:
    """Map ``backend`` (one of ``BACKENDS``) to the concrete backend that will run.

    ``"auto"`` -> ``"faiss-gpu"`` if ``device`` is CUDA and faiss's GPU index works there
    (:func:`faiss_gpu_problem`); ``"faiss"`` if ``device`` is the CPU and faiss is installed;
    ``"torch"`` otherwise (with a warning when faiss is missing, or when faiss has a GPU that
    fails its test search).  An explicit faiss backend that is unavailable raises ``ImportError``.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    faiss = _import_faiss()
    if backend == "auto":
        if device.type == "cuda" and faiss_num_gpus() > 0:
            first = _device_id(device) not in _gpu_checked
            why = faiss_gpu_problem(device)
            chosen = "faiss-gpu" if why is None else "torch"
            if why is not None and first:
                warnings.warn(f"faiss-gpu does not run on {device} ({why}); the kNN search uses the torch "
                              "backend on the GPU instead. faiss-gpu-cu12 needs a CUDA 12 runtime next to "
                              "torch's (docs/gpu.md: FAISS on the GPU); backend='torch' silences this", stacklevel=3)
        elif device.type == "cuda":
            chosen = "torch"
        elif faiss is not None:
            chosen = "faiss"
        else:
            warnings.warn(f"faiss is not installed; kNN search falls back to torch. {_INSTALL_HINT}",
                          stacklevel=3)
            chosen = "torch"
    else:
        chosen = backend
        if chosen in ("faiss", "faiss-gpu") and faiss is None:
            raise ImportError(f"backend={backend!r} needs faiss, which is not installed: {_INSTALL_HINT}")
        if chosen == "faiss-gpu" and faiss_num_gpus() == 0:
            raise ImportError("backend='faiss-gpu' needs a faiss build with GPU support and a visible GPU "
                              "(faiss.get_num_gpus() == 0): pip uninstall -y faiss-cpu && pip install "
                              "faiss-gpu-cu12, or use backend='torch' or 'faiss'")
    if chosen not in _logged_backends:
        _logged_backends.add(chosen)
        logger.info("kNN backend: %s (requested %r, input device %s)", chosen, backend, device)
    return chosen


def _as_tensor(x: ArrayLike, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or numpy.ndarray, got {type(x).__name__}")
    if x.dim() != 2:
        raise ValueError(f"{name} must have shape (n, dim), got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must be floating point, got dtype {x.dtype}")
    x = x.detach().to(torch.float32)
    bad = int((~torch.isfinite(x)).any(dim=1).sum())
    if bad:
        raise ValueError(f"{name} has {bad} row(s) with NaN or inf values out of {x.shape[0]}")
    return x


def torch_block_rows(n_q: int, n_b: int) -> int:
    """Query rows per matrix-multiply block of the torch backend when ``block_size`` is None:
    about 64 Mi similarity entries per block."""
    return max(1, min(n_q, (1 << 26) // max(n_b, 1)))


def _search_torch(q: torch.Tensor, b: torch.Tensor, k: int, exclude_self: bool,
                  block_size: Optional[int]) -> Tuple[torch.Tensor, torch.Tensor]:
    n_q, n_b = q.shape[0], b.shape[0]
    if block_size is None:
        block_size = torch_block_rows(n_q, n_b)
    sims_out = torch.empty(n_q, k, dtype=torch.float32, device=q.device)
    idx_out = torch.empty(n_q, k, dtype=torch.int64, device=q.device)
    bt = b.t().contiguous()
    for start in range(0, n_q, block_size):
        stop = min(start + block_size, n_q)
        s = q[start:stop] @ bt
        if exclude_self:
            rows = torch.arange(stop - start, device=q.device)
            s[rows, rows + start] = float("-inf")
        vals, ids = torch.topk(s, k, dim=1, largest=True, sorted=True)
        sims_out[start:stop] = vals
        idx_out[start:stop] = ids
    return sims_out, idx_out


def _gpu_index(faiss, dim: int, device_id: int):
    res = _gpu_resources.get(device_id)
    if res is None:
        res = _gpu_resources[device_id] = faiss.StandardGpuResources()
    cfg = faiss.GpuIndexFlatConfig()
    cfg.device = device_id
    return faiss.GpuIndexFlatIP(res, dim, cfg)


def _search_faiss_gpu(q: torch.Tensor, b: torch.Tensor, k: int,
                      device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    """faiss's GPU index on torch tensors (``faiss.contrib.torch_utils``: CUDA tensors are read
    in place, results come back as tensors on their device)."""
    faiss = _import_faiss()
    try:
        importlib.import_module("faiss.contrib.torch_utils")  # from here on faiss indexes take torch tensors
        index = _gpu_index(faiss, b.shape[1], _device_id(device))
        index.add(b.contiguous())
        return index.search(q.contiguous(), k)
    except Exception as e:
        raise RuntimeError(f"backend='faiss-gpu' failed on {device} ({type(e).__name__}: {e}); "
                           "backend='auto' falls back to torch on the GPU when faiss-gpu does not run "
                           "(docs/gpu.md: FAISS on the GPU)") from e


def _search_faiss(q: torch.Tensor, b: torch.Tensor, k: int, gpu: bool,
                  device: torch.device) -> Tuple[torch.Tensor, torch.Tensor]:
    if gpu:
        return _search_faiss_gpu(q, b, k, device)
    faiss = _import_faiss()
    qn = np.ascontiguousarray(q.cpu().numpy(), dtype=np.float32)
    bn = np.ascontiguousarray(b.cpu().numpy(), dtype=np.float32)
    index = faiss.IndexFlatIP(bn.shape[1])
    index.add(bn)
    cvar = getattr(faiss, "cvar", None)
    saved = None
    if cvar is not None and hasattr(cvar, "distance_compute_blas_query_bs"):
        saved = (cvar.distance_compute_blas_query_bs, cvar.distance_compute_blas_database_bs)
        cvar.distance_compute_blas_query_bs = FAISS_BLAS_QUERY_BS
        cvar.distance_compute_blas_database_bs = FAISS_BLAS_DATABASE_BS
    try:
        sims, idx = index.search(qn, k)
    finally:
        if saved is not None:
            cvar.distance_compute_blas_query_bs, cvar.distance_compute_blas_database_bs = saved
    return torch.from_numpy(sims), torch.from_numpy(idx)


def _drop_self(sims: torch.Tensor, idx: torch.Tensor, k: int,
               own: Optional[torch.Tensor] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Remove each row's own index (``own`` (n,), default the row numbers) from a (n, k + 1)
    result; if absent, drop the last column."""
    own = (torch.arange(idx.shape[0], device=idx.device) if own is None else own.to(idx.device)).unsqueeze(1)
    is_self = idx == own
    # the column to drop: the self entry when present, else the last (worst) one
    drop = torch.where(is_self.any(dim=1), is_self.int().argmax(dim=1),
                       torch.full_like(own.squeeze(1), idx.shape[1] - 1))
    keep = torch.ones_like(idx, dtype=torch.bool)
    keep[torch.arange(idx.shape[0], device=idx.device), drop] = False
    return sims[keep].view(-1, k), idx[keep].view(-1, k)


@torch.no_grad()
def knn_search(queries: ArrayLike, base: ArrayLike, k: int, backend: str = "auto",
               exclude_self: bool = False,
               block_size: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """Top-``k`` inner-product neighbours of every query row in ``base``.

    Args:
        queries: (Q, D) float tensor or array; L2-normalised rows for cosine similarity.
        base: (N, D) float tensor or array on the same device as ``queries``.
        k: number of neighbours (positive int); may exceed the base size (see sentinels).
        backend: ``"auto"`` | ``"torch"`` | ``"faiss"`` | ``"faiss-gpu"`` (see module docstring).
        exclude_self: self-search mode: ``queries`` and ``base`` are the same rows (Q == N) and
            row i never lists index i, even when other rows are exact duplicates of it.
        block_size: query rows per matrix-multiply block of the torch backend (None: automatic,
            about 64 Mi scores per block); unused by the faiss backends.

    Returns:
        ``(sims, idx)``: float32 (Q, k) scores in descending order along each row and int64
        (Q, k) base indices, on the device of ``queries`` (CPU for numpy input).  Missing
        neighbours are ``idx == -1`` with ``sims == -inf``.  The order of exactly tied scores is
        backend dependent.

    Raises:
        ValueError: bad shapes, ``k`` < 1, or rows with NaN/inf (the count of bad rows is named).
        TypeError: non-floating input.
        ImportError: an explicit faiss backend without faiss.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive int, got {k!r}")
    k = int(k)
    device = queries.device if isinstance(queries, torch.Tensor) else torch.device("cpu")
    q = _as_tensor(queries, "queries")
    b = _as_tensor(base, "base")
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"queries and base must have the same dim, got {q.shape[1]} and {b.shape[1]}")
    if q.device != b.device:
        raise ValueError(f"queries and base must be on the same device, got {q.device} and {b.device}")
    if exclude_self and q.shape[0] != b.shape[0]:
        raise ValueError("exclude_self=True needs queries to be the base rows themselves "
                         f"(same count), got {q.shape[0]} queries and {b.shape[0]} base rows")
    chosen = resolve_backend(backend, device)

    n_avail = b.shape[0] - (1 if exclude_self else 0)
    k_eff = min(k, n_avail)
    n_q = q.shape[0]
    sims = torch.full((n_q, k), float("-inf"), dtype=torch.float32, device=device)
    idx = torch.full((n_q, k), -1, dtype=torch.int64, device=device)
    if k_eff <= 0 or n_q == 0:
        return sims, idx

    if chosen == "torch":
        s, i = _search_torch(q, b, k_eff, exclude_self, block_size)
    else:
        s, i = _search_faiss(q, b, k_eff + (1 if exclude_self else 0), chosen == "faiss-gpu", device)
        if exclude_self:
            s, i = _drop_self(s, i, k_eff)
    sims[:, :k_eff] = s.to(device)
    idx[:, :k_eff] = i.to(device)
    return sims, idx


def knn_graph(feats: ArrayLike, k: int, backend: str = "auto",
              block_size: Optional[int] = None) -> Tuple[torch.Tensor, torch.Tensor]:
    """kNN graph of ``feats`` (N, D): each row's top-``k`` neighbours, itself excluded.

    Same as ``knn_search(feats, feats, k, backend, exclude_self=True)``; returns float32 (N, k)
    similarities and int64 (N, k) indices with the ``-1`` / ``-inf`` sentinels when k >= N.
    """
    return knn_search(feats, feats, k, backend=backend, exclude_self=True, block_size=block_size)
