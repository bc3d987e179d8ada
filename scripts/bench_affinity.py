"""Peak memory and time of the diffusion's normalized affinity at scale: the blocked CSR build of
``hdl.diffusion.normalized_affinity`` against the same matrix through a coalesced sparse COO tensor.

    OMP_NUM_THREADS=1 python scripts/bench_affinity.py [--n 1000000] [--k 50]

Each build runs in its own process on a random graph (uniform random neighbours: no reciprocal
edges, so 2E stored entries, the most a graph of this width can have); peak memory is the
process's peak RSS minus its RSS after the inputs were made.  Prints one line per build and the
ratios.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
import warnings

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


def coo_affinity(sims, idx, k, gamma=3.0):
    """The affinity through one coalesced COO tensor of every edge in both directions."""
    import torch

    n = idx.shape[0]
    w = sims[:, :k].float().clamp(min=0).pow(gamma)
    rows = torch.arange(n).unsqueeze(1).expand(-1, k)
    keep = (idx[:, :k] >= 0) & (idx[:, :k] != rows) & (w > 0)
    r, c, v = rows[keep], idx[:, :k][keep], w[keep]
    sym = torch.sparse_coo_tensor(torch.stack([torch.cat([r, c]), torch.cat([c, r])]), torch.cat([v, v]),
                                  (n, n), check_invariants=False).coalesce()
    i, vals = sym.indices(), sym.values()
    deg = torch.zeros(n).index_add_(0, i[0], vals)
    deg[deg == 0] = 1.0
    out = torch.sparse_coo_tensor(i, vals * deg.rsqrt()[i[0]] * deg.rsqrt()[i[1]], (n, n), is_coalesced=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return out.to_sparse_csr()


def one(which: str, n: int, k: int) -> dict:
    import torch

    sys.path.insert(0, ROOT)
    from hdl.diffusion import normalized_affinity

    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, n, (n, k), generator=g)
    sims = torch.rand(n, k, generator=g).sort(dim=1, descending=True).values
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    t = time.perf_counter()
    a = normalized_affinity(sims, idx, k) if which == "blocked" else coo_affinity(sims, idx, k)
    sec = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    return {"build": which, "n": n, "k": k, "seconds": round(sec, 2), "peak_gib_over_inputs": round(peak - before, 3),
            "stored_entries": int(a.values().numel())}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--k", type=int, default=50)
    p.add_argument("--one", choices=["blocked", "coo"], help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(one(args.one, args.n, args.k)))
        return
    res = {}
    for which in ("blocked", "coo"):
        out = subprocess.run([sys.executable, __file__, "--one", which, "--n", str(args.n), "--k", str(args.k)],
                             check=True, capture_output=True, text=True).stdout
        res[which] = json.loads(out.strip().splitlines()[-1])
        print(json.dumps(res[which]), flush=True)
    b, c = res["blocked"], res["coo"]
    print(f"blocked / coo: peak memory {b['peak_gib_over_inputs'] / c['peak_gib_over_inputs']:.3f}, "
          f"time {b['seconds'] / c['seconds']:.3f}")


if __name__ == "__main__":
    main()
