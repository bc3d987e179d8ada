"""Re-export of :mod:`hdl.algorithms.usb.device` (its former place)."""
from .usb.device import *  # noqa: F401,F403
from .usb.device import DeviceMixin, resolve_device  # noqa: F401
