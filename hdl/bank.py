"""Embedding bank: one L2-normalised vector per training sample, addressed by dataset index."""

from __future__ import annotations

from typing import Dict, Union

import torch
import torch.nn.functional as F


# the stored row types, by the name of the key hdl_bank_dtype
DTYPES = {"float32": torch.float32, "float16": torch.float16}


class EmbeddingBank:
    """Stores the latest L2-normalised embedding of every training sample.

    Args:
        num_samples: number of training samples N (dataset indices are 0..N-1).
        dim: embedding dimension D.
        device: where the bank lives (``"cpu"`` by default); updates are moved there.
        dtype: ``torch.float32`` (default) or ``torch.float16`` for the stored rows; float16 halves
            the memory (1M x 128: 256 MB instead of 512 MB).  Rows are normalised in float32 and
            then stored; readers upcast (:func:`hdl.refresh.refresh` searches in float32).

    State (saved by ``state_dict``):
        ``feats``: (N, D) in ``dtype``; rows never written are zeros.
        ``counts``: int64 (N,); how many vectors each index has received (duplicates in one
        ``update`` call all count).  ``filled = counts > 0``.
    """

    def __init__(self, num_samples: int, dim: int, device: Union[str, torch.device] = "cpu",
                 dtype: torch.dtype = torch.float32):
        for name, value in (("num_samples", num_samples), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if dtype not in DTYPES.values():
            raise ValueError(f"dtype must be one of {[str(d) for d in DTYPES.values()]}, got {dtype!r}")
        self.num_samples = num_samples
        self.dim = dim
        self.device = torch.device(device)
        self.dtype = dtype
        self.feats = torch.zeros(num_samples, dim, dtype=dtype, device=self.device)
        self.counts = torch.zeros(num_samples, dtype=torch.int64, device=self.device)

    def __len__(self) -> int:
        return self.num_samples

    @property
    def filled(self) -> torch.Tensor:
        """bool (N,): True where the index has received at least one vector."""
        return self.counts > 0

    @property
    def num_filled(self) -> int:
        return int(self.filled.sum())

    @torch.no_grad()
    def update(self, idx: torch.Tensor, feats: torch.Tensor, check: bool = True) -> None:
        """Store ``feats`` (B, D) at dataset indices ``idx`` (B,) int64.

        The vectors are detached, cast to float32, L2-normalised, stored in the bank's dtype and
        moved to the bank's device.  When an index appears more than once in ``idx`` the last
        occurrence is stored.

        ``check=False`` skips the value checks (index range, NaN/inf), which read values back to
        the host; the write itself never does, so a trusted caller (the training step, with indices
        it computed itself) updates a CUDA bank without a device->host synchronisation.  Types and
        shapes are checked either way.  Unchecked, an index out of range fails in the indexing
        (on CUDA: a device-side assert) and NaN rows are stored (the next search reports them).

        Raises:
            TypeError: ``idx`` not an integer tensor, ``feats`` not floating point.
            ValueError: shape mismatch, and with ``check``: index out of [0, N), NaN/inf in ``feats``.
        """
        if not isinstance(idx, torch.Tensor) or idx.dtype not in (torch.int64, torch.int32):
            raise TypeError(f"idx must be an int64 (or int32) tensor, got "
                            f"{getattr(idx, 'dtype', type(idx).__name__)}")
        if not isinstance(feats, torch.Tensor) or not torch.is_floating_point(feats):
            raise TypeError(f"feats must be a floating point tensor, got "
                            f"{getattr(feats, 'dtype', type(feats).__name__)}")
        if idx.dim() != 1 or feats.dim() != 2 or feats.shape != (idx.shape[0], self.dim):
            raise ValueError(f"expected idx of shape (B,) and feats of shape (B, {self.dim}), got "
                             f"{tuple(idx.shape)} and {tuple(feats.shape)}")
        if idx.numel() == 0:
            return
        idx = idx.to(self.device, torch.int64)
        x = feats.detach().to(self.device, torch.float32)
        if check:
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= self.num_samples:
                raise ValueError(f"idx values must lie in [0, {self.num_samples}), got range [{lo}, {hi}]")
            bad = int((~torch.isfinite(x)).any(dim=1).sum())
            if bad:
                raise ValueError(f"feats has {bad} row(s) with NaN or inf values")
        x = F.normalize(x, dim=1).to(self.dtype)
        # every occurrence of an index writes the row of its last occurrence: the copies agree, so
        # the result does not depend on the order of the writes
        self.feats.index_copy_(0, idx, x[_last_occurrence(idx)])
        self.counts.index_add_(0, idx, torch.ones_like(idx))

    def features(self) -> torch.Tensor:
        """The stored (N, D) matrix itself (not a copy, in the bank's dtype); unfilled rows are zeros."""
        return self.feats

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """Copies of ``feats`` (N, D, in the bank's dtype) and ``counts`` (N,)."""
        return {"feats": self.feats.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore from ``state_dict()`` output; sizes must match this bank's (N, D).  ``feats`` of
        either dtype loads and is cast to this bank's (a float32 state into a float16 bank rounds)."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict, got {type(state).__name__}")
        missing = {"feats", "counts"} - set(state)
        extra = set(state) - {"feats", "counts"}
        if missing or extra:
            raise ValueError(f"bank state must have exactly the keys ['counts', 'feats']; "
                             f"missing {sorted(missing)}, unexpected {sorted(extra)}")
        feats, counts = state["feats"], state["counts"]
        if tuple(feats.shape) != (self.num_samples, self.dim):
            raise ValueError(f"bank state 'feats' has shape {tuple(feats.shape)}, this bank expects "
                             f"({self.num_samples}, {self.dim}) (num_samples, dim)")
        if tuple(counts.shape) != (self.num_samples,):
            raise ValueError(f"bank state 'counts' has shape {tuple(counts.shape)}, this bank expects "
                             f"({self.num_samples},)")
        if not torch.is_floating_point(feats):
            raise TypeError(f"bank state 'feats' must be floating point, got {feats.dtype}")
        self.feats = feats.detach().to(self.device, self.dtype).clone()
        self.counts = counts.detach().to(self.device, torch.int64).clone()


def _last_occurrence(idx: torch.Tensor) -> torch.Tensor:
    """int64 (B,): for each position of ``idx`` (B,), the position of the last occurrence of its
    value.  Sort-based, without reading values back to the host."""
    order = torch.sort(idx, stable=True).indices  # equal values keep their order of positions
    s = idx[order]
    pos = torch.arange(idx.numel(), device=idx.device)
    run_end = torch.ones_like(s, dtype=torch.bool)
    run_end[:-1] = s[1:] != s[:-1]
    # each sorted position -> the first run end at or after it (a reversed running minimum)
    end = torch.where(run_end, pos, torch.full_like(pos, idx.numel())).flip(0).cummin(0).values.flip(0)
    out = torch.empty_like(idx)
    out[order] = order[end]
    return out
