"""USB-facing classes of HDL.  Importing this package registers HDL's algorithms with USB.

* :func:`device_algorithm` - a USB algorithm class that runs on CPU or one CUDA GPU.
* :func:`get_net_builder` - the project's small networks by name, else USB's.
"""
from .registry import SUPPORTED_BASES, device_algorithm, get_net_builder  # noqa: F401
from . import hdl_wrapper  # noqa: F401,E402  (registers hdl_fixmatch, hdl_freematch, hdl_mixmatch, hdl_remixmatch)
