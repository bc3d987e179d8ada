"""HDL's USB adapter layer.  Importing this package registers HDL's algorithms with USB.

Three folders, imports only downwards (``bench`` -> ``run`` -> ``usb`` -> the core ``hdl``):

* :mod:`hdl.algorithms.usb` - USB algorithm classes: the device layer, the ``hdl_*`` wrappers,
  the loss seam, semantic losses, imbalance combinations, data sets and network builders.
* :mod:`hdl.algorithms.run` - the run engine and its commands: configuration, training,
  evaluation, ``hdl-train``/``hdl-eval``/``hdl-relabel-run``.
* :mod:`hdl.algorithms.bench` - ``hdl-bench``: benchmark grids, their runs and reports.

Re-exported here: :func:`device_algorithm` (a USB algorithm class that runs on CPU or one CUDA
GPU) and :func:`get_net_builder` (the project's small networks by name, else USB's).
"""
from .usb.registry import SUPPORTED_BASES, device_algorithm, get_net_builder  # noqa: F401
from .usb import hdl_wrapper  # noqa: F401,E402  (registers hdl_fixmatch, hdl_freematch, hdl_mixmatch, hdl_remixmatch)
