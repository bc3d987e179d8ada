"""Recall@50 against search time of FAISS's approximate indexes on one data set of the scale benchmark.

    python scripts/bench_ann_sweep.py [--kind mixture] [--size 100000] [--queries 2000]
                                      [--nprobe 16 64 250] [--hnsw-m 16 32] [--ef 64 128 256 512]
                                      [--cells-nprobe 5 16 64] [--threads 2] [--fmnist PATH]
                                      [--labels] [--out FILE]

The data are those of ``scripts/bench_scale.py`` (same generator, seed and size).  The exact top-50
(self excluded) of ``--queries`` seeded rows is the reference (faiss ``IndexFlatIP``); its time,
extrapolated to all rows, is the exact search's.  Then, for the ``"cells"`` index of :mod:`hdl.ann` (its default nlist, each
``--cells-nprobe``; it searches all rows at once, so its time is that of the whole graph, the
k-means included as its build), IVF-Flat (the ``hdl.ann`` defaults'
nlist, each ``--nprobe``) and HNSW-Flat (as ``hdl.ann`` builds it, each ``--hnsw-m``, each ``--ef``): the
index build time, the search time of the same queries extrapolated to all rows, recall@50, and
(build + search) / exact, the time share the scale benchmark's 1/10 bar is about.  Every figure is
measured in the same process, so the ratios hold on a shared machine.  The table (markdown) goes to
stdout and, with ``--out``, to a file (written to a temporary file, then renamed).

``--labels`` adds what each graph does to the labels: the full graph of every row is built (the
exact one by faiss, each IVF and HNSW setting by searching all rows), labeled by
:func:`hdl.labeling.hdl_label` with its defaults from the scale benchmark's given labels (1% per
class), and compared with the exact graph's labels: agreement (share of the unlabeled rows with
the same label, the scale benchmark's >= 99% bar) and the labels' accuracy on the unlabeled rows.
``--hnsw-m`` with no value skips HNSW.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import bench_scale as bs  # noqa: E402


def _drop_own(s, i):
    """A (N, k + 1) self-search of all rows as the self-excluded (N, k) graph (torch tensors)."""
    import torch
    from hdl.knn import _drop_self

    s, i = _drop_self(torch.from_numpy(np.asarray(s)), torch.from_numpy(np.asarray(i)).long(), bs.K)
    return torch.where(i >= 0, s, torch.full_like(s, float("-inf"))), i


def sweep(x: np.ndarray, queries: int, nprobes, hnsw_ms, efs, seed: int = 1, labels=None, cells_nprobes=()):
    """Rows (dicts) of the sweep on the L2-normalised float32 rows ``x``; ``labels`` (truth,
    given, num_classes) adds the label columns (module docstring)."""
    import faiss
    import torch
    from hdl.ann import _faiss_index, cells_defaults, cells_graph, ivf_defaults

    n = len(x)
    rows = bs.query_rows(n, min(queries, n), seed)
    t0 = time.perf_counter()
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    _, ref = flat.search(x[rows], bs.K + 1)
    exact_s = (time.perf_counter() - t0) * n / len(rows)
    del flat
    ref = bs._drop_self_np(ref, rows)
    out = [{"index": "exact (flat)", "params": "", "build_s": 0.0, "search_s": exact_s, "recall": 1.0}]
    if labels is not None:
        truth, given, num_classes = labels

        def graph_labels(graph_sims, graph_idx):  # HDL's defaults on a self-excluded (N, k) graph
            return bs.label(graph_sims.numpy(), graph_idx.numpy(), given, num_classes, x)[0]

        flat = faiss.IndexFlatIP(x.shape[1])
        flat.add(x)
        exact_labels = graph_labels(*_drop_own(*flat.search(x, bs.K + 1)))
        del flat
        out[0].update(agreement=1.0, accuracy=bs._acc(exact_labels, truth, given))

    def label_columns(graph_sims, graph_idx):
        """Agreement with the exact graph's HDL labels and accuracy of the labels of a (N, k) graph."""
        lab = graph_labels(graph_sims, graph_idx)
        return {"agreement": bs.agreement(lab, exact_labels, given), "accuracy": bs._acc(lab, truth, given)}

    def timed_search(index):
        t0 = time.perf_counter()
        _, qi = index.search(x[rows], bs.K + 1)
        row = {"search_s": (time.perf_counter() - t0) * n / len(rows),
               "recall": bs.recall_at(bs._drop_self_np(qi, rows), ref)}
        if labels is not None:
            row.update(label_columns(*_drop_own(*index.search(x, bs.K + 1))))
        return row

    for nprobe in cells_nprobes:
        c_nlist, c_nprobe = cells_defaults(n, None, int(nprobe))
        timings = {}
        t0 = time.perf_counter()
        cs, ci = cells_graph(torch.from_numpy(x), bs.K, c_nlist, c_nprobe, 0, timings)
        total = time.perf_counter() - t0
        row = {"index": "cells (ours)", "params": f"nlist {c_nlist}, nprobe {c_nprobe}", "build_s": timings["build"],
               "search_s": total - timings["build"], "recall": bs.recall_at(ci.numpy()[rows], ref)}
        if labels is not None:
            row.update(label_columns(cs, ci))
        out.append(row)
        del cs, ci
    nlist, _ = ivf_defaults(n)
    t0 = time.perf_counter()
    ivf = _faiss_index("ivf", x, {"nlist": nlist, "nprobe": 1}, 0)
    build = time.perf_counter() - t0
    for nprobe in nprobes:
        ivf.nprobe = min(int(nprobe), nlist)
        out.append({"index": "IVF-Flat", "params": f"nlist {nlist}, nprobe {ivf.nprobe}", "build_s": build,
                    **timed_search(ivf)})
    del ivf
    for m in hnsw_ms:
        t0 = time.perf_counter()
        hnsw = _faiss_index("hnsw", x, {"hnsw_m": int(m), "ef_search": int(efs[0])}, 0)  # as hdl.ann builds it
        build = time.perf_counter() - t0
        for ef in efs:
            hnsw.hnsw.efSearch = int(ef)
            out.append({"index": "HNSW-Flat", "params": f"M {m}, efSearch {ef}", "build_s": build,
                        **timed_search(hnsw)})
        del hnsw
    for row in out:
        row["share"] = (row["build_s"] + row["search_s"]) / exact_s
    return out


def table(rows, title: str) -> str:
    with_labels = "agreement" in rows[0]
    extra = " HDL labels = exact graph's (%) | HDL label accuracy (%) |" if with_labels else ""
    lines = [f"# {title}", "",
             "| index | parameters | build s | search s (all rows, est.) | recall@50 | (build + search) / exact |" + extra,
             "|---|---|---:|---:|---:|---:|" + ("---:|---:|" if with_labels else "")]
    for r in rows:
        cells = (f" {100 * r['agreement']:.2f} | {100 * r['accuracy']:.2f} |" if with_labels else "")
        lines.append(f"| {r['index']} | {r['params']} | {r['build_s']:.1f} | {r['search_s']:.1f} | "
                     f"{r['recall']:.3f} | {r['share']:.3f} |" + cells)
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", default="mixture", choices=["mixture", "fmnist"])
    p.add_argument("--size", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--nprobe", type=int, nargs="*", default=[16, 64, 250])
    p.add_argument("--hnsw-m", type=int, nargs="*", default=[16, 32])
    p.add_argument("--ef", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--cells-nprobe", type=int, nargs="*", default=[],
                   help="nprobe values of the 'cells' index (default: none)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fmnist", default=bs.FMNIST_DEFAULT)
    p.add_argument("--labels", action="store_true",
                   help="also label every graph with HDL and compare with the exact graph's labels")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    for name in ("size", "queries", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if min(args.nprobe + args.hnsw_m + args.ef + args.cells_nprobe) < 1:
        p.error("--nprobe, --hnsw-m, --ef and --cells-nprobe values must be >= 1")
    bs._set_threads(args.threads)
    x, truth, num_classes = bs.make_data(args.kind, args.size, args.fmnist)
    labels = (truth, bs.given_labels(truth), num_classes) if args.labels else None
    rows = sweep(x, args.queries, args.nprobe, args.hnsw_m, args.ef, labels=labels,
                 cells_nprobes=args.cells_nprobe)
    text = table(rows, f"ANN sweep: {args.kind}, {args.size:,} x {x.shape[1]}, {min(args.queries, args.size):,} "
                       f"queries, {args.threads} threads")
    print(text, end="")
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
