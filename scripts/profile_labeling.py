"""Wall-clock phases and peak memory of one ``hdl_label`` (its defaults) on a bench_scale data set.

    OMP_NUM_THREADS=2 python scripts/profile_labeling.py [--kind fmnist] [--n 1000000]
                                                         [--cache bench/scale] [--threads 2]

Reads (or makes) the data of ``scripts/bench_scale.py``'s cache, builds the ``"cells"`` kNN graph
once (cached as CACHE/graphs/KIND_N_cells.npz), then labels it with ``hdl_label``'s defaults and
prints the total seconds and the seconds spent inside each phase (the diffusion affinity, the two
diffusion solves, the class weights, the held-out k choice and each of its candidate labelings,
the votes, the quota), then the process's peak resident memory.  Phases nest (the held-out k
choice contains its labelings), so they do not add up to the total.  ``--save FILE`` writes the
labels (int64 .npy) to compare two versions of the code.
"""
from __future__ import annotations

import argparse
import functools
import os
import resource
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_scale as bs  # noqa: E402

import hdl.labeling as labeling  # noqa: E402
from hdl.ann import cells_defaults, cells_graph  # noqa: E402

PHASES = ("diffusion_affinity", "_diffusion", "class_weights", "calibrate_confidence", "choose_k_heldout",
          "_quota_mask", "_vote", "hdl_label")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kind", default="fmnist", choices=["mixture", "fmnist"])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--cache", default="bench/scale")
    p.add_argument("--fmnist", default=bs.FMNIST_DEFAULT)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save", help="write the labels here (.npy)")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    bs.ensure_data(a.cache, a.kind, a.n, a.fmnist)
    x, truth, given, c = bs.load_data(a.cache, a.kind, a.n)
    gpath = os.path.join(a.cache, "graphs", f"{a.kind}_{a.n}_cells.npz")
    if not os.path.exists(gpath):
        t0 = time.perf_counter()
        nlist, nprobe = cells_defaults(a.n)
        sims, idx = cells_graph(torch.from_numpy(x), bs.K, nlist, nprobe)
        print(f"cells graph: {time.perf_counter() - t0:.1f} s -> {gpath}", flush=True)
        os.makedirs(os.path.dirname(gpath), exist_ok=True)
        bs._save_npz(gpath, sims=sims.numpy(), idx=idx.numpy().astype(np.int32))
    g = np.load(gpath)
    sims, idx = torch.from_numpy(g["sims"]), torch.from_numpy(g["idx"].astype(np.int64))

    spent = {}

    def timed(name, f):
        @functools.wraps(f)
        def run(*args, **kw):
            t0 = time.perf_counter()
            try:
                return f(*args, **kw)
            finally:
                key = f"{name}(k={kw['k']})" if name == "hdl_label" and "k" in kw else name
                spent[key] = spent.get(key, 0.0) + time.perf_counter() - t0
        return run

    for name in PHASES:  # the module's own references, so the nested calls are timed too
        setattr(labeling, name, timed(name, getattr(labeling, name)))
    t0 = time.perf_counter()
    res = labeling.hdl_label(sims, idx, torch.from_numpy(given), c, feats=torch.from_numpy(x))
    total = time.perf_counter() - t0
    lab = res.labels.numpy()
    unl = given < 0
    print(f"{a.kind} {a.n:,} rows, {a.threads} threads: labeling {total:.1f} s, chosen k {res.chosen_k}, "
          f"{res.rounds} rounds, accuracy {100 * (lab[unl] == truth[unl]).mean():.2f}%")
    for name, s in sorted(spent.items(), key=lambda kv: -kv[1]):
        print(f"  {name:28s} {s:8.2f} s")
    print(f"peak resident memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20:.2f} GiB")
    if a.save:
        np.save(a.save, lab)


if __name__ == "__main__":
    main()
