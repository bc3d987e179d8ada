"""Embedding bank: one L2-normalised vector per training sample, addressed by dataset index."""

from __future__ import annotations

from typing import Dict, Union

import torch
import torch.nn.functional as F


class EmbeddingBank:
    """Stores the latest L2-normalised embedding of every training sample.

    Args:
        num_samples: number of training samples N (dataset indices are 0..N-1).
        dim: embedding dimension D.
        device: where the bank lives (``"cpu"`` by default); updates are moved there.

    State (saved by ``state_dict``):
        ``feats``: float32 (N, D); rows never written are zeros.
        ``counts``: int64 (N,); how many vectors each index has received (duplicates in one
        ``update`` call all count).  ``filled = counts > 0``.
    """

    def __init__(self, num_samples: int, dim: int, device: Union[str, torch.device] = "cpu"):
        for name, value in (("num_samples", num_samples), ("dim", dim)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        self.num_samples = num_samples
        self.dim = dim
        self.device = torch.device(device)
        self.feats = torch.zeros(num_samples, dim, dtype=torch.float32, device=self.device)
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
    def update(self, idx: torch.Tensor, feats: torch.Tensor) -> None:
        """Store ``feats`` (B, D) at dataset indices ``idx`` (B,) int64.

        The vectors are detached, cast to float32, L2-normalised and moved to the bank's device.
        When an index appears more than once in ``idx`` the last occurrence is stored.

        Raises:
            TypeError: ``idx`` not an integer tensor, ``feats`` not floating point.
            ValueError: shape mismatch, index out of [0, N), or NaN/inf in ``feats``.
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
        lo, hi = int(idx.min()), int(idx.max())
        if lo < 0 or hi >= self.num_samples:
            raise ValueError(f"idx values must lie in [0, {self.num_samples}), got range [{lo}, {hi}]")
        x = feats.detach().to(self.device, torch.float32)
        bad = int((~torch.isfinite(x)).any(dim=1).sum())
        if bad:
            raise ValueError(f"feats has {bad} row(s) with NaN or inf values")
        x = F.normalize(x, dim=1)
        uniq, inverse = torch.unique(idx, return_inverse=True)
        pos = torch.arange(idx.numel(), device=self.device)
        last = torch.full((uniq.numel(),), -1, dtype=torch.int64, device=self.device)
        last.scatter_reduce_(0, inverse, pos, reduce="amax")
        self.feats[uniq] = x[last]
        self.counts += torch.bincount(idx, minlength=self.num_samples)

    def features(self) -> torch.Tensor:
        """The stored (N, D) float32 matrix itself (not a copy); unfilled rows are zeros."""
        return self.feats

    def state_dict(self) -> Dict[str, torch.Tensor]:
        """Copies of ``feats`` (N, D) and ``counts`` (N,)."""
        return {"feats": self.feats.clone(), "counts": self.counts.clone()}

    def load_state_dict(self, state: Dict[str, torch.Tensor]) -> None:
        """Restore from ``state_dict()`` output; sizes must match this bank's (N, D)."""
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
        self.feats = feats.detach().to(self.device, torch.float32).clone()
        self.counts = counts.detach().to(self.device, torch.int64).clone()
