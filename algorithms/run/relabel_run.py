"""Relabel the training set of a saved run with HDL: EMA-model embeddings -> :func:`hdl.relabel.relabel`.

Every training sample of the run (labeled and unlabeled, from the run's saved ``splits.npz``) is
embedded with the EMA model under the evaluation transform; the labeled samples keep their
ground-truth labels and HDL labels the rest.  Written per sample, keyed by training index.

Python: ``relabel_run(run_dir, checkpoint="best", out=None, ...)``.
Command line (console script ``hdl-relabel-run``)::

    hdl-relabel-run --run DIR [--checkpoint best|latest] [--out FILE] [--device cpu] [--batch-size 256]
                    [labeling flags of hdl-relabel: --k, --k-max, --backend, --class-quota, ...]

Unset labeling flags take the run's own ``hdl_*`` settings (the labeler's defaults for a base run).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Optional, Sequence, Tuple

import numpy as np

from hdl.config_keys import add_relabel_arguments, relabel_options
from hdl.relabel import RelabelResult, relabel, write_csv_atomic

from ..usb.embedding import embed_training_set  # noqa: F401  (part of this module's API)
from .runner import CHECKPOINTS, load_run  # noqa: F401  (load_run is part of this module's API)

@dataclass
class RelabelRunResult:
    """Per training sample of the run, in increasing training index.

    index: int64 (N,) training-set indices; is_labeled: bool (N,) ground-truth labeled samples;
    true_labels: int64 (N,) (-1 where unknown); files: N file names or None; result: the
    :class:`hdl.relabel.RelabelResult` (labels, level, agreement; its ``accuracy`` counts
    originally unlabeled samples left at -1 as wrong); ``precision``: accuracy over the originally
    unlabeled samples HDL did label (None without truth); ``coverage``: their share.
    """

    index: np.ndarray
    is_labeled: np.ndarray
    true_labels: np.ndarray
    files: Optional[list]
    result: RelabelResult
    coverage: float
    precision: Optional[float]

    def summary(self) -> dict:
        r = self.result
        return {"samples": int(len(self.index)), "labeled": int(self.is_labeled.sum()),
                "unlabeled": int(r.num_unlabeled), "coverage": self.coverage, "accuracy": r.accuracy,
                "balanced_accuracy": r.balanced_accuracy, "precision": self.precision,
                "k": int(r.chosen_k), "rounds": int(r.rounds)}


def _run_labeling(alg) -> dict:
    """The run's labeling options (``k_max`` and ``backend`` included) for an ``hdl_*`` run, else {}."""
    hdl = getattr(alg, "hdl", None)
    return dict(hdl.labeling) if hdl is not None else {}


def relabel_run(run_dir: str, checkpoint: str = "best", out: Optional[str] = None, *,
                device: Optional[str] = None, batch_size: int = 256, **options: Any) -> Tuple[RelabelRunResult, str]:
    """Relabel every training sample of a saved run and write a CSV.

    ``options``: :func:`hdl.labeling.hdl_label`'s options plus ``k_max`` and ``backend``; each
    defaults to the run's own (its ``hdl_*`` keys) for an ``hdl_*`` run, else to the labeler's
    default.  ``out`` defaults to ``RUN/relabel_<checkpoint>.csv`` with columns ``index, [file,]
    split, true_label, label, level, agreement`` (``split``: labeled | unlabeled; -1 = none/unknown).
    Returns the result and the CSV path.
    """
    alg = load_run(run_dir, checkpoint, device)
    index, feats = embed_training_set(alg, batch_size)
    info = alg.split_info
    truth = np.asarray(info.train_y, dtype=np.int64)[index]
    is_lb = np.isin(index, info.lb_idx)
    given = np.where(is_lb, truth, -1)
    opts = {**_run_labeling(alg), **options}
    known = bool((truth >= 0).all())
    res = relabel(feats, given, truth if known else None, num_classes=alg.num_classes, **opts)
    unl = ~is_lb
    got = unl & (res.labels >= 0)
    coverage = float(got.sum() / max(unl.sum(), 1))
    precision = float((res.labels[got] == truth[got]).mean()) if known and got.any() else None
    files = None if info.train_files is None else [str(info.train_files[i]) for i in index]
    result = RelabelRunResult(index, is_lb, truth, files, res, coverage, precision)
    out = out or os.path.join(run_dir, f"relabel_{checkpoint}.csv")
    _write_csv(out, result)
    return result, out


def _write_csv(path: str, r: RelabelRunResult) -> None:
    """The per-sample CSV, whole or absent (:func:`hdl.relabel.write_csv_atomic`)."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    except OSError as err:
        raise OSError(f"cannot write {path}: {err.strerror or err}") from None
    res = r.result
    header = ["index"] + (["file"] if r.files is not None else []) + ["split", "true_label", "label", "level",
                                                                      "agreement"]
    rows = ([int(r.index[i])] + ([r.files[i]] if r.files is not None else [])
            + ["labeled" if r.is_labeled[i] else "unlabeled", int(r.true_labels[i]),
               int(res.labels[i]), int(res.level[i]), f"{float(res.agreement[i]):.6f}"]
            for i in range(len(r.index)))
    write_csv_atomic(path, header, rows)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="hdl-relabel-run", description="Relabel the training set of a saved "
                                "hdl-train run with HDL on its EMA model's embeddings.")
    p.add_argument("--run", required=True, help="run directory written by hdl-train")
    p.add_argument("--checkpoint", default="best", choices=sorted(CHECKPOINTS), help="best (default) or latest")
    p.add_argument("--out", default=None, help="output CSV (default RUN/relabel_<checkpoint>.csv)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: the run's)")
    p.add_argument("--batch-size", type=int, default=256)
    add_relabel_arguments(p)  # unset flags: the run's own hdl_* settings
    a = p.parse_args(argv)
    try:
        opts = relabel_options(a)
    except ValueError as e:
        p.error(str(e))
    try:
        result, out = relabel_run(a.run, a.checkpoint, a.out, device=a.device, batch_size=a.batch_size, **opts)
    except (ValueError, TypeError, OSError) as e:
        print(f"hdl-relabel-run: error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({**result.summary(), "out": out}))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
