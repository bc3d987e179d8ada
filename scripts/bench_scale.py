"""Scale benchmark of one HDL refresh (kNN graph + HDL labeling) at 10k, 100k and 1M x 128 rows.

    python scripts/bench_scale.py [--sizes 10000 100000 1000000] [--kinds mixture fmnist]
                                  [--threads 2] [--cache bench/scale] [--out results/scale]
                                  [--fmnist saved_models/labeling_suite/fmnist_fixmatch.npz]

Data kinds (L2-normalised float32 rows, 1% of each class's rows given as labels, seed 0):

* ``mixture``: a hierarchical Gaussian mixture (``compare_labeling.make_hierarchical_mixture``, the
  labeling suite's generator): 5 groups x 4 classes, 128 dims, equal class sizes, per-sample noise
  ``MIXTURE_NOISE`` = 1.65, chosen so that the exact k=50 neighbour label purity lies in 60-80% at
  every size (measured and printed: about 62% at 10k, 72% at 100k, 76% at 1M; it grows with N as
  neighbours get closer).  20 classes rather than 100 keeps the (N, C) diffusion state of the
  labeling small at 1M (it is N x C float32 several times over).
* ``fmnist``: the 59,000 x 128 EMA-model features of the FixMatch Fashion-MNIST run of
  ``scripts/labeling_suite_prepare.sh`` (R3 of the labeling suite), already 128-d, so neither
  projected nor padded.  Rows are L2-normalised, drawn in a seeded order and tiled to the size
  (at 10k: a random subset), each copy plus Gaussian noise of per-dimension sd
  ``FMNIST_NOISE`` = 0.0022 (noise norm about 0.025, a quarter of the median distance 0.098 from a
  row to its nearest other row), then normalised again; the class labels are kept.

Cells (one fresh subprocess each, so ``ru_maxrss`` is the cell's own peak; results are cached in
``CACHE/cells/*.json`` and finished cells are skipped, so an interrupted run resumes):

* ``queries``: exact (faiss ``IndexFlatIP``) top-50 of ``min(10k, N)`` sampled query rows: the
  recall reference, the purity, and at sizes where the full exact graph is not run, the exact
  search time extrapolated as ``seconds x N / queries``; the float32 matmul peak is measured in
  the same process.
* ``ivf``: :func:`hdl.ann.build_graph` with ``index="ivf"`` and its default parameters, then
  :func:`hdl.labeling.hdl_label` with its defaults (what :func:`hdl.refresh.refresh` runs, without
  its 1,000-query recall check); labels cached for the agreement.
* ``cells``: :func:`hdl.ann.cells_graph` with its defaults (k-means cells searched cell by cell
  with matrix products; the k-means and assignment timed as the build), then ``hdl_label``.
* ``exact``: :func:`hdl.knn.knn_graph` (faiss) of all rows, timed, + ``hdl_label``: the reference
  labels.  At 1M this is the long cell (about 40 min on 2 cores) and runs last.
* ``torch`` / ``sklearn``: exact search by ``hdl.knn``'s torch backend and by scikit-learn's
  ``NearestNeighbors(algorithm="brute", metric="cosine")``, all rows where N <= ``FULL_BRUTE_MAX``,
  else ``10k`` queries and a time extrapolated to N queries (marked ``est.``).

Writes ``OUT/table.md`` and ``OUT/results.csv``.  Recall@50: share of the exact top-50 (self
excluded) of the sampled queries that the graph lists.  Agreement: share of the unlabeled rows
whose HDL label from the graph equals the one from the exact graph.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import resource
import subprocess
import sys
import time
from typing import Dict, List, Optional

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

K = 50
MIXTURE_NOISE = 1.65
MIXTURE_GROUPS, MIXTURE_CLASSES_PER_GROUP = 5, 4
FMNIST_NOISE = 0.0022
FMNIST_DEFAULT = "saved_models/labeling_suite/fmnist_fixmatch.npz"
LABEL_FRAC = 0.01
QUERIES = 10_000
FULL_BRUTE_MAX = 100_000  # torch / sklearn search all rows up to this size, else QUERIES rows
CELL_TIMEOUT = 600  # torch / sklearn: "where they finish in 10 minutes"
METHODS = ("queries", "ivf", "ivf16", "cells", "exact", "torch", "sklearn")
DIM = 128


def _set_threads(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    try:
        import faiss

        faiss.omp_set_num_threads(threads)
    except ImportError:
        pass


def peak_gib() -> float:
    """This process's peak resident memory (GiB; ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20


def _atomic_save(path: str, save) -> None:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    save(tmp)
    os.replace(tmp, path)


def _save_npz(path: str, **arrays) -> None:
    def save(tmp):
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
    _atomic_save(path, save)


def _save_json(path: str, obj: dict) -> None:
    def save(tmp):
        with open(tmp, "w") as fh:
            json.dump(obj, fh, indent=1)
    _atomic_save(path, save)


# ---------------------------------------------------------------------------------------- data
def mixture(n: int, seed: int = 0, noise: float = MIXTURE_NOISE):
    """(feats float32 (n, 128) L2-normalised, truth int64 (n,), num_classes) of the mixture kind."""
    from compare_labeling import make_hierarchical_mixture

    c = MIXTURE_GROUPS * MIXTURE_CLASSES_PER_GROUP
    sizes = np.full(c, n // c)
    sizes[: n - sizes.sum()] += 1
    feats, truth, _ = make_hierarchical_mixture(seed, MIXTURE_GROUPS, MIXTURE_CLASSES_PER_GROUP, DIM,
                                                noise=noise, sizes=sizes)
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    return feats, truth, c


def fmnist(n: int, path: str, seed: int = 0, noise: float = FMNIST_NOISE):
    """As :func:`mixture` for the tiled Fashion-MNIST features (module docstring)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing; make it with `bash scripts/labeling_suite_prepare.sh` "
                                "(writes saved_models/labeling_suite/fmnist_fixmatch.npz) or pass --fmnist PATH")
    data = np.load(path)
    base = data["feats"].astype(np.float32)
    if base.ndim != 2 or base.shape[1] != DIM:
        raise ValueError(f"{path}: feats must have shape (N, {DIM}), got {base.shape}")
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    truth_base = data["labels"].astype(np.int64)
    rng = np.random.default_rng(seed)
    reps = math.ceil(n / base.shape[0])
    rows = np.concatenate([rng.permutation(base.shape[0]) for _ in range(reps)])[:n]
    feats = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):  # in blocks: no float64 copy of 1M rows
        stop = min(n, start + 100_000)
        block = base[rows[start:stop]] + rng.normal(0, noise, (stop - start, DIM)).astype(np.float32)
        feats[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return feats, truth_base[rows], int(truth_base.max()) + 1


def given_labels(truth: np.ndarray, seed: int = 0, frac: float = LABEL_FRAC) -> np.ndarray:
    """``max(1, round(frac * n_c))`` seeded labels per class, -1 elsewhere."""
    from compare_labeling import sample_labeled

    return sample_labeled(truth, frac, seed)


def make_data(kind: str, n: int, fmnist_path: str = FMNIST_DEFAULT):
    if kind == "mixture":
        return mixture(n)
    if kind == "fmnist":
        return fmnist(n, fmnist_path)
    raise ValueError(f"kind must be 'mixture' or 'fmnist', got {kind!r}")


def data_path(cache: str, kind: str, n: int) -> str:
    return os.path.join(cache, "data", f"{kind}_{n}.npz")


def ensure_data(cache: str, kind: str, n: int, fmnist_path: str) -> str:
    path = data_path(cache, kind, n)
    if not os.path.exists(path):
        t0 = time.perf_counter()
        feats, truth, c = make_data(kind, n, fmnist_path)
        _save_npz(path, feats=feats, truth=truth, labels=given_labels(truth), num_classes=np.int64(c))
        print(f"  data {kind} {n}: {time.perf_counter() - t0:.1f} s -> {path}", flush=True)
    return path


def load_data(cache: str, kind: str, n: int):
    d = np.load(data_path(cache, kind, n))
    return d["feats"], d["truth"], d["labels"], int(d["num_classes"])


def query_rows(n: int, m: int = QUERIES, seed: int = 1) -> np.ndarray:
    """The sorted seeded sample of ``min(m, n)`` query rows of the recall and purity figures."""
    if n <= m:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, m, replace=False))


# ------------------------------------------------------------------------------------- measures
def exact_queries(x, rows, k: int = K, backend: str = "faiss"):
    """Exact top-k (self excluded) of ``x[rows]`` in ``x``: (sims, idx (len(rows), k), seconds)."""
    import torch
    from hdl.knn import knn_search

    xt = torch.from_numpy(x)
    r = torch.from_numpy(rows)
    t0 = time.perf_counter()
    s, i = knn_search(xt[r], xt, k + 1, backend=backend)
    dt = time.perf_counter() - t0
    own = i == r.unsqueeze(1)
    drop = torch.where(own.any(dim=1), own.int().argmax(dim=1), torch.full_like(r, k))
    keep = torch.ones_like(i, dtype=torch.bool)
    keep[torch.arange(len(r)), drop] = False
    return s[keep].view(-1, k).numpy(), i[keep].view(-1, k).numpy(), dt


def recall_at(graph_idx: np.ndarray, ref_idx: np.ndarray) -> float:
    """Share of the reference neighbours (rows of ``ref_idx``, -1 = none) listed in the same rows
    of ``graph_idx``."""
    hits = total = 0
    for start in range(0, len(ref_idx), 2000):
        ref, got = ref_idx[start:start + 2000], graph_idx[start:start + 2000]
        valid = ref >= 0
        hit = (ref[:, :, None] == got[:, None, :]).any(axis=2) & valid
        hits += int(hit.sum())
        total += int(valid.sum())
    return hits / max(total, 1)


def purity(ref_idx: np.ndarray, truth_q: np.ndarray, truth: np.ndarray) -> float:
    """Mean share of the query rows' exact neighbours that carry their class."""
    return float((truth[ref_idx.clip(min=0)] == truth_q[:, None]).mean())


def agreement(labels_a: np.ndarray, labels_b: np.ndarray, given: np.ndarray) -> float:
    """Share of the unlabeled rows (given == -1) where the two label vectors agree."""
    unl = given < 0
    return float((labels_a[unl] == labels_b[unl]).mean())


def matmul_peak(size: int = 4096, repeats: int = 5) -> float:
    from bench_refresh import matmul_peak as peak

    return peak(size, repeats)


def label(sims, idx, labels, num_classes, x):
    """hdl_label with its defaults, as hdl.refresh.refresh calls it: (labels, seconds, result)."""
    import torch
    from hdl.labeling import hdl_label

    t0 = time.perf_counter()
    res = hdl_label(torch.as_tensor(sims), torch.as_tensor(idx), torch.from_numpy(labels), num_classes,
                    feats=torch.from_numpy(x))
    return res.labels.numpy(), time.perf_counter() - t0, res


# ----------------------------------------------------------------------------------------- cells
def _ivf_cell(x, given, truth, c, rows, ref, method, max_search_s, labels_path) -> dict:
    """The steps of :func:`hdl.ann.build_graph` with ``index="ivf"`` (index build, search,
    self removal), timed apart, then ``hdl_label``.  The sampled queries are searched first; when
    their time extrapolated to all rows exceeds ``max_search_s`` the cell stops there (search time
    marked estimated, recall from the sampled queries, no labeling)."""
    import torch
    from hdl.ann import _faiss_index, ivf_defaults
    from hdl.knn import _drop_self

    n = x.shape[0]
    nlist, nprobe = ivf_defaults(n)
    if method == "ivf16":
        nprobe = min(16, nlist)
    t0 = time.perf_counter()
    index = _faiss_index("ivf", x, {"nlist": nlist, "nprobe": nprobe}, 0)
    build_s = time.perf_counter() - t0
    out = {"params": {"nlist": nlist, "nprobe": nprobe}, "build_s": build_s}
    t0 = time.perf_counter()
    _, qi = index.search(x[rows], K + 1)
    q_s = time.perf_counter() - t0
    out.update(recall=recall_at(_drop_self_np(qi, rows), ref), query_s=q_s, queries=len(rows))
    est = q_s * n / len(rows)
    print(f"  ivf nlist {nlist} nprobe {nprobe}: build {build_s:.1f} s, {len(rows)} queries {q_s:.1f} s "
          f"(all rows: {est:.0f} s), recall@{K} {out['recall']:.3f}", flush=True)
    if len(rows) < n and est > max_search_s:
        out.update(search_s=est, estimated=True, skipped=f"search est. {est:.0f} s > {max_search_s:.0f} s")
        return out
    t0 = time.perf_counter()
    s, i = index.search(x, K + 1)
    s, i = torch.from_numpy(s), torch.from_numpy(i).long()
    s = torch.where(i >= 0, s, torch.full_like(s, float("-inf")))
    sims, idx = _drop_self(s, i, K)
    out["search_s"] = time.perf_counter() - t0
    del index, s, i  # as in build_graph: only the graph outlives the search
    print(f"  ivf search: {out['search_s']:.1f} s", flush=True)
    lab, lab_s, res = label(sims, idx, given, c, x)
    np.save(labels_path, lab)
    out.update(label_s=lab_s, chosen_k=res.chosen_k, rounds=res.rounds, accuracy=_acc(lab, truth, given))
    return out


def _cells_cell(x, given, truth, c, rows, ref, labels_path) -> dict:
    """:func:`hdl.ann.cells_graph` with its defaults (k-means timed as the build, the blocked
    search as the search), then ``hdl_label``."""
    import torch
    from hdl.ann import cells_defaults, cells_graph

    nlist, nprobe = cells_defaults(x.shape[0])
    timings: Dict[str, float] = {}
    t0 = time.perf_counter()
    sims, idx = cells_graph(torch.from_numpy(x), K, nlist, nprobe, 0, timings)
    total = time.perf_counter() - t0
    out = {"params": {"nlist": nlist, "nprobe": nprobe}, "build_s": timings["build"],
           "search_s": total - timings["build"], "recall": recall_at(idx.numpy()[rows], ref)}
    print(f"  cells nlist {nlist} nprobe {nprobe}: build {out['build_s']:.1f} s, search {out['search_s']:.1f} s, "
          f"recall@{K} {out['recall']:.3f}", flush=True)
    lab, lab_s, res = label(sims, idx, given, c, x)
    np.save(labels_path, lab)
    out.update(label_s=lab_s, chosen_k=res.chosen_k, rounds=res.rounds, accuracy=_acc(lab, truth, given))
    return out


def run_cell(cache: str, kind: str, n: int, method: str, threads: int = 2,
             max_search_s: float = 1200.0) -> dict:
    """Run one cell in this process; returns its row (also written to the cell's JSON)."""
    import torch

    _set_threads(threads)
    x, truth, given, c = load_data(cache, kind, n)
    rows = query_rows(n)
    qpath = os.path.join(cache, "queries", f"{kind}_{n}.npz")
    row: Dict[str, object] = {"kind": kind, "n": n, "method": method, "threads": threads, "classes": c,
                              "labeled": int((given >= 0).sum())}
    if method == "queries":
        peak = matmul_peak()
        s, i, dt = exact_queries(x, rows)
        _save_npz(qpath, rows=rows, idx=i.astype(np.int64))
        gflops = 2 * len(rows) * n * DIM / dt / 1e9
        row.update(queries=len(rows), query_s=dt, search_s=dt * n / len(rows), peak_gflops=peak, gflops=gflops,
                   share_of_peak=gflops / peak, purity=purity(i, truth[rows], truth), estimated=len(rows) < n)
    else:
        ref = np.load(qpath)["idx"]
        if method in ("ivf", "ivf16"):
            row.update(_ivf_cell(x, given, truth, c, rows, ref, method, max_search_s,
                                 _cell_labels(cache, kind, n, method)))
        elif method == "cells":
            row.update(_cells_cell(x, given, truth, c, rows, ref, _cell_labels(cache, kind, n, method)))
        elif method == "exact":
            from hdl.knn import knn_graph

            peak = matmul_peak()
            gpath = os.path.join(cache, "graphs", f"{kind}_{n}_exact.npz")
            if os.path.exists(gpath):  # a long search whose labeling failed or was cut: reuse it
                g = np.load(gpath)
                sims, idx, dt = torch.from_numpy(g["sims"]), torch.from_numpy(g["idx"]).long(), float(g["seconds"])
                print(f"  reused the exact graph of {gpath} (searched in {dt:.1f} s)", flush=True)
            else:
                t0 = time.perf_counter()
                sims, idx = knn_graph(torch.from_numpy(x), K, backend="faiss")
                dt = time.perf_counter() - t0
                print(f"  exact graph: {dt:.1f} s", flush=True)
                if n > FULL_BRUTE_MAX:
                    _save_npz(gpath, sims=sims.numpy(), idx=idx.numpy().astype(np.int32), seconds=np.float64(dt))
            lab, lab_s, res = label(sims, idx, given, c, x)
            np.save(_cell_labels(cache, kind, n, method), lab)
            gflops = 2 * n * n * DIM / dt / 1e9
            row.update(build_s=0.0, search_s=dt, label_s=lab_s, chosen_k=res.chosen_k, rounds=res.rounds,
                       recall=recall_at(idx.numpy()[rows], ref), accuracy=_acc(lab, truth, given),
                       peak_gflops=peak, gflops=gflops, share_of_peak=gflops / peak)
        elif method in ("torch", "sklearn"):
            q = np.arange(n) if n <= FULL_BRUTE_MAX else rows
            t0 = time.perf_counter()
            if method == "torch":
                from hdl.knn import knn_search

                _, i = knn_search(torch.from_numpy(x[q]), torch.from_numpy(x), K + 1, backend="torch")
                i = i.numpy()
            else:
                from sklearn.neighbors import NearestNeighbors

                nn = NearestNeighbors(n_neighbors=K + 1, algorithm="brute", metric="cosine", n_jobs=threads).fit(x)
                i = nn.kneighbors(x[q], return_distance=False)
            dt = time.perf_counter() - t0
            i = _drop_self_np(i, q)
            sel = np.searchsorted(q, rows)
            row.update(build_s=0.0, search_s=dt * n / len(q), query_s=dt, queries=len(q), estimated=len(q) < n,
                       recall=recall_at(i[sel], ref))
        else:
            raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    row["peak_gib"] = peak_gib()
    row["load_avg_1min"] = os.getloadavg()[0]  # the machine is shared: other jobs slow every figure
    return row


def _acc(lab, truth, given) -> float:
    unl = given < 0
    return float((lab[unl] == truth[unl]).mean())


def _drop_self_np(i: np.ndarray, q: np.ndarray) -> np.ndarray:
    own = i == q[:, None]
    drop = np.where(own.any(axis=1), own.argmax(axis=1), i.shape[1] - 1)
    keep = np.ones_like(i, dtype=bool)
    keep[np.arange(len(q)), drop] = False
    return i[keep].reshape(len(q), -1)


def _cell_labels(cache: str, kind: str, n: int, method: str) -> str:
    os.makedirs(os.path.join(cache, "labels"), exist_ok=True)
    return os.path.join(cache, "labels", f"{kind}_{n}_{method}.npy")


def cell_path(cache: str, kind: str, n: int, method: str) -> str:
    return os.path.join(cache, "cells", f"{kind}_{n}_{method}.json")


def cell_order(kinds: List[str], sizes: List[int], methods: List[str]) -> List[tuple]:
    """Every cell, the full exact graph above ``FULL_BRUTE_MAX`` rows last (the long ones)."""
    cells = [(k, n, m) for n in sorted(sizes) for k in kinds for m in methods]
    return sorted(cells, key=lambda c: (c[2] == "exact" and c[1] > FULL_BRUTE_MAX, c[1]))


# ----------------------------------------------------------------------------------------- table
def load_rows(cache: str) -> List[dict]:
    folder = os.path.join(cache, "cells")
    rows = []
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        if name.endswith(".json"):
            with open(os.path.join(folder, name)) as fh:
                rows.append(json.load(fh))
    return rows


def finish_rows(cache: str, rows: List[dict]) -> List[dict]:
    """Add the label agreement with the exact graph's labels, the exact search time and its share
    of the matmul peak (from the same size's ``queries`` cell where no full exact run exists)."""
    by = {(r["kind"], r["n"], r["method"]): r for r in rows}
    out = []
    for r in rows:
        r = dict(r)
        q = by.get((r["kind"], r["n"], "queries"), {})
        ex = by.get((r["kind"], r["n"], "exact"))
        r["purity"] = q.get("purity")
        r["exact_search_s"] = ex["search_s"] if ex else q.get("search_s")
        r["exact_estimated"] = ex is None
        if r["method"] in ("ivf", "ivf16", "cells", "exact") and r.get("label_s") is not None:
            r["total_s"] = r["build_s"] + r["search_s"] + r["label_s"]
            ref = _cell_labels(cache, r["kind"], r["n"], "exact")
            if ex is not None and os.path.exists(ref):
                given = np.load(data_path(cache, r["kind"], r["n"]))["labels"]
                r["agreement"] = agreement(np.load(_cell_labels(cache, r["kind"], r["n"], r["method"])),
                                           np.load(ref), given)
            if r["exact_search_s"]:
                r["total_over_exact"] = r["total_s"] / r["exact_search_s"]
        out.append(r)
    return out


def _f(v, fmt: str, none: str = "–") -> str:
    return none if v is None else format(v, fmt)


def table(rows: List[dict]) -> str:
    order = {m: i for i, m in enumerate(("ivf", "ivf16", "cells", "exact", "queries", "torch", "sklearn"))}
    rows = sorted(rows, key=lambda r: (r["kind"], r["n"], order.get(r["method"], 9)))
    names = {"ivf": "HDL refresh, IVF graph (defaults)", "ivf16": "HDL refresh, IVF graph, nprobe 16",
             "cells": "HDL refresh, cells graph (defaults)", "exact": "HDL refresh, exact graph (faiss)",
             "queries": "exact search (faiss), 10k queries", "torch": "exact search, torch", "sklearn":
             "exact search, sklearn brute"}
    lines = ["| data | N | method | build s | search s | labeling s | total s | peak GiB | recall@50 | "
             "agreement % | total / exact search | exact GFLOP/s (% of matmul peak) |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        est = " (est.)" if r.get("estimated") else ""
        search = r.get("search_s")
        share = (f"{r['gflops']:.0f} ({100 * r['share_of_peak']:.0f}% of {r['peak_gflops']:.0f})"
                 if r.get("gflops") else "–")
        pur = f" (purity {100 * r['purity']:.0f}%)" if r.get("purity") is not None and r["method"] == "queries" else ""
        lines.append(
            f"| {r['kind']}{pur} | {r['n']:,} | {names.get(r['method'], r['method'])} | {_f(r.get('build_s'), '.1f')} | "
            f"{_f(search, '.1f')}{est} | {_f(r.get('label_s'), '.1f')} | {_f(r.get('total_s'), '.1f')} | "
            f"{r['peak_gib']:.2f} | {_f(r.get('recall'), '.3f')} | "
            f"{_f(None if r.get('agreement') is None else 100 * r['agreement'], '.2f')} | "
            f"{_f(r.get('total_over_exact'), '.3f')}{' (exact est.)' if r.get('total_over_exact') and r['exact_estimated'] else ''} | "
            f"{share} |")
    return "\n".join(lines) + "\n"


CSV_FIELDS = ["kind", "n", "method", "threads", "classes", "labeled", "params", "build_s", "search_s", "label_s",
              "total_s", "peak_gib", "recall", "agreement", "accuracy", "purity", "chosen_k", "rounds",
              "exact_search_s", "exact_estimated", "total_over_exact", "queries", "query_s", "estimated",
              "gflops", "peak_gflops", "share_of_peak", "skipped", "load_avg_1min"]


def write_outputs(cache: str, out: str) -> List[dict]:
    rows = finish_rows(cache, load_rows(cache))
    os.makedirs(out, exist_ok=True)
    _atomic_save(os.path.join(out, "table.md"), lambda tmp: open(tmp, "w").write(table(rows)))

    def save_csv(tmp):
        with open(tmp, "w", newline="") as fh:
            w = csv.DictWriter(fh, CSV_FIELDS, extrasaction="ignore")
            w.writeheader()
            for r in rows:
                w.writerow({k: json.dumps(v) if isinstance(v, dict) else v for k, v in r.items()})
    _atomic_save(os.path.join(out, "results.csv"), save_csv)
    return rows


# ------------------------------------------------------------------------------------------ main
def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--kinds", nargs="+", default=["mixture", "fmnist"], choices=["mixture", "fmnist"])
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--cache", default="bench/scale", help="resumable cells, data and labels (not committed)")
    p.add_argument("--out", default="results/scale")
    p.add_argument("--fmnist", default=FMNIST_DEFAULT, help="features file of the fmnist kind")
    p.add_argument("--max-search-s", type=float, default=1200.0,
                   help="IVF cells stop after the sampled queries when the extrapolated search is longer")
    p.add_argument("--cell", nargs=3, metavar=("KIND", "N", "METHOD"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    if args.cell:  # one cell, in its own process
        kind, n, method = args.cell[0], int(args.cell[1]), args.cell[2]
        row = run_cell(args.cache, kind, n, method, args.threads, args.max_search_s)
        _save_json(cell_path(args.cache, kind, n, method), row)
        return

    if "fmnist" in args.kinds and not os.path.exists(args.fmnist):
        sys.exit(f"error: {args.fmnist} is missing; make it with `bash scripts/labeling_suite_prepare.sh` "
                 "or pass --fmnist PATH")
    env = {**os.environ, **{v: str(args.threads) for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                           "OPENBLAS_NUM_THREADS")}}
    print(f"bench_scale: sizes {args.sizes}, kinds {args.kinds}, {args.threads} threads, cache {args.cache}",
          flush=True)
    for kind, n, method in cell_order(args.kinds, args.sizes, args.methods):
        path = cell_path(args.cache, kind, n, method)
        if os.path.exists(path):
            continue
        ensure_data(args.cache, kind, n, args.fmnist)
        if method != "queries" and not os.path.exists(cell_path(args.cache, kind, n, "queries")):
            print(f"  {kind} {n} {method}: needs the queries cell; skipped", flush=True)
            continue
        print(f"  {kind} {n} {method} ...", flush=True)
        t0 = time.perf_counter()
        cmd = [sys.executable, os.path.abspath(__file__), "--cache", args.cache, "--threads", str(args.threads),
               "--max-search-s", str(args.max_search_s), "--cell", kind, str(n), method]
        timeout = CELL_TIMEOUT if method in ("torch", "sklearn") else None
        try:
            proc = subprocess.run(cmd, env=env, timeout=timeout)
            ok = proc.returncode == 0
            why = f"exit {proc.returncode}"
        except subprocess.TimeoutExpired:
            ok, why = False, f"did not finish in {CELL_TIMEOUT} s"
        if not ok:
            print(f"  {kind} {n} {method}: {why}", flush=True)
            continue
        with open(path) as fh:
            r = json.load(fh)
        print(f"  {kind} {n} {method}: {time.perf_counter() - t0:.1f} s wall; search {r.get('search_s', 0):.1f} s"
              f"{' (est.)' if r.get('estimated') else ''}, labeling {r.get('label_s', 0) or 0:.1f} s, "
              f"recall {r.get('recall')}, peak {r['peak_gib']:.2f} GiB", flush=True)
        write_outputs(args.cache, args.out)
    rows = write_outputs(args.cache, args.out)
    print(table(rows))


if __name__ == "__main__":
    main()
