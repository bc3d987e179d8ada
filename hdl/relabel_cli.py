"""``hdl-relabel``: label the unlabeled samples of an embeddings file from a partial label file.

    hdl-relabel --embeddings E.npy|E.npz --labels L.npy|L.csv|L.txt [--true-labels T.npy]
                [--k adaptive] [--k-max 50] [--backend auto] [--class-quota Q] ... --out OUT.csv

The labeling flags are generated from the key table (:func:`hdl.config_keys.add_relabel_arguments`;
``hdl-relabel --help`` lists them).  An ``.npz`` embeddings file holds ``embeddings`` (or
``feats``) of shape (N, D) and optionally a ``files`` array of N names, copied into the output.
Label files hold one integer per sample (-1 = unlabeled); a ``.csv`` may have a header row and
uses its last column.

Every input file is checked on load: a missing, empty or unreadable file, a wrong shape, NaN/inf
embeddings, non-integer labels (2.7), a label count that differs from the embeddings', or no label
at all exits with status 2 and one line naming the file and what is wrong.  Legal but questionable
input (a class with no labeled sample, labels outside ``--num-classes``, identical embeddings, a k
beyond the sample count) gets a ``hdl-relabel: warning:`` line saying what the result will lack.
The output is written to a temp file and renamed, so it is whole or absent; an OS error (disk full,
missing folder) is one line naming the path and the cause.
"""
from __future__ import annotations

import argparse
import csv
import logging
import os
import sys
import warnings
from typing import Optional, Sequence

import numpy as np

from hdl.config_keys import add_relabel_arguments, relabel_options
from hdl.relabel import RelabelWarning, relabel, write_csv_atomic


class InputError(ValueError):
    """A bad input file; the message names the file and what is wrong."""


def _check_file(path: str, flag: str) -> None:
    if not os.path.exists(path):
        raise InputError(f"{flag} {path}: no such file")
    if os.path.isdir(path):
        raise InputError(f"{flag} {path}: is a directory, expected a file")
    if os.path.getsize(path) == 0:
        raise InputError(f"{flag} {path}: the file is empty (0 bytes)")


def _integer_labels(values: np.ndarray, path: str, flag: str) -> np.ndarray:
    values = np.asarray(values).reshape(-1)
    if values.dtype.kind in "iu":
        return values.astype(np.int64)
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise InputError(f"{flag} {path}: labels must be integers (-1 = unlabeled); sample {i} is {float(values[i])!r}")
        return values.astype(np.int64)
    if values.dtype.kind == "b":
        raise InputError(f"{flag} {path}: labels must be integers (-1 = unlabeled), got booleans")
    raise InputError(f"{flag} {path}: labels must be integers (-1 = unlabeled), got dtype {values.dtype}")


def _load_labels(path: str, flag: str = "--labels") -> np.ndarray:
    _check_file(path, flag)
    try:
        if path.endswith(".npy"):
            return _integer_labels(np.load(path, allow_pickle=False), path, flag)
        if path.endswith(".npz"):
            data = np.load(path, allow_pickle=False)
            if not data.files:
                raise InputError(f"{flag} {path}: the .npz holds no array")
            key = "labels" if "labels" in data else data.files[0]
            return _integer_labels(data[key], path, flag)
    except InputError:
        raise
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{flag} {path}: not a readable {os.path.splitext(path)[1]} file ({err})") from None
    try:
        with open(path, newline="") as fh:
            rows = [r for r in csv.reader(fh) if r and r[-1].strip()]
    except (UnicodeDecodeError, csv.Error) as err:
        raise InputError(f"{flag} {path}: not a text file of labels ({type(err).__name__})") from None
    if not rows:
        raise InputError(f"{flag} {path}: no labels in the file")
    start = 0
    try:
        float(rows[0][-1])
    except ValueError:
        start = 1  # header
    out = []
    for line, r in enumerate(rows[start:], start=start + 1):
        cell = r[-1].strip()
        try:
            out.append(int(cell))
        except ValueError:
            raise InputError(f"{flag} {path}: row {line}: label {cell!r} is not an integer (-1 = unlabeled)") from None
    if not out:
        raise InputError(f"{flag} {path}: no labels in the file (a header only)")
    return np.array(out, dtype=np.int64)


def _load_embeddings(path: str):
    flag = "--embeddings"
    _check_file(path, flag)
    if not path.endswith((".npy", ".npz")):
        raise InputError(f"{flag} must be a .npy or .npz file, got {path!r}")
    try:
        if path.endswith(".npy"):
            emb, files = np.load(path, allow_pickle=False), None
        else:
            data = np.load(path, allow_pickle=False)
            key = next((k for k in ("embeddings", "feats") if k in data), None)
            if key is None:
                raise InputError(f"{flag} {path}: expected an array named 'embeddings' or 'feats', found {data.files}")
            emb = data[key]
            files = data["files"] if "files" in data else None
    except InputError:
        raise
    except (ValueError, OSError, EOFError) as err:
        raise InputError(f"{flag} {path}: not a readable {os.path.splitext(path)[1]} file ({err})") from None
    if emb.ndim != 2 or emb.dtype.kind not in "fiu" or emb.shape[0] == 0 or emb.shape[1] == 0:
        raise InputError(f"{flag} {path}: expected a numeric array of shape (N, D) with N, D >= 1, "
                         f"got shape {emb.shape} dtype {emb.dtype}")
    bad = ~np.isfinite(emb.astype(np.float64, copy=False)).all(axis=1)
    if bad.any():
        raise InputError(f"{flag} {path}: {int(bad.sum())} row(s) hold NaN or inf (first: row {int(np.flatnonzero(bad)[0])})")
    if files is not None and len(files) != emb.shape[0]:
        raise InputError(f"{flag} {path}: 'files' has {len(files)} names for {emb.shape[0]} embeddings")
    return emb.astype(np.float32, copy=False), files


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="hdl-relabel", description="Label unlabeled samples from "
                                "embeddings by hierarchical dynamic labeling (HDL).")
    p.add_argument("--embeddings", required=True, help=".npy (N, D) or .npz with 'embeddings'/'feats' "
                   "[and 'files']")
    p.add_argument("--labels", required=True, help=".npy/.csv/.txt, one int per sample, -1 = unlabeled")
    p.add_argument("--true-labels", help="optional ground truth (same formats) to report accuracy")
    p.add_argument("--out", required=True, help="output CSV: index,[file,]label,level,agreement")
    add_relabel_arguments(p)  # the labeling flags, from the key table
    p.add_argument("--num-classes", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    try:
        emb, files = _load_embeddings(args.embeddings)
        labels = _load_labels(args.labels)
        truth = _load_labels(args.true_labels, "--true-labels") if args.true_labels else None
        if labels.shape[0] != emb.shape[0]:
            raise InputError(f"--labels {args.labels}: {labels.shape[0]} labels for the {emb.shape[0]} embeddings "
                             f"of {args.embeddings}")
        if truth is not None and truth.shape[0] != emb.shape[0]:
            raise InputError(f"--true-labels {args.true_labels}: {truth.shape[0]} labels for the {emb.shape[0]} "
                             f"embeddings of {args.embeddings}")
        opts = relabel_options(args)  # hdl_label's options and relabel's graph options
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RelabelWarning)
            res = relabel(emb, labels, truth, num_classes=args.num_classes, **opts)
        for w in caught:
            if issubclass(w.category, RelabelWarning):
                print(f"hdl-relabel: warning: {w.message}", file=sys.stderr)
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        header = ["index"] + (["file"] if files is not None else []) + ["label", "level", "agreement"]
        rows = ([i] + ([str(files[i])] if files is not None else [])
                + [int(res.labels[i]), int(res.level[i]), f"{float(res.agreement[i]):.6f}"]
                for i in range(res.labels.shape[0]))
        write_csv_atomic(args.out, header, rows)
    except (ValueError, TypeError, OSError) as err:
        print(f"hdl-relabel: error: {err}", file=sys.stderr)
        return 2
    n_lab = int((res.labels >= 0).sum())
    print(f"labeled {n_lab}/{res.labels.shape[0]} samples ({res.num_unlabeled} originally unlabeled) "
          f"with k={res.chosen_k} in {res.rounds} rounds -> {args.out}")
    if res.accuracy is not None:
        print(f"accuracy on originally unlabeled samples: {100 * res.accuracy:.2f}% "
              f"(class-balanced {100 * res.balanced_accuracy:.2f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
