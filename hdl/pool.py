"""The labeled pool: the HDL label, vote agreement and level of every sample, by sample index.

One owner for the pool's state (saved, restored and versioned here); the training wrappers,
``hdl-relabel`` and ``hdl-relabel-run`` read it, never loose tensors.

Sentinels: ``labels == -1`` (no HDL label; the given labels are not stored in the pool),
``level == -1`` for the same samples.  Tensors live on ``device`` (the pool follows the bank).
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Tuple

import torch

POOL_VERSION = 1


class LabelPool:
    """labels int64 (N,), agreement float32 (N,) in [0, 1], level int64 (N,) (round of HDL's
    labeling that set the label, >= 1), all indexed by sample index in [0, N)."""

    def __init__(self, num_samples: int, device: torch.device | str = "cpu"):
        if isinstance(num_samples, bool) or not isinstance(num_samples, int) or num_samples < 0:
            raise ValueError(f"num_samples must be an int >= 0, got {num_samples!r}")
        self.num_samples = num_samples
        self.device = torch.device(device)
        self.labels = torch.full((num_samples,), -1, dtype=torch.long, device=self.device)
        self.agreement = torch.zeros(num_samples, dtype=torch.float32, device=self.device)
        self.level = torch.full((num_samples,), -1, dtype=torch.long, device=self.device)

    # ------------------------------------------------------------------ contents
    @property
    def size(self) -> int:
        """Number of samples holding an HDL label."""
        return int((self.labels >= 0).sum())

    @property
    def nonempty(self) -> bool:
        return bool((self.labels >= 0).any())

    def clear(self) -> None:
        self.labels.fill_(-1)
        self.agreement.zero_()
        self.level.fill_(-1)

    @torch.no_grad()
    def assign(self, ids: torch.Tensor, labels: torch.Tensor, agreement: torch.Tensor, level: torch.Tensor,
               given: torch.Tensor) -> torch.Tensor:
        """Replace the pool by the labeling of the samples ``ids`` (int64 (M,)): rows with a label
        (``labels >= 0``) that were not ``given`` (bool (M,)) enter the pool.  Returns the sample
        indices that entered (int64, on the pool's device)."""
        m = ids.shape[0]
        for name, t in (("labels", labels), ("agreement", agreement), ("level", level), ("given", given)):
            if t.shape != (m,):
                raise ValueError(f"{name} must have shape ({m},) like ids, got {tuple(t.shape)}")
        self.clear()
        new = ((labels >= 0) & ~given.bool()).to(self.device)
        target = ids.to(self.device)[new]
        self.labels[target] = labels.to(self.device)[new]
        self.agreement[target] = agreement.to(self.device, torch.float32)[new]
        self.level[target] = level.to(self.device)[new]
        return target

    @torch.no_grad()
    def remove(self, ids: torch.Tensor) -> None:
        """Take the samples ``ids`` (int64) out of the pool (label and level -1, agreement 0)."""
        ids = ids.to(self.device)
        self.labels[ids], self.agreement[ids], self.level[ids] = -1, 0.0, -1

    def lookup(self, ids: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(labels int64 (B,), agreement float32 (B,)) of the samples ``ids`` (-1 / 0 where none)."""
        ids = ids.to(self.device)
        return self.labels[ids], self.agreement[ids]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, Any]:
        return {"version": POOL_VERSION, "labels": self.labels.clone(), "agreement": self.agreement.clone(),
                "level": self.level.clone()}

    def load_state_dict(self, state: Mapping[str, Any], where: str = "pool") -> None:
        """Load :meth:`state_dict` output, or the pool entries of checkpoints written before the
        pool object (``pool_label``, ``pool_agreement``; their level is unknown and loads as 1 for
        every pooled sample).  A missing entry or a wrong size raises ValueError naming it."""
        if "version" in state:
            if state["version"] != POOL_VERSION:
                raise ValueError(f"{where}: pool version {state['version']!r} is not supported "
                                 f"(this version reads {POOL_VERSION})")
            names = {"labels": "labels", "agreement": "agreement", "level": "level"}
        else:
            names = {"labels": "pool_label", "agreement": "pool_agreement"}
        for attr, key in names.items():
            if key not in state:
                raise ValueError(f"{where}: checkpoint entry {key!r} is missing")
            value = state[key]
            if not torch.is_tensor(value) or value.shape != (self.num_samples,):
                raise ValueError(f"{where}.{key}: expected a tensor of shape ({self.num_samples},), got "
                                 f"{getattr(value, 'shape', type(value).__name__)}")
            getattr(self, attr).copy_(value.to(self.device))
        if "level" not in names:
            self.level.copy_(torch.where(self.labels >= 0, 1, -1))

    def to(self, device: torch.device | str) -> "LabelPool":
        self.device = torch.device(device)
        self.labels, self.agreement, self.level = (t.to(self.device) for t in (self.labels, self.agreement, self.level))
        return self
