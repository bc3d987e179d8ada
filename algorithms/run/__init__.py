"""The run engine and its commands.

Owns: configuration (:mod:`.config`: YAML, USB defaults, the project's key table, one validation
pass), training and evaluation of a run directory (:mod:`.runner`), the console commands
``hdl-train``/``hdl-eval`` (:mod:`.cli`) and ``hdl-relabel-run`` (:mod:`.relabel_run`).

May import: :mod:`hdl.algorithms.usb` and the core ``hdl``.  Never imports
:mod:`hdl.algorithms.bench`.
"""
