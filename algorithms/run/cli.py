"""Command lines: ``hdl-train --config FILE [--key value ...]`` and ``hdl-eval --run DIR``."""
from __future__ import annotations

import argparse
import json
import logging
import sys
import warnings
from typing import List, Optional


def _setup_logging() -> None:
    logging.basicConfig(format="[%(levelname)s] %(message)s", level=logging.INFO)
    logging.getLogger("faiss").setLevel(logging.WARNING)  # its CPU-feature probing is not news
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=".*GradScaler.*")
    warnings.filterwarnings("ignore", message=".*torch.cuda.amp.*")


def train_main(argv: Optional[List[str]] = None) -> int:
    """Train from a YAML config; CLI ``--key value`` pairs override its keys."""
    _setup_logging()
    p = argparse.ArgumentParser(
        prog="hdl-train", description="Train a USB algorithm (or HDL around one) from a YAML config; "
        "--key value pairs after it override the config's keys.",
        epilog="The project's keys (hdl_*, labeling, semantic, data/device) are listed by --help-keys; "
        "USB's own keys and defaults are those of its get_config for the chosen algorithm.")
    p.add_argument("--config", help="YAML file of USB keys (plus the project's)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--help-keys", action="store_true", help="list the project's keys with defaults and meaning, then exit")
    known, rest = p.parse_known_args(argv)
    if known.help_keys:
        from hdl.config_keys import help_text

        print(help_text())
        return 0
    if not known.config:
        p.error("the following arguments are required: --config")
    from semilearn.algorithms import name2alg

    from . import runner
    from .config import load_yaml, parse_overrides, resolve_config
    from ..usb.registry import SUPPORTED_BASES

    try:
        cfg = load_yaml(known.config)
        cfg.update(parse_overrides(rest))
        allowed = set(SUPPORTED_BASES) | {n for n in name2alg.keys() if n.startswith("hdl_")}
        args = resolve_config(cfg, allowed)
        res = runner.train(args, progress=not known.no_progress)
    except (ValueError, OSError) as e:  # OSError: a full or read-only save_dir, named with its path
        print(f"hdl-train: error: {e}", file=sys.stderr)
        return 2
    summary = {k: res[k] for k in ("algorithm", "dataset", "num_labels", "seed", "iterations", "best_val_acc",
                                   "test_acc_at_best_val", "test_acc_final", "wall_seconds")}
    print(json.dumps(summary))
    return 0


def eval_main(argv: Optional[List[str]] = None) -> int:
    """Evaluate a saved run and write per-sample predictions."""
    _setup_logging()
    p = argparse.ArgumentParser(prog="hdl-eval", description=__doc__)
    p.add_argument("--run", required=True, help="run directory written by hdl-train")
    p.add_argument("--split", default="test", help="test (default) or eval (the validation split)")
    p.add_argument("--checkpoint", default="best", help="best (default) or latest")
    p.add_argument("--out", default=None, help="CSV path for per-sample predictions")
    a = p.parse_args(argv)
    from .runner import evaluate_run

    try:
        metrics, out = evaluate_run(a.run, a.split, a.checkpoint, a.out)
    except (ValueError, OSError) as e:  # OSError: a full or read-only save_dir, named with its path
        print(f"hdl-eval: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({**metrics, "predictions": out}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(train_main())
