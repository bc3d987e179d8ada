"""HDL around USB's algorithms: ``hdl_fixmatch``, ``hdl_freematch``, ``hdl_mixmatch``, ``hdl_remixmatch``.

Each class is ``HDL<Base>(HDLMixin, DeviceMixin, <Base>)``; it reuses the base algorithm's
``train_step`` and plugs HDL in at one point per base:

* the **embedding bank** holds one vector per training sample, addressed by global training index
  (a labeled image that also sits in the unlabeled set is one sample). It is kept current from
  the features the base step already computed (``out_dict['feat']``); with ``hdl_embed: ema_pass``
  (the default) every refresh first re-embeds all training images with the EMA model and the
  evaluation transform. Measured on digits (40 labels, seed 0): HDL labels 95.9% / 97.9% accurate
  at the refreshes of iterations 200 / 400 with ``ema_pass`` against 92.5% / 95.7% from the
  train-step features, for one extra forward pass over the training images per refresh (about 2%
  of the compute between refreshes there). On large data sets on a CPU, ``bank`` avoids that pass;
* every ``hdl_refresh_every`` iterations after ``hdl_warmup_iter`` the pool is recomputed from
  scratch by :func:`hdl.refresh.refresh` (kNN graph of the bank -> :func:`hdl.labeling.hdl_label`)
  into the :class:`hdl.pool.LabelPool` (the ground-truth labels never change); ``hdl_inject``
  then decides which pool labels training uses (``blend``, the default: each label becomes the
  argmax of HDL's neighbourhood distribution blended with the classifier's probabilities,
  :meth:`HDLMixin._blend_with_model`; ``all``, ``confident``, ``calibrated``); then the refresh
  consumers run in order of registration (:meth:`HDLMixin.register_refresh_consumer`): the
  diagnostics, and the PMI rebuild of the semantic losses;
* ``hdl_use: target`` - for unlabeled samples of the batch that HDL labeled, the HDL label
  replaces the model's pseudo-label and the mask is 1, through the one seam of :mod:`.seam`
  (FixMatch/FreeMatch: ``MaskingHook``/``PseudoLabelingHook``, ReMixMatch: ``DistAlignHook``,
  MixMatch: ``compute_prob``); the base's hook state keeps learning from the model's own
  predictions.  Each step logs the injected rows (``hdl/injected_rows``).  With
  ``hdl_loss_prior: adjusted`` (what ``auto``, the default, gives FixMatch, FreeMatch and
  ReMixMatch) the base's unlabeled consistency losses on those steps see the logits plus the log
  class prior of the injected pool labels (:class:`.logit_adjust.PriorAdjustedLoss`, logit adjustment).
  ``hdl_use: pool`` - the labeled batch keeps ``ceil(hdl_gt_ratio * B)`` ground-truth samples
  and the rest are HDL-labeled samples of the unlabeled batch (weak views); ``hdl/batch_share``
  logs the share of the labeled batch they take.

Before the first refresh (and with ``hdl_enable: False``) the losses are exactly the base
algorithm's: HDL draws no random numbers, creates no loader and runs no network forward pass.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional, Tuple

import torch

from semilearn.algorithms.fixmatch import FixMatch
from semilearn.algorithms.freematch import FreeMatch
from semilearn.algorithms.mixmatch import MixMatch
from semilearn.algorithms.remixmatch import ReMixMatch
from semilearn.algorithms.utils import SSL_Argument
from semilearn.core.hooks import Hook
from semilearn.core.utils import ALGORITHMS

from hdl import config_keys
from hdl.bank import DTYPES as BANK_DTYPES
from hdl.blend import (balanced_probabilities, blend_distributions, calibrated_votes, class_log_prior,
                       neighbourhood_votes, prior_probabilities)
from hdl.knn import resolve_backend
from hdl.refresh import refresh as refresh_labels

from . import distributed
from .device import DeviceMixin, place_hook_after
from .faults import fault_point
from .host_sync import per_step
from .diagnostics import HDLState, RefreshEvent, head_probabilities
from .logit_adjust import HDL_ADJUSTED as ADJUSTED, OWN_LOGIT_ADJUSTMENT, PriorAdjustedLoss, on_schedule
from .seam import UNLABELED_LOSS, TargetSeam, Targets
from .semantic_loss import SemanticLossMixin


def hdl_arguments():
    """HDL's, the labeler's, the semantic losses' and the project's data/device keys as USB
    ``SSL_Argument``s, generated from the one key table :mod:`hdl.config_keys`."""
    return [SSL_Argument(f"--{k.name}", k.parse, k.default, f"{k.help}; {k.allowed}")
            for k in config_keys.KEYS.values()]


@dataclass(frozen=True)
class HDLSettings:
    """HDL's keys, read once from USB's ``args`` and validated by the key table (each key, and the
    combinations of :func:`hdl.config_keys.check_combinations`).

    ``labeling``: the options of :func:`hdl.refresh.refresh` (``k_max``, ``backend`` and every
    ``hdl_label`` option) from the ``hdl_*`` labeling keys."""

    enable: bool
    warmup_iter: int
    refresh_every: int
    use: str
    embed: str
    gt_ratio: float
    min_agreement: float
    weight_by_agreement: bool
    inject: str = "blend"
    labeling: Mapping[str, Any] = field(default_factory=dict)
    bank_dtype: str = "float32"
    blend_weight: float = 0.5
    blend_model: str = "ema"
    blend_prior: str = "auto"
    loss_prior: str = "auto"

    @property
    def k(self):
        return self.labeling["k"]

    @property
    def k_max(self) -> int:
        return self.labeling["k_max"]

    @property
    def backend(self) -> str:
        return self.labeling["backend"]

    @classmethod
    def from_args(cls, args) -> "HDLSettings":
        table = config_keys.keys(["hdl", "labeling"])
        v = {name: key.validate(getattr(args, name, key.default)) for name, key in table.items()}
        config_keys.check_combinations(v)
        labeling = config_keys.labeling_options(v)
        if labeling["k"] != "adaptive" and labeling["k"] > labeling["k_max"]:
            raise ValueError(f"hdl_k: expected 1 <= hdl_k <= hdl_k_max={labeling['k_max']}, got {labeling['k']}")
        return cls(v["hdl_enable"], v["hdl_warmup_iter"], v["hdl_refresh_every"], v["hdl_use"], v["hdl_embed"],
                   v["hdl_gt_ratio"], v["hdl_min_agreement"], v["hdl_weight_by_agreement"], v["hdl_inject"],
                   labeling, v["hdl_bank_dtype"], v["hdl_blend_weight"], v["hdl_blend_model"],
                   v["hdl_blend_prior"], v["hdl_loss_prior"])

    def resolved(self, base_name: str, imb_algorithm: Optional[str] = None) -> "HDLSettings":
        """The settings with ``auto`` priors resolved for ``base_name``: ``hdl_loss_prior auto`` is
        ``adjusted`` where the base's unlabeled loss is a cross-entropy (FixMatch, FreeMatch,
        ReMixMatch; :data:`.seam.UNLABELED_LOSS`) in target mode, ``none`` otherwise (MixMatch's
        squared error, pool mode, and under USB's DebiasPL, whose own consistency loss adds its
        running prior of the model's predictions: a second adjustment would count the class
        shares twice); ``hdl_blend_prior auto`` is ``none`` where the loss is adjusted (the loss
        balances the classes; the labels follow the pool's class shares) and ``balanced``
        otherwise."""
        loss, blend = self.loss_prior, self.blend_prior
        if loss == "auto":
            loss = "adjusted" if (UNLABELED_LOSS[base_name] == "ce" and self.use == "target"
                                  and imb_algorithm not in OWN_LOGIT_ADJUSTMENT) else "none"
        if blend == "auto":
            blend = "none" if loss in ADJUSTED else "balanced"
        return dataclasses.replace(self, loss_prior=loss, blend_prior=blend)


class HDLRefreshHook(Hook):
    """Recomputes the pool on HDL's schedule, after the parameter update of a step; before the run
    it wraps the seam's role hooks again, so a hook registered after HDL's ``set_hooks`` under a
    role's name (DASO's ``PseudoLabelingHook``) is wrapped too."""

    def before_run(self, algorithm):
        algorithm.seam.install(algorithm)

    def after_train_step(self, algorithm):
        algorithm.maybe_refresh()


RefreshConsumer = Callable[[Any, RefreshEvent], Optional[Dict[str, float]]]


class HDLMixin:
    """HDL's state (:class:`.diagnostics.HDLState`: bank, pool, diagnostics), its refresh and
    its single plug-in point per base algorithm (:class:`.seam.TargetSeam`).

    A new base needs a class ``HDL<Base>(HDLMixin, SemanticLossMixin, DeviceMixin, <Base>)`` with
    ``base_name``/``usb_base``, its roles in :data:`.seam.ROLES`, and, unless its unlabeled batch
    is ``(x_ulb_w, x_ulb_s)``, a ``train_step`` with the base's signature plus ``idx_lb``/``idx_ulb``
    calling ``_hdl_step``.
    """

    usb_base = None  # USB's class of the base algorithm

    @classmethod
    def get_argument(cls):
        """The base algorithm's USB arguments, then the project's keys."""
        return list(cls.usb_base.get_argument()) + hdl_arguments()

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        self.hdl = HDLSettings.from_args(args).resolved(self.base_name, getattr(args, "imb_algorithm", None))
        self.seam = TargetSeam(self.base_name)
        self.refresh_log = []
        self.refresh_consumers: List[Tuple[str, RefreshConsumer]] = []
        super().__init__(args, net_builder, tb_log=tb_log, logger=logger, **kwargs)
        info = self.split_info
        n = int(max(info.lb_idx.max(initial=-1), info.ulb_idx.max(initial=-1))) + 1
        dim = self.model.num_features if hasattr(self.model, "num_features") else 1
        # bank, pool, diagnostics and the index maps live on the training device: the steps read
        # the pool and write the bank there, and the refresh searches where the bank is
        self.hdl_state = HDLState(n, dim, device=self.device, bank_dtype=BANK_DTYPES[self.hdl.bank_dtype])
        self._lb_global = torch.as_tensor(info.lb_idx, dtype=torch.long).to(self.device)
        self._ulb_global = torch.as_tensor(info.ulb_idx, dtype=torch.long).to(self.device)
        train_y = torch.full((n,), -1, dtype=torch.long)
        known = torch.as_tensor(info.train_y, dtype=torch.long)
        train_y[: min(n, len(known))] = known[:n]
        self._train_y = train_y.to(self.device)
        self._backend = None
        # norms of the EMA embeddings of the last ema_pass (the bank keeps them L2-normalised): with
        # them the blend feeds the EMA head the exact features; transient, rebuilt at every refresh
        self._ema_norms: Optional[torch.Tensor] = None
        self._pool_nonempty = False  # set at each refresh / load: the step reads it, never the pool
        # hdl_loss_prior adjusted: the log class prior of the injected pool labels (set at each refresh
        # and load, from the pool alone: a resumed run uses the same one), and the shift the
        # consistency losses add on the current step (None outside steps with HDL targets)
        self._loss_log_prior: Optional[torch.Tensor] = None
        self._loss_shift: Optional[torch.Tensor] = None
        if self.hdl.loss_prior in ADJUSTED:
            self.consistency_loss = PriorAdjustedLoss(self.consistency_loss, lambda: self._loss_shift)
        # the diagnostics run first: their figures make the refresh record
        self.refresh_consumers.insert(0, ("diagnostics", lambda alg, ev: alg.hdl_state.diagnostics.compute(alg, ev)))

    @property
    def bank(self):
        return self.hdl_state.bank

    @property
    def pool(self):
        return self.hdl_state.pool

    def register_refresh_consumer(self, name: str, fn: RefreshConsumer) -> None:
        """Run ``fn(algorithm, event)`` after every refresh (in order of registration); a dict it
        returns joins the refresh's logged figures."""
        if any(n == name for n, _ in self.refresh_consumers):
            raise ValueError(f"refresh consumer {name!r} is already registered")
        self.refresh_consumers.append((name, fn))

    # ------------------------------------------------------------------ hooks
    def set_hooks(self):
        super().set_hooks()
        # refresh after the parameter and EMA updates, before validation and checkpointing
        place_hook_after(self, HDLRefreshHook(), "HDLRefreshHook", "EMAHook")
        self.seam.install(self)

    @property
    def hdl_active(self) -> bool:
        return self.hdl.enable and self._pool_nonempty

    # ------------------------------------------------------------------ per step
    def _batch_targets(self, idx_ulb) -> Targets:
        """The pool's targets for this unlabeled batch (their rows may be all False).  Fixed
        shapes, nothing read back to the host (:mod:`.host_sync`)."""
        g = self._ulb_global[idx_ulb.to(self.device)]
        lab, agr = self.pool.lookup(g)
        has = (lab >= 0) & (agr >= self.hdl.min_agreement)
        weight = agr if self.hdl.weight_by_agreement else torch.ones_like(agr)
        return Targets.one_hot(has, lab, weight, self.num_classes)

    def _hdl_step(self, base_step, idx_lb, idx_ulb, x_ulb_w, kw: Dict[str, torch.Tensor]):
        """Run the base train step with this batch's HDL targets, then feed the bank.

        HDL's own work here runs in :func:`.host_sync.per_step` and reads no tensor value on the
        host (the logged figures stay 0-dim device tensors until USB's logging formats them),
        except in ``hdl_use: pool``, where the number of rows mixed into the labeled batch is read."""
        targets = keep = None
        if self.hdl.enable and idx_ulb is not None and self.hdl_active:
            with per_step():
                targets = self._batch_targets(idx_ulb)
        mixed = None
        if targets is not None and self.hdl.use == "pool":  # the one mode that syncs (layout of the batch)
            kw, keep = self._mix_pool_into_labeled(kw, x_ulb_w, targets)
            mixed, targets = (0 if keep is None else kw["y_lb"].shape[0] - keep), None
        if targets is not None:
            self.seam.begin(targets)
            if self.hdl.loss_prior in ADJUSTED:
                self._loss_shift = self._loss_log_prior
        try:
            out_dict, log_dict = base_step(**kw)
        except BaseException:
            self.seam.abort()
            raise
        finally:
            self._loss_shift = None
        injected = self.seam.end()
        with per_step():
            if self.hdl.enable:
                self._update_bank(out_dict.get("feat", {}), idx_lb, idx_ulb, keep)
            if self.hdl_active:
                if injected is not None:
                    injected = injected.float()
                    log_dict["hdl/injected_rows"] = injected
                    log_dict["hdl/batch_share"] = injected / targets.rows.shape[0]
                else:
                    log_dict["hdl/injected_rows"] = 0.0
                    if mixed is not None:
                        log_dict["hdl/batch_share"] = mixed / float(kw["y_lb"].shape[0])
        return out_dict, log_dict

    def _mix_pool_into_labeled(self, kw, x_ulb_w, targets: Targets):
        """Pool mode: the labeled batch keeps ``ceil(hdl_gt_ratio * B)`` ground-truth rows, the
        rest become HDL-labeled weak views of the unlabeled batch.  Returns (kw, rows kept)."""
        b = kw["y_lb"].shape[0]
        n_gt = max(1, math.ceil(self.hdl.gt_ratio * b))
        pos = torch.nonzero(targets.rows).flatten()[: b - n_gt]
        if len(pos) == 0:
            return kw, None
        kw = dict(kw)
        keep = b - len(pos)
        kw["x_lb"] = torch.cat([kw["x_lb"][:keep], x_ulb_w[pos]])
        kw["y_lb"] = torch.cat([kw["y_lb"][:keep], targets.dist[pos].argmax(dim=1).to(kw["y_lb"].dtype)])
        return kw, keep

    @torch.no_grad()
    def _update_bank(self, feat: Dict[str, Any], idx_lb, idx_ulb, keep: Optional[int] = None):
        """Store this step's features: the unlabeled weak-view features for the diagnostics and,
        with ``hdl_embed: bank``, the bank (with ``ema_pass`` each refresh rewrites the whole
        bank, so per-step writes would be wasted); without host-side checks (``check=False``):
        the indices come from this wrapper's own maps.  ``keep``: only the first rows of the labeled
        batch are ground-truth samples (pool mode)."""
        if not isinstance(feat, dict):
            return
        fl = feat.get("x_lb")
        if self.hdl.embed == "bank" and idx_lb is not None and torch.is_tensor(fl) and fl.shape[0] == idx_lb.shape[0]:
            n = idx_lb.shape[0] if keep is None else keep
            # several processes: every process writes every process's rows (all-gathered); indices of
            # our own maps: no host-side checks
            self.bank.update(*distributed.gather_rows(self._lb_global[idx_lb[:n].to(self.device)],
                                                      fl[:n].detach().float(), equal_sizes=keep is None), check=False)
        fw = feat.get("x_ulb_w")
        if idx_ulb is not None and torch.is_tensor(fw) and fw.shape[0] == idx_ulb.shape[0]:
            g, fw = distributed.gather_rows(self._ulb_global[idx_ulb.to(self.device)], fw.detach().float(),
                                            equal_sizes=True)  # every process draws a full unlabeled batch
            self.hdl_state.diagnostics.record(g, fw)  # the diagnostics use these in both embedding modes
            if self.hdl.embed == "bank":
                self.bank.update(g, fw, check=False)  # indices of our own maps: no host-side checks

    # ------------------------------------------------------------------ refresh
    def maybe_refresh(self):
        if not self.hdl.enable:
            return
        if on_schedule(self.it + 1, self.hdl.warmup_iter, self.hdl.refresh_every):
            self.refresh()

    def refresh_inputs(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What a refresh labels: the bank's filled sample indices (int64 (M,)), their given labels
        (int64 (M,), -1 for unlabeled samples) and which of them are labeled samples (bool (M,))."""
        ids = torch.nonzero(self.bank.filled).flatten()
        is_lb = torch.zeros(self.bank.num_samples, dtype=torch.bool, device=self.bank.device)
        is_lb[self._lb_global] = True
        lb_in = is_lb[ids]
        labels = torch.full((len(ids),), -1, dtype=torch.long, device=self.bank.device)
        labels[lb_in] = self._train_y[ids[lb_in]]
        return ids, labels, lb_in

    @torch.no_grad()
    def refresh(self) -> Dict[str, float]:
        """Recompute the pool from the bank (:func:`hdl.refresh.refresh`), run the refresh
        consumers, log and return their figures."""
        t0 = time.perf_counter()
        if self.hdl.embed == "ema_pass":
            self._embed_with_ema()
        ids, labels, lb_in = self.refresh_inputs()
        if self._backend is None:
            self._backend = resolve_backend(self.hdl.backend, self.bank.device)
            self.print_fn(f"HDL kNN backend: {self._backend}")
        if self.procs.is_main:
            r = refresh_labels(self.bank.features()[ids], labels, self.num_classes, normalize=False,
                               **{**self.hdl.labeling, "backend": self._backend})
        if self.procs.distributed:  # the labeling ran once, on rank 0: every process takes its result
            r = distributed.tensors_to(distributed.broadcast_object(
                distributed.tensors_to(r, "cpu") if self.procs.is_main else None), self.bank.device)
        res = r.result
        fault_point("refresh")
        pool_ids = self.pool.assign(ids, res.labels, res.agreement, res.level, lb_in)
        dropped = None
        changed = None
        if self.hdl.inject == "blend":
            changed = self._blend_with_model(pool_ids, r)
        elif self.hdl.inject != "all" and res.confidence is not None:
            pool_ids, dropped = self._drop_less_reliable(pool_ids, res.confidence[r.new])
        self._pool_nonempty = self.pool.nonempty
        digests = None
        if self.procs.distributed:  # every process must now hold the identical pool
            digests = distributed.all_gather_object(
                distributed.pool_digest([self.pool.labels, self.pool.agreement, self.pool.level]))
            if len(set(digests)) != 1:
                raise RuntimeError(f"HDL refresh at it {self.it + 1}: the processes hold different pools "
                                   f"(SHA-256 per rank: {digests})")
        new = r.new
        labeler_prior = self._labeler_prior(r, labels, ids) if self.hdl.loss_prior == "labeler" else None
        labels[new] = self.pool.labels[ids[new]].to(labels.device)  # the pool's (after any drop)
        event = RefreshEvent(ids, r, labels, pool_ids)
        stats: Dict[str, float] = {} if dropped is None else {"hdl/inject_dropped": float(dropped)}
        if changed is not None:
            stats["hdl/blend_changed"] = float(changed)
        for _, consumer in self.refresh_consumers:
            stats.update(consumer(self, event) or {})
        self._set_loss_prior(labeler_prior)  # after the consumers: they read the prior the model trained with
        if labeler_prior is not None:
            stats.update({f"hdl/labeler_prior_{c}": float(v) for c, v in enumerate(labeler_prior.tolist())})
        stats["hdl/refresh_sec"] = time.perf_counter() - t0
        self.print_fn("HDL refresh at it %d (graph: %s%s): %s" % (self.it + 1, r.graph.index, "".join(
            f", {k} {v}" for k, v in r.graph.params.items()), json.dumps(
            {k: round(v, 4) for k, v in stats.items() if not k.startswith("hdl/pool_class_")})))
        record = {"it": self.it + 1, **stats}
        if digests is not None:  # the pool's SHA-256 in every process (rank order): all equal
            record["pool_sha256"] = digests
        self.refresh_log.append(record)
        if self.tb_log is not None:  # once, at the completed-iteration count (not through log_dict too)
            self.tb_log.update(stats, self.it + 1)
        if self.procs.is_main:  # one record per refresh, written by rank 0
            path = self.refresh_records_path
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "a") as f:
                f.write(json.dumps(record) + "\n")
        return stats

    def _set_loss_prior(self, labeler_prior: Optional[torch.Tensor] = None) -> None:
        """``hdl_loss_prior: adjusted``: the log class prior of the pool labels training injects
        (:func:`hdl.blend.class_log_prior`), on the training device; None while the pool is empty.
        ``labeler``: the log of ``labeler_prior`` (:meth:`_labeler_prior`, given at a refresh; on
        load the checkpoint's)."""
        if self.hdl.loss_prior not in ADJUSTED or not self.pool.nonempty:
            self._loss_log_prior = None
            return
        if self.hdl.loss_prior == "labeler":
            if labeler_prior is not None:
                self._loss_log_prior = labeler_prior.clamp(min=1e-6).log().float().to(self.device)
            return
        used = (self.pool.labels >= 0) & (self.pool.agreement >= self.hdl.min_agreement)
        self._loss_log_prior = class_log_prior(self.pool.labels[used], self.num_classes).to(self.device)

    @torch.no_grad()
    def _labeler_prior(self, r, labels: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``hdl_loss_prior: labeler``: the labeler's estimate of the unlabeled class shares
        (:func:`hdl.labeling.unlabeled_prior` under its ``class_prior`` rule, on this refresh's graph
        and the class-normalised diffusion of the given ``labels``), float32 (C,) with at least a
        share of 1e-6 per class, renormalised."""
        from hdl.diffusion import diffusion_scores
        from hdl.labeling import unlabeled_prior

        dev = r.graph_idx.device
        given = labels.to(dev)
        z = diffusion_scores(r.graph_sims, r.graph_idx, given, self.num_classes, k=r.graph_idx.shape[1],
                             alpha=self.hdl.labeling["diffusion_alpha"])
        feats = self.bank.features()[ids.to(self.bank.device)].float().to(dev)
        prior = unlabeled_prior(given, self.num_classes, self.hdl.labeling["class_prior"], feats, z).float()
        prior = prior.clamp(min=1e-6)
        return prior / prior.sum()

    @torch.no_grad()
    def _blend_with_model(self, pool_ids: torch.Tensor, r) -> int:
        """``hdl_inject: blend``: every pool label becomes the argmax of ``w * v + (1 - w) * p``
        (:mod:`hdl.blend`), ``v`` the label distribution of the sample's closed neighbourhood (itself
        and its first ``chosen_k`` graph neighbours, given and HDL labels, cosine weights), ``p`` the
        model's probabilities, ``w = hdl_blend_weight``; its agreement becomes the blend's winning
        score.  ``p`` (``hdl_blend_model``): ``ema`` (needs ``hdl_embed: ema_pass``) the EMA model's
        head on this refresh's EMA embedding of the sample (:meth:`_ema_probabilities`: clean view,
        the model USB evaluates); ``train`` the training model's head on the sample's latest
        weak-view features from the train steps, where samples no step has seen keep HDL's label.
        Where the labeling calibrated its confidence (the held-out k) ``v`` is
        :func:`hdl.blend.calibrated_votes`: the labeler's calibrated confidence on HDL's label, the
        rest over the other voted classes.  With
        ``hdl_blend_prior: balanced`` ``p`` is first divided by its mean over the pool rows it covers
        (:func:`hdl.blend.balanced_probabilities`); with ``until_prior`` so only while no loss prior
        is in force (the first refresh of ``hdl_loss_prior: adjusted``: the model trained on the
        labeled set's class shares alone).  With ``hdl_loss_prior: adjusted`` ``p`` is first
        multiplied by the class prior the unlabeled losses added since the previous refresh
        (:func:`hdl.blend.prior_probabilities`: the probabilities as that loss trained them; none at
        the first refresh).  Returns how many pool labels the blend changed."""
        rows = torch.nonzero(r.new).flatten()  # the refresh rows of pool_ids, in the same order
        if len(rows) == 0:
            return 0
        votes = neighbourhood_votes(r.graph_sims, r.graph_idx, r.result.labels.to(r.graph_idx.device),
                                    self.num_classes, max(1, int(r.result.chosen_k)), rows.to(r.graph_idx.device))
        conf = getattr(r.result, "confidence", None)
        if conf is not None:
            dev = votes.device
            votes = calibrated_votes(votes, r.result.labels.to(dev)[rows.to(dev)], conf.to(dev)[rows.to(dev)])
        if self.hdl.blend_model == "ema":
            probs = self._ema_probabilities(pool_ids).to(votes.device)
            seen = torch.ones(len(pool_ids), dtype=torch.bool, device=pool_ids.device)
        else:
            diag = self.hdl_state.diagnostics
            probs = diag.probabilities(self.model, self.device, pool_ids).to(votes.device)
            seen = diag.seen(pool_ids)
        if self.hdl.loss_prior in ADJUSTED and self._loss_log_prior is not None:
            probs = prior_probabilities(probs, self._loss_log_prior)
        if self.hdl.blend_prior == "balanced" or (self.hdl.blend_prior == "until_prior"
                                                  and self._loss_log_prior is None):
            s = seen.to(probs.device)
            probs = probs.clone()
            probs[s] = balanced_probabilities(probs[s])
        score, label = blend_distributions(votes, probs, self.hdl.blend_weight).max(dim=1)
        keep = pool_ids[seen].to(self.pool.device)
        label = label[seen.to(label.device)].to(self.pool.device)
        changed = int((self.pool.labels[keep] != label).sum())
        self.pool.labels[keep] = label
        self.pool.agreement[keep] = score[seen.to(score.device)].to(self.pool.device)
        return changed

    @torch.no_grad()
    def _ema_probabilities(self, ids: torch.Tensor) -> torch.Tensor:
        """Float32 (len(ids), C) softmax of the EMA model's head on the samples' EMA embeddings of
        this refresh's ema_pass (the bank's normalised rows times their norms: the features the
        head was given in evaluation, up to rounding; float16 banks round the rows)."""
        def features(i):
            i = i.to(self.bank.device)
            return self.bank.features()[i].float() * self._ema_norms[i, None]

        return head_probabilities(self.ema_model, self.device, features, ids)

    @torch.no_grad()
    def _drop_less_reliable(self, pool_ids: torch.Tensor, confidence: torch.Tensor) -> Tuple[torch.Tensor, int]:
        """Remove from the pool the labels training should not use (``hdl_inject``), given their
        calibrated ``confidence`` (float (P,), the order of ``pool_ids``):

        * ``confident``: the labels the model contradicts with a higher confidence (the classifier
          head on the sample's latest weak-view features from the train steps; samples no step has
          seen keep their label);
        * ``calibrated``: the labels below the model's own pseudo-label threshold (``p_cutoff``,
          0.95 for bases without one), the bar the model's labels pass.

        Returns the pool's sample indices and how many were removed."""
        confidence = confidence.to(self.pool.device)
        if self.hdl.inject == "calibrated":
            drop = confidence < float(getattr(self, "p_cutoff", 0.95) or 0.95)
        else:
            diag = self.hdl_state.diagnostics
            diag._predict(self.model, self.device, pool_ids)
            seen = diag.seen(pool_ids)
            drop = seen & (diag.logit_pred[pool_ids] != self.pool.labels[pool_ids]) & \
                (diag.logit_conf[pool_ids] > confidence.to(diag.logit_conf.device))
        self.pool.remove(pool_ids[drop])
        return pool_ids[~drop], int(drop.sum())

    @property
    def refresh_records_path(self) -> str:
        return os.path.join(self.save_dir, self.save_name, "hdl_refresh.jsonl")

    def truncate_run_records(self, it: int) -> int:
        """Resume: keep the refresh records (``hdl_refresh.jsonl``, ``refresh_log``) of iterations
        <= ``it`` (the restored iteration; later ones will be redone); returns how many were dropped."""
        super().truncate_run_records(it)
        path = self.refresh_records_path
        if not os.path.isfile(path):
            self.refresh_log = []
            return 0
        with open(path) as f:
            lines = [line for line in f.read().splitlines() if line.strip()]
        kept = []
        for line in lines:
            try:
                rec = json.loads(line)
            except ValueError:  # a record cut by a kill
                continue
            if isinstance(rec, dict) and isinstance(rec.get("it"), int) and rec["it"] <= it:
                kept.append(rec)
        if len(kept) != len(lines) and self.procs.is_main:
            tmp = os.path.join(os.path.dirname(path), ".hdl_refresh.jsonl.tmp")
            with open(tmp, "w") as f:
                f.write("".join(json.dumps(r) + "\n" for r in kept))
            os.replace(tmp, path)
        self.refresh_log = kept
        return len(lines) - len(kept)

    @torch.no_grad()
    def _embed_with_ema(self):
        """Re-embed every training image with the EMA model (evaluation transform) into the bank;
        with several processes each embeds its share (every ``world_size``-th image) and every bank
        receives all shares (all-gathered)."""
        from .embedding import embed_training_set

        if self._ema_norms is None:
            self._ema_norms = torch.zeros(self.bank.num_samples, dtype=torch.float32, device=self.bank.device)
        if not self.procs.distributed:
            index, feats = embed_training_set(self)
            index = torch.as_tensor(index, dtype=torch.long)
            self.bank.update(index, feats)
            self._ema_norms[index.to(self.bank.device)] = feats.float().norm(dim=1).to(self.bank.device)
            return
        share = distributed.shard(len(self.dataset_dict["embed"]), self.procs.rank, self.procs.world_size)
        index, feats = embed_training_set(self, positions=share, device=self.bank.device)
        index = torch.as_tensor(index, dtype=torch.long, device=self.bank.device)
        rows = torch.cat([feats.float(), feats.float().norm(dim=1, keepdim=True)], dim=1)
        g_index, g_rows = distributed.gather_rows(index, rows)
        self.bank.update(g_index, g_rows[:, :-1])
        self._ema_norms[g_index] = g_rows[:, -1]

    # ------------------------------------------------------------------ checkpoint
    def get_save_dict(self):
        d = super().get_save_dict()
        d["hdl"] = self.hdl_state.state_dict()
        if self.hdl.loss_prior == "labeler":  # not derivable from the pool
            d["hdl_loss_log_prior"] = None if self._loss_log_prior is None else self._loss_log_prior.cpu().clone()
        return d

    def load_model(self, load_path):
        ckpt = super().load_model(load_path)
        if "hdl" in ckpt:
            self.hdl_state.load_state_dict(ckpt["hdl"], f"{load_path}: 'hdl'")
            self._pool_nonempty = self.pool.nonempty
            self._set_loss_prior()
            if self.hdl.loss_prior == "labeler":
                saved = ckpt.get("hdl_loss_log_prior")
                self._loss_log_prior = None if saved is None else saved.to(self.device)
        return ckpt


class _WeakStrongStep:
    """``train_step`` of the bases whose unlabeled batch is ``(x_ulb_w, x_ulb_s)`` (FixMatch,
    FreeMatch, MixMatch), with the sample indices named so USB's ``process_batch`` keeps them."""

    def train_step(self, x_lb, y_lb, x_ulb_w, x_ulb_s, idx_lb=None, idx_ulb=None):
        kw = dict(x_lb=x_lb, y_lb=y_lb, x_ulb_w=x_ulb_w, x_ulb_s=x_ulb_s)
        return self._hdl_step(super().train_step, idx_lb, idx_ulb, x_ulb_w, kw)


@ALGORITHMS.register("hdl_fixmatch")
class HDLFixMatch(_WeakStrongStep, HDLMixin, SemanticLossMixin, DeviceMixin, FixMatch):
    base_name = "fixmatch"
    usb_base = FixMatch


@ALGORITHMS.register("hdl_freematch")
class HDLFreeMatch(_WeakStrongStep, HDLMixin, SemanticLossMixin, DeviceMixin, FreeMatch):
    base_name = "freematch"
    usb_base = FreeMatch


@ALGORITHMS.register("hdl_mixmatch")
class HDLMixMatch(_WeakStrongStep, HDLMixin, SemanticLossMixin, DeviceMixin, MixMatch):
    base_name = "mixmatch"
    usb_base = MixMatch

    def compute_prob(self, logits):
        """The seam's method role for MixMatch (:mod:`.seam`): both unlabeled views' probabilities
        before averaging and sharpening."""
        return self.seam.apply("compute_prob", super().compute_prob(logits))


@ALGORITHMS.register("hdl_remixmatch")
class HDLReMixMatch(HDLMixin, SemanticLossMixin, DeviceMixin, ReMixMatch):
    base_name = "remixmatch"
    usb_base = ReMixMatch

    def train_step(self, x_lb, y_lb, x_ulb_w, x_ulb_s_0, x_ulb_s_1, x_ulb_s_0_rot=None, rot_v=None,
                   idx_lb=None, idx_ulb=None):
        kw = dict(x_lb=x_lb, y_lb=y_lb, x_ulb_w=x_ulb_w, x_ulb_s_0=x_ulb_s_0, x_ulb_s_1=x_ulb_s_1,
                  x_ulb_s_0_rot=x_ulb_s_0_rot, rot_v=rot_v)
        return self._hdl_step(super().train_step, idx_lb, idx_ulb, x_ulb_w, kw)
