"""The one seam through which HDL's targets reach a base algorithm's unlabeled loss.

Per base algorithm, HDL replaces behaviour under a named *role*, as USB's own algorithms
replace a hook by registering theirs under the same name:

==========  ===========================================  =========================================
base        role (hook name -> function)                 what HDL-labeled rows get
==========  ===========================================  =========================================
fixmatch    ``MaskingHook -> masking``                   mask = the row's weight
            ``PseudoLabelingHook -> gen_ulb_targets``    hard: argmax of the target; soft: target
freematch   the same two roles                           the same
remixmatch  ``DistAlignHook -> dist_align``              the target distribution (before sharpening)
mixmatch    method ``compute_prob`` (no USB hook there)  the target distribution (both views,
                                                         before averaging and sharpening)
==========  ===========================================  =========================================

A step's targets are a per-row distribution (B, C) and weight (B,) for the rows HDL covers
(one-hot with weight 1, or the vote agreement with ``hdl_weight_by_agreement``); other rows pass
through unchanged.  Checked on every step with targets: each role's output must have B rows,
and each role must be called during the step; either failure raises RuntimeError naming the
role.  The base's hook state keeps learning from the model's own predictions (the wrapped hook
runs first, then its output is overridden).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch

from semilearn.core.hooks import Hook

from .host_sync import per_step

# base -> ((hook name or None for a method role, function name), ...)
ROLES: Dict[str, Tuple[Tuple[Optional[str], str], ...]] = {
    "fixmatch": (("MaskingHook", "masking"), ("PseudoLabelingHook", "gen_ulb_targets")),
    "freematch": (("MaskingHook", "masking"), ("PseudoLabelingHook", "gen_ulb_targets")),
    "remixmatch": (("DistAlignHook", "dist_align"),),
    "mixmatch": ((None, "compute_prob"),),
}

# the loss of each base's unlabeled consistency term: logit adjustment (``hdl_loss_prior``) is the
# consistent correction of a softmax cross-entropy for the class-balanced error (Menon et al., ICLR
# 2021); MixMatch's squared error on probabilities has no such correction
UNLABELED_LOSS: Dict[str, str] = {"fixmatch": "ce", "freematch": "ce", "remixmatch": "ce", "mixmatch": "mse"}


@dataclass(frozen=True)
class Targets:
    """rows: bool (B,) rows HDL covers; dist: float32 (B, C) target distribution (rows only);
    weight: float32 (B,) per-row weight (rows only)."""

    rows: torch.Tensor
    dist: torch.Tensor
    weight: torch.Tensor

    @classmethod
    def one_hot(cls, rows: torch.Tensor, labels: torch.Tensor, weight: torch.Tensor, num_classes: int) -> "Targets":
        """One-hot targets of ``labels`` int64 (B,) (-1 allowed outside ``rows``); built by a
        scatter, which reads nothing back to the host (``F.one_hot`` may check the range)."""
        dist = torch.zeros(labels.shape[0], num_classes, dtype=torch.float32, device=labels.device)
        dist.scatter_(1, labels.clamp(min=0).unsqueeze(1), 1.0)
        return cls(rows, dist, weight.float())

    @property
    def count(self) -> torch.Tensor:
        """0-dim int64 tensor on the targets' device: the number of rows HDL covers."""
        return self.rows.sum()


class TargetSeam:
    """Holds the current step's :class:`Targets` and applies them at the base's roles."""

    def __init__(self, base_name: str):
        if base_name not in ROLES:
            raise ValueError(f"HDL has no target seam for base algorithm {base_name!r}; known: {sorted(ROLES)}")
        self.base_name = base_name
        self.roles = ROLES[base_name]
        self._targets: Optional[Targets] = None
        self._calls: Dict[str, int] = {}

    @property
    def active(self) -> bool:
        return self._targets is not None

    def install(self, algorithm) -> None:
        """Wrap the hooks of this seam's hook roles.  Idempotent; the wrapper calls it after its
        hooks are set and again before the run, so a hook registered later under a role's name
        (DASO's ``PseudoLabelingHook``) is wrapped too."""
        for hook_name, fn_name in self.roles:
            if hook_name is None:
                continue
            if hook_name not in algorithm.hooks_dict:
                raise RuntimeError(f"HDL seam: {type(algorithm).__name__} has no hook {hook_name!r} "
                                   f"(role {fn_name!r} of {self.base_name})")
            inner = algorithm.hooks_dict[hook_name]
            if isinstance(inner, RoleHook):
                continue
            wrapper = RoleHook(inner, fn_name, self)
            algorithm._hooks[:] = [wrapper if h is inner else h for h in algorithm._hooks]
            algorithm.hooks_dict[hook_name] = wrapper

    def begin(self, targets: Targets) -> None:
        self._targets = targets
        self._calls = {fn: 0 for _, fn in self.roles}

    def end(self) -> Optional[torch.Tensor]:
        """Close the step: every role must have been called.  Returns the injected row count (a
        0-dim tensor, read by nothing here: no host synchronisation), None without targets."""
        targets, calls = self._targets, self._calls
        self._targets, self._calls = None, {}
        if targets is None:
            return None
        missing = [fn for fn, n in calls.items() if n == 0]
        if missing:
            raise RuntimeError(f"HDL seam: role(s) {missing} of {self.base_name} were not called during the "
                               f"train step; HDL's targets did not reach the loss")
        return targets.count

    def abort(self) -> None:
        self._targets, self._calls = None, {}

    def apply(self, fn_name: str, out: torch.Tensor) -> torch.Tensor:
        """``out`` of role ``fn_name`` with the HDL-labeled rows replaced (unchanged without targets)."""
        t = self._targets
        if t is None:
            return out
        if fn_name not in self._calls:
            raise RuntimeError(f"HDL seam: {fn_name!r} is not a role of {self.base_name}")
        rows = t.rows.shape[0]
        if not torch.is_tensor(out) or out.shape[0] != rows:
            raise RuntimeError(f"HDL seam: role {fn_name!r} of {self.base_name} returned "
                               f"{tuple(getattr(out, 'shape', ()))}, expected {rows} rows (the unlabeled batch)")
        self._calls[fn_name] += 1
        with per_step():
            # torch.where keeps the shapes fixed: no boolean indexing, nothing read on the host
            has = t.rows
            if fn_name == "masking":
                return torch.where(has, t.weight.to(out.dtype), out)
            if fn_name == "gen_ulb_targets" and out.dim() == 1:
                return torch.where(has, t.dist.argmax(dim=1).to(out.dtype), out)
            if out.dim() != 2 or out.shape[1] != t.dist.shape[1]:
                raise RuntimeError(f"HDL seam: role {fn_name!r} of {self.base_name} returned "
                                   f"{tuple(out.shape)}, expected (B, {t.dist.shape[1]}) class scores")
            return torch.where(has.unsqueeze(1), t.dist.to(out.dtype), out)


class RoleHook:
    """A base hook under its own name, with its role function's output passed through the seam.

    Every other attribute (the hook API, state such as FreeMatch's thresholds, ``name``,
    ``priority``) is the wrapped hook's: reads and writes go to it, and checkpoints save its
    tensors (``hook_state_owner``)."""

    def __init__(self, wrapped: Hook, fn_name: str, seam: TargetSeam):
        object.__setattr__(self, "wrapped", wrapped)
        object.__setattr__(self, "role", fn_name)
        object.__setattr__(self, "seam", seam)

    def __getattr__(self, name):
        wrapped = object.__getattribute__(self, "wrapped")
        if name == object.__getattribute__(self, "role"):
            fn, seam = getattr(wrapped, name), object.__getattribute__(self, "seam")
            return lambda algorithm, *args, **kwargs: seam.apply(name, fn(algorithm, *args, **kwargs))
        return getattr(wrapped, name)

    def __setattr__(self, name, value):
        setattr(self.wrapped, name, value)


def hook_state_owner(hook):
    """The object whose attributes hold a hook's state (the wrapped hook of a :class:`RoleHook`)."""
    return hook.wrapped if isinstance(hook, RoleHook) else hook
