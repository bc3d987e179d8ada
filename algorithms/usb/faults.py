"""Fault injection for the crash tests: kill the process with SIGKILL at a named point.

Set the environment variable ``HDL_FAULT=POINT:N`` (several: comma-separated) before a run; the
process kills itself with SIGKILL the N-th time it reaches POINT (counted from 1, per process).
Points:

* ``step`` - inside a train step: after the base algorithm's ``train_step`` (forward, backward,
  parameter update), before the step's hooks (EMA, refresh, evaluation, checkpoint);
* ``refresh`` - inside an HDL refresh: after the kNN graph and labeling, before the pool is
  replaced;
* ``checkpoint_write`` - inside a checkpoint write: the new file and its checksum are complete in
  their temp files, nothing is renamed yet;
* ``checkpoint_rotate`` - inside a checkpoint write: the old ``latest_model.pth`` has become
  ``previous_model.pth``, the new one is not in place yet.

Unset (the default) it costs one dictionary look-up per point.
"""
from __future__ import annotations

import os
import signal
from typing import Dict, Optional

ENV = "HDL_FAULT"
POINTS = ("step", "refresh", "checkpoint_write", "checkpoint_rotate")

_plan: Optional[Dict[str, int]] = None
_hits: Dict[str, int] = {}


def parse(spec: str) -> Dict[str, int]:
    """``"step:7,refresh:1"`` -> ``{"step": 7, "refresh": 1}``; raises ValueError naming HDL_FAULT."""
    plan = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        point, _, n = part.partition(":")
        if point not in POINTS or not n.isdigit() or int(n) < 1:
            raise ValueError(f"{ENV}: expected POINT:N with POINT one of {list(POINTS)} and N >= 1, got {part!r}")
        plan[point] = int(n)
    return plan


def fault_point(name: str) -> None:
    """Count a visit of ``name``; SIGKILL this process on the planned visit."""
    global _plan
    if _plan is None:
        _plan = parse(os.environ.get(ENV, ""))
    if name not in _plan:
        return
    _hits[name] = _hits.get(name, 0) + 1
    if _hits[name] == _plan[name]:
        os.kill(os.getpid(), signal.SIGKILL)
