"""Which USB algorithms run here, and how their device-aware classes are made."""
from __future__ import annotations

from typing import Dict, Type

from semilearn.algorithms import name2alg

from .device import DeviceMixin
from .logit_adjust import LogitAdjustMixin
from .nets import bind_channels, get_net_builder  # noqa: F401  (re-exported)

SUPPORTED_BASES = ("fixmatch", "freematch", "mixmatch", "remixmatch")

_CACHE: Dict[str, Type] = {}


def device_algorithm(name: str) -> Type:
    """USB's algorithm class ``name`` with :class:`LogitAdjustMixin` (``la_prior``) and
    :class:`DeviceMixin` first in its bases."""
    if name not in SUPPORTED_BASES:
        raise ValueError(f"algorithm: expected one of {list(SUPPORTED_BASES)}, got {name!r}")
    if name not in _CACHE:
        base = name2alg[name]
        _CACHE[name] = type(f"Device{base.__name__}", (LogitAdjustMixin, DeviceMixin, base), {"base_name": name, "__module__": __name__})
    return _CACHE[name]
