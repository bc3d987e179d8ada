"""Re-export of :mod:`hdl.algorithms.run.config` (its former place)."""
from .run.config import *  # noqa: F401,F403
from .run.config import load_yaml, resolve_config  # noqa: F401
