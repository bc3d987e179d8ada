"""Blend a labeler's class distribution with a model's class probabilities (pure, for the
training refresh; DASO, CVPR 2022, blends similarity-based and linear pseudo-labels this way).

``blend_distributions(votes, probs, weight)`` returns ``weight * v + (1 - weight) * probs`` row by
row, ``v`` the rows of ``votes`` normalised to sum 1; a row of ``votes`` without mass (a sample the
labeler did not reach) keeps the model's row.  ``weight`` is a float in [0, 1] or a float tensor
(N,) of per-sample weights in [0, 1] (e.g. a calibrated confidence).
"""

from __future__ import annotations

from typing import Union

import torch


def blend_distributions(votes: torch.Tensor, probs: torch.Tensor,
                        weight: Union[float, torch.Tensor]) -> torch.Tensor:
    """Float32 (N, C) blend of ``votes`` (N, C) >= 0 and ``probs`` (N, C) (rows sum to 1)."""
    if votes.shape != probs.shape or votes.dim() != 2:
        raise ValueError(f"votes and probs must both have shape (N, C), got {tuple(votes.shape)} and "
                         f"{tuple(probs.shape)}")
    if (votes < 0).any():
        raise ValueError("votes must be >= 0")
    w = torch.as_tensor(weight, dtype=torch.float32, device=probs.device)
    if w.dim() not in (0, 1) or (w.dim() == 1 and w.shape[0] != votes.shape[0]):
        raise ValueError(f"weight must be a float or a tensor of shape ({votes.shape[0]},), got shape "
                         f"{tuple(w.shape)}")
    if not torch.isfinite(w).all() or (w < 0).any() or (w > 1).any():
        raise ValueError("weight must lie in [0, 1]")
    mass = votes.float().sum(dim=1, keepdim=True)
    v = votes.float() / mass.clamp(min=1e-30)
    w = w.reshape(-1, 1) if w.dim() == 1 else w
    out = w * v + (1 - w) * probs.float()
    return torch.where(mass > 0, out, probs.float())
