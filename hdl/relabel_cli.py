"""``hdl-relabel``: label the unlabeled samples of an embeddings file from a partial label file.

    hdl-relabel --embeddings E.npy|E.npz --labels L.npy|L.csv|L.txt [--true-labels T.npy]
                [--k adaptive] [--k-max 50] [--backend auto] [--class-quota Q] ... --out OUT.csv

The labeling flags are generated from the key table (:func:`hdl.config_keys.add_relabel_arguments`;
``hdl-relabel --help`` lists them).  An ``.npz`` embeddings file holds ``embeddings`` (or
``feats``) of shape (N, D) and optionally a ``files`` array of N names, copied into the output.
Label files hold one integer per sample (-1 = unlabeled); a ``.csv`` may have a header row and
uses its last column.
"""
from __future__ import annotations

import argparse
import csv
import logging
import sys
from typing import Optional, Sequence

import numpy as np

from hdl.config_keys import GRAPH_OPTIONS, add_relabel_arguments, relabel_options
from hdl.labeling import OPTION_TABLE as OPTION_NAMES
from hdl.relabel import relabel


def _load_labels(path: str) -> np.ndarray:
    if path.endswith(".npy"):
        return np.load(path).astype(np.int64).reshape(-1)
    if path.endswith(".npz"):
        data = np.load(path)
        key = "labels" if "labels" in data else data.files[0]
        return data[key].astype(np.int64).reshape(-1)
    with open(path, newline="") as fh:
        rows = [r for r in csv.reader(fh) if r and r[-1].strip()]
    try:
        int(rows[0][-1])
    except (ValueError, IndexError):
        rows = rows[1:]  # header
    try:
        return np.array([int(r[-1]) for r in rows], dtype=np.int64)
    except ValueError as err:
        raise ValueError(f"{path}: every row must end with an integer label (-1 = unlabeled): {err}") from err


def _load_embeddings(path: str):
    if path.endswith(".npy"):
        return np.load(path), None
    if path.endswith(".npz"):
        data = np.load(path, allow_pickle=False)
        key = next((k for k in ("embeddings", "feats") if k in data), None)
        if key is None:
            raise ValueError(f"{path}: expected an array named 'embeddings' or 'feats', found {data.files}")
        files = data["files"] if "files" in data else None
        return data[key], files
    raise ValueError(f"--embeddings must be a .npy or .npz file, got {path!r}")


def add_labeling_arguments(p: argparse.ArgumentParser) -> None:
    """The labeling flags both relabeling commands take, from the one key table
    (:func:`hdl.config_keys.add_relabel_arguments`; unset: the default)."""
    add_relabel_arguments(p)


def labeling_options(args: argparse.Namespace) -> dict:
    """The flags of :func:`add_labeling_arguments` that were given, as ``hdl_label`` keywords
    (the graph options excluded: they are :func:`relabel`'s own arguments)."""
    return relabel_options(args, exclude=GRAPH_OPTIONS)


def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="hdl-relabel", description="Label unlabeled samples from "
                                "embeddings by hierarchical dynamic labeling (HDL).")
    p.add_argument("--embeddings", required=True, help=".npy (N, D) or .npz with 'embeddings'/'feats' "
                   "[and 'files']")
    p.add_argument("--labels", required=True, help=".npy/.csv/.txt, one int per sample, -1 = unlabeled")
    p.add_argument("--true-labels", help="optional ground truth (same formats) to report accuracy")
    p.add_argument("--out", required=True, help="output CSV: index,[file,]label,level,agreement")
    add_labeling_arguments(p)
    p.add_argument("--num-classes", type=int, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")

    emb, files = _load_embeddings(args.embeddings)
    labels = _load_labels(args.labels)
    truth = _load_labels(args.true_labels) if args.true_labels else None
    try:
        opts = labeling_options(args)
        graph = relabel_options(args, exclude=[o for o in OPTION_NAMES if o not in GRAPH_OPTIONS])
        res = relabel(emb, labels, truth, num_classes=args.num_classes, **graph, **opts)
    except (ValueError, TypeError) as err:
        p.error(str(err))
    with open(args.out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index"] + (["file"] if files is not None else []) + ["label", "level", "agreement"])
        for i in range(res.labels.shape[0]):
            w.writerow([i] + ([str(files[i])] if files is not None else [])
                       + [int(res.labels[i]), int(res.level[i]), f"{float(res.agreement[i]):.6f}"])
    n_lab = int((res.labels >= 0).sum())
    print(f"labeled {n_lab}/{res.labels.shape[0]} samples ({res.num_unlabeled} originally unlabeled) "
          f"with k={res.chosen_k} in {res.rounds} rounds -> {args.out}")
    if res.accuracy is not None:
        print(f"accuracy on originally unlabeled samples: {100 * res.accuracy:.2f}% "
              f"(class-balanced {100 * res.balanced_accuracy:.2f}%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
