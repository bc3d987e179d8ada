"""Benchmark one labeled-pool refresh: exact kNN self-search + all HDL labeling rounds.

Prints: the float32 matrix-multiply peak (square matmul, best of a few), the GFLOP/s of the
exact self-search (2 * N * N * D / time) as a share of that peak, the labeling time and the
ratio refresh / search (goals: search >= 50% of peak, refresh / search <= 1.5).

    python scripts/bench_refresh.py [--n 50000] [--dim 128] [--k 50] [--backend faiss]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from hdl.knn import knn_graph
from hdl.labeling import hdl_label


def matmul_peak(size: int = 4096, repeats: int = 5) -> float:
    """Best float32 GFLOP/s of a (size x size) @ (size x size) product on the CPU."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size ** 3 / best / 1e9


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=50000)
    p.add_argument("--dim", type=int, default=128)
    p.add_argument("--k", type=int, default=50, help="graph width k_max")
    p.add_argument("--classes", type=int, default=100)
    p.add_argument("--label-frac", type=float, default=0.01)
    p.add_argument("--backend", default="faiss")
    p.add_argument("--repeats", type=int, default=2, help="timed searches (best is kept)")
    args = p.parse_args(argv)

    peak = matmul_peak()
    print(f"float32 matmul peak (4096^3, best of 5): {peak:.1f} GFLOP/s "
          f"({torch.get_num_threads()} threads)")

    g = torch.Generator().manual_seed(0)
    feats = F.normalize(torch.randn(args.n, args.dim, generator=g), dim=1)
    truth = torch.randint(0, args.classes, (args.n,), generator=g)
    labels = torch.full((args.n,), -1, dtype=torch.int64)
    keep = torch.randperm(args.n, generator=g)[: max(1, int(args.label_frac * args.n))]
    labels[keep] = truth[keep]

    search = float("inf")
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        sims, idx = knn_graph(feats, args.k, backend=args.backend)
        search = min(search, time.perf_counter() - t0)
    gflops = 2 * args.n * args.n * args.dim / search / 1e9
    print(f"exact self-search {args.n} x {args.dim}, k={args.k}, backend={args.backend}: "
          f"{search:.2f} s, {gflops:.1f} GFLOP/s = {100 * gflops / peak:.0f}% of peak")

    t0 = time.perf_counter()
    res = hdl_label(sims, idx, labels, args.classes)
    label_time = time.perf_counter() - t0
    refresh = search + label_time
    print(f"labeling ({int((labels >= 0).sum())} labeled, k={res.chosen_k}, {res.rounds} rounds, "
          f"{int((res.labels >= 0).sum())} labeled after): {label_time:.2f} s")
    print(f"refresh = search + labeling = {refresh:.2f} s; refresh / search = {refresh / search:.2f} "
          f"(goal <= 1.5); search at {100 * gflops / peak:.0f}% of peak (goal >= 50%)")


if __name__ == "__main__":
    main()
