"""Command lines: ``hdl-train --config FILE [--key value ...]`` and ``hdl-eval --run DIR``."""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import List, Optional


def _setup_logging() -> None:
    """Log lines on the console; third-party warnings are filtered by :mod:`hdl.commands`."""
    logging.basicConfig(format="[%(levelname)s] %(message)s", level=logging.INFO)


def train_main(argv: Optional[List[str]] = None) -> int:
    """Train from a YAML config; CLI ``--key value`` pairs override its keys."""
    _setup_logging()
    p = argparse.ArgumentParser(
        prog="hdl-train", description="Train a USB algorithm (or HDL around one) from a YAML config; "
        "--key value pairs after it override the config's keys.",
        epilog="The project's keys (hdl_*, labeling, semantic, data/device) are listed by --help-keys; "
        "USB's own keys and defaults are those of its get_config for the chosen algorithm. "
        "-v / --verbose shows third-party warnings that are hidden by default.")
    p.add_argument("--config", help="YAML file of USB keys (plus the project's)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--help-keys", action="store_true", help="list the project's keys with defaults and meaning, then exit")
    known, rest = p.parse_known_args(argv)
    if known.help_keys:
        from hdl.config_keys import help_text
        from hdl.data import DATASET_INFO
        from hdl.nets import NETS

        print(help_text())
        print("data sets (dataset: NAME; data_dir: where its files are):")
        for info in DATASET_INFO.values():
            print(f"  {info.name}: {info.expects}")
        print(f"networks (net: NAME): {', '.join(sorted(NETS))} (any image size, 1 or 3 channels), or a "
              f"network of USB's semilearn.nets for 3-channel images (e.g. wrn_28_2, resnet18)")
        print("num_labels: the total number of labeled images (a multiple of num_classes) when lb_imb_ratio "
              "is 1; with lb_imb_ratio > 1 the head class's count, the other classes following the ratio "
              "geometrically (ulb_num_labels and ulb_imb_ratio likewise)")
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
    except runner.RunInterrupted as stop:
        again = [a for a in (argv if argv is not None else sys.argv[1:]) if a not in ("-v", "--verbose")]
        print(f"hdl-train: interrupted at iteration {stop.iteration}; resume with: "
              f"hdl-train {_resume_command(again)}", file=sys.stderr)
        return 130
    except (ValueError, OSError) as e:  # OSError: a full or read-only save_dir, named with its path
        print(f"hdl-train: error: {e}", file=sys.stderr)
        return 2
    summary = {k: res[k] for k in ("algorithm", "dataset", "num_labels", "seed", "iterations", "best_val_acc",
                                   "test_acc_at_best_val", "test_acc_final", "wall_seconds")}
    if os.environ.get("RANK", "0") in ("", "0"):  # several processes: rank 0 reports
        print(json.dumps(summary))
    return 0


def _resume_command(argv: List[str]) -> str:
    """The command line ``argv`` with ``--resume True`` (and without --overwrite / --resume pairs)."""
    import shlex

    out, i = [], 0
    while i < len(argv):
        key = argv[i].split("=", 1)[0].replace("-", "_")
        if key in ("__resume", "__overwrite"):
            i += 1 if "=" in argv[i] else 2
            continue
        out.append(argv[i])
        i += 1
    return " ".join(shlex.quote(a) for a in out + ["--resume", "True"])


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
