"""Console entry points: quiet third-party output first, then the command.

Warnings and loader messages that a user cannot act on (timm's deprecation notice on importing
semilearn, torch's GradScaler notice on CPU-only runs, FAISS's CPU-feature probing) are filtered
here, before the third-party imports run, and only for the command being run: importing the
library changes no filter.  ``-v`` / ``--verbose`` on any command shows them.

Each function imports its command module only when called, so this module itself imports
nothing heavy.
"""
from __future__ import annotations

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


def _run(target: Callable[[], Callable[[Optional[List[str]]], int]], argv: Optional[List[str]]) -> int:
    args = quiet(list(sys.argv[1:] if argv is None else argv))
    return target()(args)


def hdl_train(argv: Optional[List[str]] = None) -> int:
    def target():
        from hdl.algorithms.run.cli import train_main
        return train_main
    return _run(target, argv)


def hdl_eval(argv: Optional[List[str]] = None) -> int:
    def target():
        from hdl.algorithms.run.cli import eval_main
        return eval_main
    return _run(target, argv)


def hdl_relabel(argv: Optional[List[str]] = None) -> int:
    def target():
        from hdl.relabel_cli import main
        return main
    return _run(target, argv)


def hdl_relabel_run(argv: Optional[List[str]] = None) -> int:
    def target():
        from hdl.algorithms.run.relabel_run import main
        return main
    return _run(target, argv)


def hdl_bench(argv: Optional[List[str]] = None) -> int:
    def target():
        from hdl.algorithms.bench.cli import main
        return main
    return _run(target, argv)
