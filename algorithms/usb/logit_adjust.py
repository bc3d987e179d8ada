"""Logit adjustment of a base algorithm's unlabeled loss by an estimated unlabeled class prior.

:class:`PriorAdjustedLoss` wraps a base's consistency loss (USB's ``ConsistencyLoss``) so that it
sees ``logits + log prior`` (logit adjustment, Menon et al., ICLR 2021: the consistent correction
of a softmax cross-entropy for the class-balanced error; ACR applies it to the unlabeled loss of
FixMatch).  The raw logits, which USB evaluates, then learn the balanced posterior.

Two providers of the prior use it:

* HDL (``hdl_loss_prior: adjusted``): the log class shares of the injected pool labels, on the
  steps with HDL targets (:mod:`.hdl_wrapper`);
* :class:`LogitAdjustMixin` (``la_prior: model``), for a plain base: the log class shares of the
  EMA model's argmax over the unlabeled set (evaluation transform), re-estimated every
  ``la_refresh_every`` iterations from ``la_warmup_iter`` on, and applied on every step after the
  first estimate, as HDL's is applied after its first refresh.  This is the ablation of HDL's
  loss adjustment without HDL's labels (``hdl-bench``'s ``la`` arm).

The shares count one pseudo-count per class (:func:`hdl.blend.class_log_prior`).
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from semilearn.core.hooks import Hook

from hdl.blend import class_log_prior
from hdl.config_keys import KEYS

from .device import place_hook_after


# USB imbalance algorithms whose consistency loss already adds a prior of their own (DebiasPL: tau x
# the log of its running mean of the model's predictions) and which replace the base's loss object
# after the base is built: a second adjustment would count the class shares twice
OWN_LOGIT_ADJUSTMENT = ("debiaspl",)
# hdl_loss_prior values that adjust the unlabeled losses (by the pool's class shares, or by the
# labeler's estimate of the unlabeled class shares)
HDL_ADJUSTED = ("adjusted", "labeler")


def on_schedule(done: int, warmup: int, every: int) -> bool:
    """Whether the step that completes iteration ``done`` (1-based) re-estimates: at ``warmup``
    and every ``every`` iterations after it (HDL's refresh and ``la_prior``'s estimate alike)."""
    return done >= warmup and (done - warmup) % every == 0


class PriorAdjustedLoss(torch.nn.Module):
    """A base's consistency loss (``(logits, targets, name, mask)``) whose logits are shifted by
    ``shift()`` (float (C,) or None: unchanged) before the loss."""

    def __init__(self, inner: torch.nn.Module, shift):
        super().__init__()
        self.inner = inner
        self._shift = shift

    def forward(self, logits, targets, name="ce", mask=None):
        s = self._shift()
        if s is not None:
            logits = logits + s.to(device=logits.device, dtype=logits.dtype)
        return self.inner(logits, targets, name, mask)


class LogitAdjustHook(Hook):
    """Re-estimates the prior on ``la_prior: model``'s schedule, after the parameter and EMA
    updates of a step."""

    def after_train_step(self, algorithm):
        algorithm.maybe_estimate_prior()


class LogitAdjustMixin:
    """``la_prior: model`` for a device-aware base algorithm (first in its bases, before
    :class:`.device.DeviceMixin`); with ``la_prior: none`` (the default) it changes nothing."""

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        default = {k: KEYS[k].default for k in ("la_prior", "la_warmup_iter", "la_refresh_every")}
        self.la_prior = str(getattr(args, "la_prior", default["la_prior"]))
        self.la_warmup_iter = int(getattr(args, "la_warmup_iter", default["la_warmup_iter"]))
        self.la_refresh_every = int(getattr(args, "la_refresh_every", default["la_refresh_every"]))
        # float32 (C,) log prior on the training device once estimated; None before
        self.la_log_prior: Optional[torch.Tensor] = None
        super().__init__(args, net_builder, tb_log=tb_log, logger=logger, **kwargs)
        if self.la_prior == "model":
            self.consistency_loss = PriorAdjustedLoss(self.consistency_loss, lambda: self.la_log_prior)

    def set_hooks(self):
        super().set_hooks()
        if self.la_prior == "model":
            place_hook_after(self, LogitAdjustHook(), "LogitAdjustHook", "EMAHook")

    def maybe_estimate_prior(self) -> None:
        if on_schedule(self.it + 1, self.la_warmup_iter, self.la_refresh_every):
            self.estimate_prior()

    @torch.no_grad()
    def unlabeled_predictions(self) -> torch.Tensor:
        """int64 (U,): the EMA model's argmax over the unlabeled samples (``split_info.ulb_idx``
        order), evaluation transform."""
        from .embedding import embed_training_set

        index, feats = embed_training_set(self, device=self.device)
        pos = {int(g): i for i, g in enumerate(index)}
        rows = torch.as_tensor([pos[int(g)] for g in self.split_info.ulb_idx], dtype=torch.long, device=self.device)
        net = self.ema_model
        was_training = net.training
        net.eval()
        try:
            preds = [net(feats[rows[s:s + 4096]], only_fc=True).argmax(dim=1) for s in range(0, len(rows), 4096)]
        finally:
            net.train(was_training)
        return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.long, device=self.device)

    @torch.no_grad()
    def estimate_prior(self) -> dict:
        """Set the prior from the EMA model's predictions on the unlabeled set; log and return the
        estimate's total-variation distance to the unlabeled set's true class shares and the
        predictions' accuracy (the labels are known to the split, never to training)."""
        pred = self.unlabeled_predictions()
        self.la_log_prior = class_log_prior(pred, self.num_classes).to(self.device)
        truth = torch.as_tensor(np.asarray(self.split_info.train_y)[self.split_info.ulb_idx], dtype=torch.long)
        true_shares = torch.bincount(truth, minlength=self.num_classes).float() / max(1, len(truth))
        stats = {"la/prior_tv": 0.5 * float((self.la_log_prior.exp().cpu() - true_shares).abs().sum()),
                 "la/ema_acc": float((pred.cpu() == truth).float().mean()) if len(truth) else float("nan")}
        self.print_fn("logit adjustment at it %d: prior %s, %s" % (
            self.it + 1, [round(float(v), 4) for v in self.la_log_prior.exp()],
            ", ".join(f"{k} {v:.4f}" for k, v in stats.items())))
        if self.tb_log is not None:
            self.tb_log.update(stats, self.it + 1)
        return stats

    def get_save_dict(self):
        d = super().get_save_dict()
        if self.la_prior == "model":
            d["la_log_prior"] = None if self.la_log_prior is None else self.la_log_prior.detach().cpu().clone()
        return d

    def load_model(self, load_path):
        ckpt = super().load_model(load_path)
        if self.la_prior == "model":
            prior = ckpt.get("la_log_prior")
            self.la_log_prior = None if prior is None else prior.to(self.device)
        return ckpt
