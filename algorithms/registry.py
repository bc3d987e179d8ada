"""Which USB algorithms run here, and how their device-aware classes are made."""
from __future__ import annotations

from typing import Callable, Dict, Type

from semilearn.algorithms import name2alg
from semilearn.core.utils import get_net_builder as usb_get_net_builder

from hdl.nets import NETS, get_net

from .device import DeviceMixin

SUPPORTED_BASES = ("fixmatch", "freematch", "mixmatch", "remixmatch")

_CACHE: Dict[str, Type] = {}


def device_algorithm(name: str) -> Type:
    """USB's algorithm class ``name`` with :class:`DeviceMixin` first in its bases."""
    if name not in SUPPORTED_BASES:
        raise ValueError(f"algorithm: expected one of {list(SUPPORTED_BASES)}, got {name!r}")
    if name not in _CACHE:
        base = name2alg[name]
        _CACHE[name] = type(f"Device{base.__name__}", (DeviceMixin, base), {"base_name": name, "__module__": __name__})
    return _CACHE[name]


def get_net_builder(net: str, from_name: bool = False, in_chans: int = 3) -> Callable:
    """A network builder ``f(num_classes, pretrained=False, pretrained_path=None)``.

    Project nets (``hdl.nets.NETS``) are found first and get ``in_chans``; other names go to
    USB's ``get_net_builder`` (its WRNs, ResNets and ViTs expect 3-channel images).
    """
    if net in NETS and not from_name:
        return get_net(net, in_chans=in_chans)
    import semilearn.nets as usb_nets

    if not from_name and not hasattr(usb_nets, net):
        raise ValueError(f"net: unknown network {net!r}; project nets: {sorted(NETS)}; or one of USB's semilearn.nets")
    if in_chans != 3:
        raise ValueError(f"net: {net!r} expects RGB images but this dataset has {in_chans} channel(s); use one of {sorted(NETS)}")
    return usb_get_net_builder(net, from_name)
