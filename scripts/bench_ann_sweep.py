"""Recall@50 against search time of FAISS's approximate indexes on one data set of the scale benchmark.

    python scripts/bench_ann_sweep.py [--kind mixture] [--size 100000] [--queries 2000]
                                      [--nprobe 16 64 250] [--hnsw-m 16 32] [--ef 64 128 256 512]
                                      [--threads 2] [--fmnist PATH] [--out FILE]

The data are those of ``scripts/bench_scale.py`` (same generator, seed and size).  The exact top-50
(self excluded) of ``--queries`` seeded rows is the reference (faiss ``IndexFlatIP``); its time,
extrapolated to all rows, is the exact search's.  Then, for IVF-Flat (the ``hdl.ann`` defaults'
nlist, each ``--nprobe``) and HNSW-Flat (as ``hdl.ann`` builds it, each ``--hnsw-m``, each ``--ef``): the
index build time, the search time of the same queries extrapolated to all rows, recall@50, and
(build + search) / exact, the time share the scale benchmark's 1/10 bar is about.  Every figure is
measured in the same process, so the ratios hold on a shared machine.  The table (markdown) goes to
stdout and, with ``--out``, to a file (written to a temporary file, then renamed).
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


def sweep(x: np.ndarray, queries: int, nprobes, hnsw_ms, efs, seed: int = 1):
    """Rows (dicts) of the sweep on the L2-normalised float32 rows ``x``."""
    import faiss
    from hdl.ann import _faiss_index, ivf_defaults

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

    def timed_search(index):
        t0 = time.perf_counter()
        _, qi = index.search(x[rows], bs.K + 1)
        return (time.perf_counter() - t0) * n / len(rows), bs.recall_at(bs._drop_self_np(qi, rows), ref)

    nlist, _ = ivf_defaults(n)
    t0 = time.perf_counter()
    ivf = _faiss_index("ivf", x, {"nlist": nlist, "nprobe": 1}, 0)
    build = time.perf_counter() - t0
    for nprobe in nprobes:
        ivf.nprobe = min(int(nprobe), nlist)
        s, r = timed_search(ivf)
        out.append({"index": "IVF-Flat", "params": f"nlist {nlist}, nprobe {ivf.nprobe}", "build_s": build,
                    "search_s": s, "recall": r})
    del ivf
    for m in hnsw_ms:
        t0 = time.perf_counter()
        hnsw = _faiss_index("hnsw", x, {"hnsw_m": int(m), "ef_search": int(efs[0])}, 0)  # as hdl.ann builds it
        build = time.perf_counter() - t0
        for ef in efs:
            hnsw.hnsw.efSearch = int(ef)
            s, r = timed_search(hnsw)
            out.append({"index": "HNSW-Flat", "params": f"M {m}, efSearch {ef}", "build_s": build,
                        "search_s": s, "recall": r})
        del hnsw
    for row in out:
        row["share"] = (row["build_s"] + row["search_s"]) / exact_s
    return out


def table(rows, title: str) -> str:
    lines = [f"# {title}", "",
             "| index | parameters | build s | search s (all rows, est.) | recall@50 | (build + search) / exact |",
             "|---|---|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['index']} | {r['params']} | {r['build_s']:.1f} | {r['search_s']:.1f} | "
                     f"{r['recall']:.3f} | {r['share']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", default="mixture", choices=["mixture", "fmnist"])
    p.add_argument("--size", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=2000)
    p.add_argument("--nprobe", type=int, nargs="+", default=[16, 64, 250])
    p.add_argument("--hnsw-m", type=int, nargs="+", default=[16, 32])
    p.add_argument("--ef", type=int, nargs="+", default=[64, 128, 256, 512])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--fmnist", default=bs.FMNIST_DEFAULT)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    for name in ("size", "queries", "threads"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    if min(args.nprobe + args.hnsw_m + args.ef) < 1:
        p.error("--nprobe, --hnsw-m and --ef values must be >= 1")
    bs._set_threads(args.threads)
    x, _, _ = bs.make_data(args.kind, args.size, args.fmnist)
    rows = sweep(x, args.queries, args.nprobe, args.hnsw_m, args.ef)
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
