"""USB's imbalance algorithms (``imb_algorithm``: abc, daso, debiaspl) over the device layer and HDL.

USB combines an imbalance algorithm with a base algorithm as ``class C(<Imb>, <Base>)``; here the
base is the device-aware class (``Device<Base>`` or ``HDL<Base>``), so the method order is::

    ImbalanceMixin, [per-algorithm fix], <Imb>, ImbAlgorithmBase, [HDLMixin], DeviceMixin, <Base>, AlgorithmBase

The imbalance classes' ``process_batch``/``evaluate``/``load_model`` call ``super()``, so the
device layer still does the work (batches and hook state on ``self.device``, no hard-coded CUDA calls), and
their ``process_batch`` filters a batch by the next ``train_step`` in that order (the HDL step,
which names ``idx_lb``/``idx_ulb``).  As in USB, ``ImbAlgorithmBase.set_optimizer`` builds the
optimizer without a learning-rate scheduler.

Per-algorithm fixes, made without editing semilearn:

* ``abc`` wraps the model in ``ABCNet`` at the end of its constructor and reaches the auxiliary
  classifier through ``self.model.module`` (DataParallel's attribute); the wrapper here answers
  ``.module`` with itself and sends ``only_feat``/``only_fc`` calls (HDL's re-embedding and its
  head-on-features diagnostics) straight to the backbone.  ``predict`` defaults to the auxiliary
  head that ABC's ``evaluate`` reports.
* ``daso`` keeps a per-class feature queue and the previous step's prototype similarities
  (``probs_sim``) that USB does not save; they are saved and restored here.
* ``debiaspl`` keeps its running class prior ``p_hat`` outside any hook; it is saved and
  restored here.

:data:`SUPPORTED` lists the base algorithms each imbalance algorithm runs with;
:func:`check_combination` refuses the rest with the reason.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Dict, Optional, Tuple, Type

import torch

from .device import DeviceMixin

# imbalance algorithm -> base algorithms it runs with here
SUPPORTED: Dict[str, Tuple[str, ...]] = {
    "abc": ("fixmatch", "freematch", "mixmatch", "remixmatch"),
    "daso": ("fixmatch", "mixmatch", "remixmatch"),
    "debiaspl": ("fixmatch", "remixmatch"),
}

# (imbalance algorithm, base) pairs that USB refuses or that fail inside USB's code
BASE_REASONS: Dict[Tuple[str, str], str] = {
    ("daso", "freematch"): "USB's DASOPseudoLabelingHook calls a compute_prob method it does not have when "
                           "the base passes logits to the pseudo-labeling hook, as FreeMatch does",
    ("debiaspl", "mixmatch"): "USB's DebiasPL asserts that its base is not mixmatch",
    ("debiaspl", "freematch"): "FreeMatch's masking and hard pseudo-labels never call compute_prob, so DebiasPL's "
                               "class prior p_hat never updates and its logit adjustment is a constant (no effect)",
}

# USB imbalance algorithms not supported here, and why
UNSUPPORTED_REASONS: Dict[str, str] = {
    "adsh": "asserts args.algorithm == 'fixmatch' (so no hdl_* base) and scores the unlabeled set through its "
            "own loader outside the device layer",
    "cossl": "hard-codes CUDA calls and DataParallel's .module throughout",
    "crest": "hard-codes CUDA calls, moves the model with send_model_cuda and rebuilds the datasets with USB's get_dataset",
    "darp": "hard-codes CUDA calls in its pseudo-label refinement",
    "saw": "hard-codes CUDA calls for its class weights",
    "tras": "asserts args.algorithm == 'fixmatch' (so no hdl_* base) and hard-codes CUDA calls",
}

_CACHE: Dict[Tuple[str, type], Type] = {}


def base_of(algorithm: str) -> str:
    """USB's base algorithm name behind ``algorithm`` (``hdl_fixmatch`` -> ``fixmatch``)."""
    from semilearn.algorithms import name2alg

    cls = name2alg[algorithm] if algorithm in name2alg else None
    base = getattr(cls, "base_name", "") if cls is not None else ""
    return base or algorithm


def check_combination(algorithm: str, imb_algorithm: Optional[str]) -> None:
    """Raise ValueError unless ``imb_algorithm`` (None = none) runs with ``algorithm`` here."""
    if imb_algorithm is None:
        return
    supported = ", ".join(f"{k} (with {'/'.join(v)})" for k, v in SUPPORTED.items())
    if imb_algorithm not in SUPPORTED:
        why = UNSUPPORTED_REASONS.get(imb_algorithm, "it is not one of USB's imbalance algorithms")
        raise ValueError(f"imb_algorithm: {imb_algorithm!r} is not supported here: {why}; "
                         f"supported: {supported}")
    base = base_of(algorithm)
    if base not in SUPPORTED[imb_algorithm]:
        why = BASE_REASONS.get((imb_algorithm, base), f"{base!r} is not one of its base algorithms")
        raise ValueError(f"imb_algorithm: {imb_algorithm!r} does not run with algorithm {algorithm!r} "
                         f"(base {base!r}): {why}; supported: {supported}")


# ---------------------------------------------------------------------------------------------- abc
def _abc_net_on_device():
    from semilearn.imb_algorithms.abc.abc import ABCNet

    class ABCNetOnDevice(ABCNet):
        """USB's ``ABCNet`` that is its own ``.module`` and passes ``only_feat``/``only_fc``
        calls to the backbone (``ABCNet.forward`` expects a dict back)."""

        @property
        def module(self):
            return self

        def forward(self, x, **kwargs):
            if kwargs.get("only_feat") or kwargs.get("only_fc"):
                return self.backbone(x, **kwargs)
            return super().forward(x, **kwargs)

    return ABCNetOnDevice


class ABCFix:
    """After USB's ABC has wrapped the model and EMA model, make the wrappers device-friendly."""

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        super().__init__(args, net_builder, tb_log=tb_log, logger=logger, **kwargs)
        cls = _abc_net_on_device()
        for net in (self.model, self.ema_model):
            assert isinstance(net, cls.__mro__[1]), type(net)
            net.__class__ = cls  # adds one property and one branch; the modules are unchanged

    def predict(self, eval_dest: str = "eval", out_key: str = "logits_aux"):
        """As :meth:`DeviceMixin.predict`, by default with ABC's balanced auxiliary head (the
        head ABC's ``evaluate`` reports), so predictions and metrics of a run agree."""
        return super().predict(eval_dest, out_key)


# --------------------------------------------------------------------------------------------- daso
class DASOFix:
    """Save and restore DASO's per-class feature queue (USB saves only its prototypes) and
    ``probs_sim`` (B, C), the prototype similarities of the previous step's weak views, which
    USB's DASO pseudo-labeling hook blends in at the next step (a resumed run needs it)."""

    def get_save_dict(self):
        d = super().get_save_dict()
        state = d.setdefault("imb_state", {})
        state["daso_queue_bank"] = {int(c): t.detach().cpu().clone() for c, t in self.queue.bank.items()}
        if torch.is_tensor(getattr(self, "probs_sim", None)):
            state["daso_probs_sim"] = self.probs_sim.detach().cpu().clone()
        return d

    def load_model(self, load_path):
        ckpt = super().load_model(load_path)
        self.queue.prototypes = self.queue.prototypes.to(self.device)
        bank = ckpt.get("imb_state", {}).get("daso_queue_bank")
        if bank is not None:
            dim = self.queue.feat_dim
            self.queue.bank = defaultdict(lambda: torch.empty(0, dim))
            self.queue.bank.update({int(c): t.cpu() for c, t in bank.items()})
        probs_sim = ckpt.get("imb_state", {}).get("daso_probs_sim")
        if probs_sim is not None:
            self.probs_sim = probs_sim.to(self.device)
        return ckpt


# ----------------------------------------------------------------------------------------- debiaspl
class DebiasPLFix:
    """Save and restore DebiasPL's running class prior ``p_hat`` (C,) on ``self.device``."""

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        super().__init__(args, net_builder=net_builder, tb_log=tb_log, logger=logger, **kwargs)
        self.p_hat = self.p_hat.to(self.device)

    def get_save_dict(self):
        d = super().get_save_dict()
        d.setdefault("imb_state", {})["debiaspl_p_hat"] = self.p_hat.detach().cpu().clone()
        return d

    def load_model(self, load_path):
        ckpt = super().load_model(load_path)
        p_hat = ckpt.get("imb_state", {}).get("debiaspl_p_hat")
        if p_hat is not None:
            self.p_hat = p_hat.to(self.device)
        return ckpt


_FIXES = {"abc": ABCFix, "daso": DASOFix, "debiaspl": DebiasPLFix}


class ImbalanceMixin:
    """First in the bases of a combined class: places the late-built modules on the device."""

    imb_name: str = ""

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        super().__init__(args, net_builder=net_builder, tb_log=tb_log, logger=logger, **kwargs)
        self.place_on_device()
        # a logit adjustment (la_prior model, hdl_loss_prior adjusted) wraps the base's consistency
        # loss; an imbalance algorithm that replaced that loss afterwards would silently drop it
        from .logit_adjust import HDL_ADJUSTED, PriorAdjustedLoss

        wanted = [k for k, on in (("la_prior", getattr(self, "la_prior", "none") == "model"),
                                  ("hdl_loss_prior", getattr(getattr(self, "hdl", None), "loss_prior", "") in HDL_ADJUSTED))
                  if on]
        if wanted and not isinstance(self.consistency_loss, PriorAdjustedLoss):
            raise ValueError(f"{wanted[0]}: imb_algorithm {self.imb_name!r} replaces the consistency loss that the "
                             f"logit adjustment wraps; set {wanted[0]} to none with it")


def imbalance_algorithm(imb_algorithm: str, cls: Type) -> Type:
    """USB's imbalance algorithm ``imb_algorithm`` over the device-aware class ``cls``.

    ``cls`` must be a :class:`DeviceMixin` subclass (``Device<Base>`` or an ``hdl_*`` class).
    Raises ValueError for a combination not in :data:`SUPPORTED`.
    """
    if not (isinstance(cls, type) and issubclass(cls, DeviceMixin)):
        raise TypeError(f"cls: expected a DeviceMixin subclass, got {cls!r}")
    check_combination(cls.base_name, imb_algorithm)
    key = (imb_algorithm, cls)
    if key not in _CACHE:
        from semilearn.imb_algorithms import name2imbalg

        imb_cls = name2imbalg[imb_algorithm]
        bases = (ImbalanceMixin, _FIXES[imb_algorithm], imb_cls, cls)
        name = f"{imb_cls.__name__}{cls.__name__}"
        combined = type(name, bases, {"__module__": __name__, "base_name": cls.base_name, "imb_name": imb_algorithm})
        mro = combined.__mro__
        # the device layer must come before USB's AlgorithmBase for every overridden method
        from semilearn.core.algorithmbase import AlgorithmBase

        assert mro.index(DeviceMixin) < mro.index(AlgorithmBase), mro
        _CACHE[key] = combined
    return _CACHE[key]
