"""The parts of the GPU check (``scripts/gpu_check.sh`` runs them in order, each under a time limit).

Every result is one line starting with ``PASS:``, ``FAIL:``, ``SKIPPED:`` or ``INFO:``; the exit
status is 1 when a part printed a FAIL.  Verbose training output goes to ``--out``.

    python scripts/gpu_check.py env
    python scripts/gpu_check.py train   [--device cuda] [--quick] [--algorithms hdl_fixmatch ...] [--out DIR]
    python scripts/gpu_check.py refresh [--device cuda] --sizes 100000 1000000 --indexes exact ivf
    python scripts/gpu_check.py parity  [--device cuda]

``train``: each ``hdl_*`` algorithm on digits (``configs/digits``), 300 iterations (``--quick``:
6, a tiny network), a refresh every 100 after a warm-up of 100, kNN backend torch on the
training device, HDL's own per-step code checked: on CUDA under
``torch.cuda.set_sync_debug_mode("error")``, on the CPU with every host read of a tensor refused
(:mod:`hdl.algorithms.usb.host_sync`).  ``refresh``: :func:`hdl.refresh.refresh` seconds on
synthetic clustered rows (dim 128, 100 classes, 1% given labels) on the device.  ``parity``:
faiss's GPU index against the torch backend on the same CUDA tensor, only when
``faiss.get_num_gpus() > 0``.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
import tempfile
import time
import traceback

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
ALGORITHMS = ("hdl_fixmatch", "hdl_freematch", "hdl_mixmatch", "hdl_remixmatch")
# bank mode writes the bank in every step (the per-step path with the most device work); it blends the
# training model's head (the bank keeps no EMA embedding)
EMBED = {"hdl_fixmatch": "bank", "hdl_freematch": "ema_pass", "hdl_mixmatch": "bank", "hdl_remixmatch": "ema_pass"}
BLEND_MODEL = {"bank": "train", "ema_pass": "ema"}
REQUIRED = ("numpy", "scipy", "sklearn", "yaml", "ruamel.yaml", "tqdm", "PIL", "torchvision", "timm", "progress",
            "semilearn", "faiss", "hdl")


# imported by ``import semilearn`` for hooks hdl-train never registers (use_wandb / use_aim are off)
UNUSED_IMPORTS = ("wandb", "aim")


def stand_in_for_unused_imports(names=UNUSED_IMPORTS) -> list:
    """Empty modules for ``names`` that are not installed (the GPU machine has neither wandb nor
    aim, and their wheels are large); any use of one raises.  Returns the names stood in for."""
    import importlib.util
    import types

    made = []
    for name in names:
        if name in sys.modules or importlib.util.find_spec(name) is not None:
            continue
        mod = types.ModuleType(name)

        def missing(attr, name=name):
            raise AttributeError(f"{name} is not installed here (an empty stand-in from scripts/gpu_check.py); "
                                 f"{name}.{attr} is not available")
        mod.__getattr__ = missing
        sys.modules[name] = mod
        made.append(name)
    return made


def first_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"


def sync(device) -> None:
    import torch

    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


# ---------------------------------------------------------------------- env
def cmd_env(args) -> int:
    import importlib

    print(f"INFO: python {sys.version.split()[0]} ({sys.executable})")
    missing = []
    for name in REQUIRED:
        try:
            mod = importlib.import_module(name)
            print(f"INFO: {name} {getattr(mod, '__version__', '')}".rstrip())
        except Exception as e:  # noqa: BLE001
            missing.append(f"{name} ({first_line(e)})")
    import torch

    print(f"INFO: torch {torch.__version__}, built for CUDA {torch.version.cuda}, "
          f"cuda available: {torch.cuda.is_available()}")
    if torch.cuda.is_available():
        p = torch.cuda.get_device_properties(0)
        print(f"INFO: device 0: {p.name}, {p.total_memory / 2**30:.0f} GiB, capability {p.major}.{p.minor}")
    try:
        from hdl.knn import faiss_num_gpus

        import faiss

        print(f"INFO: faiss {faiss.__version__}, get_num_gpus() = {faiss_num_gpus()}")
    except Exception as e:  # noqa: BLE001
        print(f"INFO: faiss not usable: {first_line(e)}")
    if missing:
        print("FAIL: env: missing " + "; ".join(missing) + " (add their wheels: scripts/gpu_wheels.sh DIR REQ ...)")
        return 1
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("FAIL: env: --device cuda but torch sees no CUDA device")
        return 1
    print(f"PASS: env: every module imports; training device {args.device}")
    return 0


# ---------------------------------------------------------------------- train
def train_args(name: str, device: str, quick: bool, out: str):
    from semilearn.algorithms import name2alg

    import hdl.algorithms  # noqa: F401  (registers the hdl_* algorithms)
    from hdl.algorithms.run.config import load_yaml, resolve_config

    cfg = load_yaml(os.path.join(ROOT, "configs", "digits", f"{name}.yaml"))
    iters, warmup, every = (6, 3, 3) if quick else (300, 100, 100)
    cfg.update(device=device, save_dir=out, save_name=name, overwrite=True, use_tensorboard=False,
               num_train_iter=iters, num_eval_iter=iters, num_log_iter=iters, hdl_warmup_iter=warmup,
               hdl_refresh_every=every, hdl_backend="torch", hdl_embed=EMBED[name],
               hdl_blend_model=BLEND_MODEL[EMBED[name]], seed=0)
    if quick:
        cfg.update(net="cnn_tiny", batch_size=8, uratio=1, eval_batch_size=512, num_val=5)
    return resolve_config(cfg, list(name2alg.keys()))


def train_one(name: str, device: str, quick: bool, out: str) -> int:
    import torch

    from hdl.algorithms.run import runner
    from hdl.algorithms.usb.host_sync import checking, forbid_host_reads, no_host_sync

    blocks = [0]
    check = forbid_host_reads if torch.device(device).type == "cpu" else (lambda: no_host_sync(device))
    what = "host reads refused" if torch.device(device).type == "cpu" else "set_sync_debug_mode('error')"

    def counted():
        blocks[0] += 1
        return check()

    log_path = os.path.join(out, f"{name}.log")
    t0 = time.perf_counter()
    try:
        with open(log_path, "w") as log, contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            args = train_args(name, device, quick, out)
            alg = runner.build_algorithm(args, tb=False)
            with checking(counted):
                alg.train()
    except Exception as e:  # noqa: BLE001
        with open(log_path, "a") as log:
            traceback.print_exc(file=log)
        print(f"FAIL: train {name} on {device}: {first_line(e)} (log: {log_path})")
        return 1
    seconds = time.perf_counter() - t0
    pool = alg.pool
    truth = alg._train_y.to(pool.labels.device)
    pooled = (pool.labels >= 0) & (truth >= 0)
    pool_acc = float((pool.labels[pooled] == truth[pooled]).float().mean()) if bool(pooled.any()) else float("nan")
    refresh_sec = [round(r["hdl/refresh_sec"], 3) for r in alg.refresh_log]
    test_acc = alg.results_dict.get("final_test/top-1-acc", float("nan"))
    where = {str(t.device) for t in (alg.bank.features(), pool.labels)}
    line = (f"{name} on {device} ({alg.it} it, hdl_embed {EMBED[name]}, {seconds:.1f} s): refreshes "
            f"{len(refresh_sec)} at {refresh_sec} s, pool_acc={pool_acc:.4f} on {int(pooled.sum())} samples, "
            f"test_acc={test_acc:.4f}, bank/pool on {sorted(where)}, {blocks[0]} per-step blocks checked ({what})")
    problems = []
    if not refresh_sec:
        problems.append("no refresh ran")
    if blocks[0] == 0:
        problems.append("no per-step block ran under the check")
    if torch.device(device).type == "cuda" and any(not w.startswith("cuda") for w in where):
        problems.append("bank or pool not on the GPU")
    print(("FAIL: train " + line + ": " + "; ".join(problems)) if problems else ("PASS: train " + line))
    return 1 if problems else 0


def cmd_train(args) -> int:
    out = args.out or tempfile.mkdtemp(prefix="gpu_check_")
    os.makedirs(out, exist_ok=True)
    rc = 0
    for name in args.algorithms:
        rc |= train_one(name, args.device, args.quick, out)
    return rc


# ---------------------------------------------------------------------- refresh
def clustered(n: int, dim: int, classes: int, device, seed: int = 0):
    """Rows near ``classes`` random unit centres (made on ``device``), with 1% given labels."""
    import torch

    g = torch.Generator(device=device).manual_seed(seed)
    centres = torch.nn.functional.normalize(torch.randn(classes, dim, generator=g, device=device), dim=1)
    truth = torch.randint(0, classes, (n,), generator=g, device=device)
    x = centres[truth] + (0.6 / math.sqrt(dim)) * torch.randn(n, dim, generator=g, device=device)
    labels = torch.full((n,), -1, dtype=torch.long, device=device)
    given = torch.randperm(n, generator=g, device=device)[: max(classes, n // 100)]
    labels[given] = truth[given]
    return x, labels, truth


def cmd_refresh(args) -> int:
    import torch

    from hdl.knn import _import_faiss
    from hdl.refresh import refresh

    device = torch.device(args.device)
    rc = 0
    x, labels, _ = clustered(2000, args.dim, 10, device)
    refresh(x, labels, 10, backend="torch", index="exact")  # warm-up: kernels, cuBLAS
    for n in args.sizes:
        for index in args.indexes:
            if index != "exact" and _import_faiss() is None:
                print(f"SKIPPED: refresh {n} x {args.dim} index {index}: faiss is not installed")
                continue
            print(f"INFO: refresh {n} x {args.dim} index {index} on {device}: starting", flush=True)
            try:
                x, labels, truth = clustered(n, args.dim, args.classes, device)
                if device.type == "cuda":
                    torch.cuda.reset_peak_memory_stats(device)
                sync(device)
                t0 = time.perf_counter()
                r = refresh(x, labels, args.classes, backend="torch", index=index, k_max=args.k_max)
                sync(device)
                seconds = time.perf_counter() - t0
                new = r.new
                acc = float((r.result.labels[new] == truth[new]).float().mean()) if bool(new.any()) else float("nan")
                peak = (f", peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB"
                        if device.type == "cuda" else "")
                recall = f", recall {r.graph.recall:.3f}" if r.graph.recall is not None else ""
                print(f"PASS: refresh {n} x {args.dim} on {device}, backend torch, index {r.graph.index}: "
                      f"{seconds:.2f} s (graph {r.graph.seconds:.2f} s{recall}), labeled {int(new.sum())} "
                      f"at accuracy {acc:.4f}{peak}")
                del x, labels, truth, r
            except Exception as e:  # noqa: BLE001
                print(f"FAIL: refresh {n} x {args.dim} index {index} on {device}: {first_line(e)}")
                rc = 1
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rc


# ---------------------------------------------------------------------- parity
def cmd_parity(args) -> int:
    import torch

    from hdl.knn import _import_faiss, faiss_gpu_problem, faiss_num_gpus, knn_graph, resolve_backend

    faiss = _import_faiss()
    if faiss is None or faiss_num_gpus() == 0:
        print(f"SKIPPED: faiss has no GPU (faiss {getattr(faiss, '__version__', 'not installed')}, "
              f"get_num_gpus() == 0); auto on a CUDA bank runs the torch backend")
        return 0
    device = torch.device(args.device)
    problem = faiss_gpu_problem(device)
    chosen = resolve_backend("auto", device)
    if problem is not None:
        print(f"FAIL: faiss-gpu reports {faiss_num_gpus()} GPU(s) but does not run on {device}: {problem}; "
              f"'auto' chose {chosen}")
        return 1
    x, _, _ = clustered(args.n, args.dim, 100, device)
    x = torch.nn.functional.normalize(x, dim=1)
    s_f, i_f = knn_graph(x, args.k, backend="faiss-gpu")
    s_t, i_t = knn_graph(x, args.k, backend="torch")
    same_set = (i_f.sort(dim=1).values == i_t.sort(dim=1).values).all(dim=1)
    # rows whose sets differ must be ties: the same similarities, in order, within float error
    close = ((s_f - s_t).abs() <= 1e-4).all(dim=1)
    bad = int((~same_set & ~close).sum())
    line = (f"faiss-gpu vs torch on {device} ({args.n} x {args.dim}, k {args.k}; auto chose {chosen}): "
            f"{int(same_set.sum())} rows with identical neighbour sets, {int((~same_set).sum())} differing "
            f"only by ties, {bad} differing; results on {i_f.device}")
    ok = bad == 0 and i_f.device.type == "cuda"
    print(("PASS: " if ok else "FAIL: ") + line)
    return 0 if ok else 1


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="part", required=True)
    for name in ("env", "train", "refresh", "parity"):
        s = sub.add_parser(name)
        s.add_argument("--device", default="cuda")
    t = sub.choices["train"]
    t.add_argument("--quick", action="store_true", help="6 iterations, tiny network and batches (CPU tests)")
    t.add_argument("--algorithms", nargs="+", default=list(ALGORITHMS), choices=ALGORITHMS)
    t.add_argument("--out", default=None, help="folder of the runs and their logs (default: a temp folder)")
    r = sub.choices["refresh"]
    r.add_argument("--sizes", nargs="+", type=int, default=[100_000, 1_000_000])
    r.add_argument("--indexes", nargs="+", default=["exact"], choices=["exact", "ivf", "hnsw"])
    r.add_argument("--dim", type=int, default=128)
    r.add_argument("--classes", type=int, default=100)
    r.add_argument("--k-max", type=int, default=50)
    q = sub.choices["parity"]
    q.add_argument("--n", type=int, default=20_000)
    q.add_argument("--dim", type=int, default=128)
    q.add_argument("--k", type=int, default=20)
    args = p.parse_args(argv)
    stood_in = stand_in_for_unused_imports()
    if stood_in and args.part == "env":
        print(f"INFO: {', '.join(stood_in)} not installed: empty stand-ins (semilearn imports them for hooks "
              f"hdl-train never uses)")
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    return {"env": cmd_env, "train": cmd_train, "refresh": cmd_refresh, "parity": cmd_parity}[args.part](args)


if __name__ == "__main__":
    sys.exit(main())
