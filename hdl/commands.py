"""Console entry points: quiet third-party output first, then the command.

Warnings and loader messages that a user cannot act on (timm's deprecation notice on importing
semilearn, torch's GradScaler notice on CPU-only runs, FAISS's CPU-feature probing) are filtered
here, before the third-party imports run, and only for the command being run: importing the
library changes no filter.  ``-v`` / ``--verbose`` on any command shows them.

Each function imports its command module only when called, so this module itself imports
nothing heavy.
"""
from __future__ import annotations

import importlib
import logging
import sys
import warnings
from typing import Callable, List, Optional

# (category, message regex) of the filtered third-party warnings
QUIET_WARNINGS = (
    (FutureWarning, r".*timm\.models\.layers.*"),
    (FutureWarning, r".*Importing from timm.*"),
    (UserWarning, r".*GradScaler.*"),
    (UserWarning, r".*torch\.cuda\.amp.*"),
    (FutureWarning, r".*torch\.cuda\.amp.*"),
    (UserWarning, r".*y_pred contains classes not in y_true.*"),
)
VERBOSE_FLAGS = ("-v", "--verbose")


def quiet(argv: List[str]) -> List[str]:
    """Install the filters unless ``argv`` asks for ``-v``; returns ``argv`` without that flag."""
    verbose = any(a in VERBOSE_FLAGS for a in argv)
    if not verbose:
        for category, message in QUIET_WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        logging.getLogger("faiss").setLevel(logging.WARNING)
        logging.getLogger("faiss.loader").setLevel(logging.WARNING)
        logging.getLogger("tensorboard").setLevel(logging.WARNING)  # "No path found" while reading events
    return [a for a in argv if a not in VERBOSE_FLAGS]


# console script -> (command module, function); imported only when the command runs
COMMANDS = {
    "hdl_train": ("hdl.algorithms.run.cli", "train_main"),
    "hdl_eval": ("hdl.algorithms.run.cli", "eval_main"),
    "hdl_relabel": ("hdl.relabel_cli", "main"),
    "hdl_relabel_run": ("hdl.algorithms.run.relabel_run", "main"),
    "hdl_bench": ("hdl.algorithms.bench.cli", "main"),
}


def _entry(name: str) -> Callable[[Optional[List[str]]], int]:
    module, attr = COMMANDS[name]

    def run(argv: Optional[List[str]] = None) -> int:
        args = quiet(list(sys.argv[1:] if argv is None else argv))
        return getattr(importlib.import_module(module), attr)(args)
    run.__name__ = run.__qualname__ = name
    run.__doc__ = f"Console script {name.replace('_', '-')}: {module}.{attr} after :func:`quiet`."
    return run


hdl_train = _entry("hdl_train")
hdl_eval = _entry("hdl_eval")
hdl_relabel = _entry("hdl_relabel")
hdl_relabel_run = _entry("hdl_relabel_run")
hdl_bench = _entry("hdl_bench")
