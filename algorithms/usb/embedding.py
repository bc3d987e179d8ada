"""The embedding pass over a run's training set (the EMA model, evaluation transform).

Used by HDL's refresh (``hdl_embed: ema_pass``) and by ``hdl-relabel-run``.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import torch


@torch.no_grad()
def embed_training_set(alg, batch_size: int = 256, positions: Optional[torch.Tensor] = None,
                       device: Optional[torch.device] = None) -> Tuple[np.ndarray, torch.Tensor]:
    """Training indices (N,) int64 and EMA-model features (N, D) float32 of every training sample
    of the run, evaluation transform, in increasing training index; on the CPU unless ``device``
    is given.  ``positions``: only these (increasing) positions of that order (one process's share
    when several train together)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected an int >= 1, got {batch_size!r}")
    data = alg.dataset_dict["embed"]
    index = np.asarray(alg.split_info.embed_idx, dtype=np.int64)
    assert len(data) == len(index), (len(data), len(index))
    if positions is not None:
        pos = positions.cpu().numpy()
        data, index = torch.utils.data.Subset(data, pos.tolist()), index[pos]
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=0)
    net = alg.ema_model
    was_training = net.training
    net.eval()
    out_device = torch.device("cpu") if device is None else device
    feats = torch.empty(len(index), 0, device=out_device)
    try:
        for batch in loader:
            out = net(batch["x_lb"].to(alg.device), only_feat=True).float().to(out_device)
            if feats.shape[1] == 0:
                feats = torch.empty(len(index), out.shape[1], device=out_device)
            # a Subset yields the full set's positions; its own row is the rank among the sorted positions
            rows = batch["idx_lb"] if positions is None else torch.searchsorted(positions.cpu(), batch["idx_lb"])
            feats[rows.to(out_device)] = out
    finally:
        net.train(was_training)
    return index, feats
