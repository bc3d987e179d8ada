"""Network builders: the project's small networks by name, else USB's."""
from __future__ import annotations

import functools
from typing import Callable, Optional

from semilearn.core.utils import get_net_builder as usb_get_net_builder

from hdl.nets import NETS, get_net


def get_net_builder(net: str, from_name: bool = False, in_chans: Optional[int] = 3) -> Callable:
    """A network builder ``f(num_classes, pretrained=False, pretrained_path=None)``.

    Project nets (``hdl.nets.NETS``) are found first and get ``in_chans``; other names go to
    USB's ``get_net_builder`` (its WRNs, ResNets and ViTs expect 3-channel images).
    ``in_chans=None``: not known yet (a user's image folder or .npz); :func:`bind_channels` fills
    it in once the data is loaded, before the model is built.
    """
    if net in NETS and not from_name:
        return get_net(net, in_chans=in_chans)
    import semilearn.nets as usb_nets

    if not from_name and not hasattr(usb_nets, net):
        raise ValueError(f"net: unknown network {net!r}; project nets: {sorted(NETS)}; or one of USB's semilearn.nets")
    _check_rgb(net, in_chans)
    return usb_get_net_builder(net, from_name)


def bind_channels(builder: Callable, net: str, in_chans: int) -> Callable:
    """``builder`` with the data set's channel count where it was left open; checks USB nets."""
    if isinstance(builder, functools.partial) and "in_chans" in builder.keywords:
        if builder.keywords["in_chans"] is None:
            return functools.partial(builder.func, *builder.args, **{**builder.keywords, "in_chans": in_chans})
        return builder
    _check_rgb(net, in_chans)
    return builder


def _check_rgb(net: str, in_chans: Optional[int]) -> None:
    if in_chans is not None and in_chans != 3:
        raise ValueError(f"net: {net!r} expects RGB images but this dataset has {in_chans} channel(s); use one of {sorted(NETS)}")
