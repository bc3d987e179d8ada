"""``hdl-bench``: benchmark grids of settings x algorithms x {base, HDL} x seeds.

Owns: the grid file format and its cells (:mod:`.grid`), running them resumably (:mod:`.cli`, the
console script) and the reports: results CSV, tables with floors, plots (:mod:`.report`).

May import: :mod:`hdl.algorithms.run`, :mod:`hdl.algorithms.usb` and the core ``hdl``.
"""
