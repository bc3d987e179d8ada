"""Training seconds per iteration of each ``hdl_*`` wrapper against its base algorithm.

For every base of ``configs/digits`` the base and its HDL wrapper at each refresh interval train
``--iters`` iterations on the offline default config, interleaved in one process (``base, hdl@i1,
hdl@i2, ..., base``) so that every ratio comes from the same run.  The first refresh is at
``hdl_warmup_iter = interval``; no evaluation or checkpoint falls inside the measured window
(iterations ``--skip`` .. ``iters - 1``; the gap between two ``before_train_step`` calls is one
iteration: data, step, update, EMA, HDL's bank update and refresh).

Columns: base s/it (mean of the two base runs), hdl s/it, overhead % (whole window), refresh s
(mean time of one refresh), step % (overhead of the iterations without a refresh), and
``est@default``: step % + refresh s / (default interval * base s/it), the overhead at the
default ``hdl_refresh_every``.  With ``--amortise I ...`` a second table gives, per base, the
amortised overhead step % + refresh s / (I * base s/it) at each interval I (from the shortest
measured interval's run: its refresh seconds and its step %), with the first refresh at
``--skip`` so that the measured steps carry HDL's targets (``--early-refresh``).

    nice -n 19 .venv/bin/python scripts/bench_wrappers.py [--iters 150] [--intervals 25 50 100]
    .venv/bin/python scripts/bench_wrappers.py --configs configs/fashion_mnist --iters 120 --intervals 50 \
        --early-refresh --amortise 200 500
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
import warnings

import numpy as np
import torch

CONFIGS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "digits")
BASES = ("fixmatch", "freematch", "mixmatch", "remixmatch")


def _quiet_logger() -> logging.Logger:
    logger = logging.getLogger("hdl.bench_wrappers")
    logger.propagate = False
    logger.addHandler(logging.NullHandler())
    return logger


def default_refresh_every() -> int:
    from hdl.algorithms.usb.hdl_wrapper import hdl_arguments

    return next(a.default for a in hdl_arguments() if a.name == "--hdl_refresh_every")


def time_run(base: str, algorithm: str, iters: int, skip: int, save_dir: str, device: str, configs: str = CONFIGS,
             **over):
    """Per-iteration seconds (array over the measured window) and the algorithm."""
    from semilearn.algorithms import name2alg
    from semilearn.core.hooks import Hook

    from hdl.algorithms.run import runner
    from hdl.algorithms.run.config import load_yaml, resolve_config

    class Stamps(Hook):
        def __init__(self):
            self.t = []

        def before_train_step(self, algorithm):
            self.t.append(time.perf_counter())

    cfg = load_yaml(os.path.join(configs, f"{base}.yaml"))
    cfg.update(dict(algorithm=algorithm, num_train_iter=iters, num_eval_iter=iters + 1, num_log_iter=iters + 1,
                    save_dir=save_dir, save_name=f"{algorithm}_{len(os.listdir(save_dir))}", overwrite=True,
                    use_tensorboard=False))
    if device:
        cfg["device"] = device
    cfg.update(over)
    args = resolve_config(cfg, list(name2alg.keys()))
    alg = runner.build_algorithm(args, logger=_quiet_logger(), tb=False)
    stamps = Stamps()
    alg.register_hook(stamps, "BenchStamps", "HIGHEST")
    alg.train()
    t = np.diff(np.asarray(stamps.t))  # t[i]: iteration i (0-based), for i < iters - 1
    return t[skip:], alg


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iters", type=int, default=150)
    p.add_argument("--intervals", type=int, nargs="+", default=[25, 50, 100])
    p.add_argument("--skip", type=int, default=10, help="warm-up iterations left out of the timing")
    p.add_argument("--bases", nargs="+", default=list(BASES), choices=BASES)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="", help="override the configs' device (default: theirs)")
    p.add_argument("--configs", default=CONFIGS, help="folder of the base configs <base>.yaml (default configs/digits)")
    p.add_argument("--early-refresh", action="store_true",
                   help="first refresh at --skip (so the measured steps carry HDL's targets), then every interval")
    p.add_argument("--amortise", type=int, nargs="*", default=[],
                   help="also print the amortised overhead at these refresh intervals")
    a = p.parse_args(argv)
    if a.skip < 0 or a.iters < a.skip + 3:
        p.error(f"--iters must exceed --skip + 2, got {a.iters}, {a.skip}")
    warnings.filterwarnings("ignore")
    torch.set_num_threads(a.threads)
    import hdl.algorithms  # noqa: F401  (registers hdl_*)

    default = default_refresh_every()
    print(f"# {a.iters} iterations, window {a.skip}..{a.iters - 2}, threads {a.threads}, "
          f"default hdl_refresh_every {default}", flush=True)
    header = (f"{'base':<11}{'interval':>9}{'base s/it':>11}{'hdl s/it':>10}{'overhead %':>12}"
              f"{'refresh s':>11}{'step %':>8}{'est@default %':>15}")
    print(header, flush=True)
    amortised = []
    with tempfile.TemporaryDirectory(prefix="bench_wrappers.") as tmp:
        for base in a.bases:
            hdl_runs = []
            t0, alg = time_run(base, base, a.iters, a.skip, tmp, a.device, a.configs)
            for interval in a.intervals:
                t, alg = time_run(base, f"hdl_{base}", a.iters, a.skip, tmp, a.device, a.configs,
                                  hdl_warmup_iter=a.skip if a.early_refresh else interval,
                                  hdl_refresh_every=interval)
                refresh_its = {r["it"] for r in alg.refresh_log}  # 1-based iterations with a refresh
                refresh_sec = float(np.mean([r["hdl/refresh_sec"] for r in alg.refresh_log])) if alg.refresh_log else 0.0
                hdl_runs.append((interval, t, refresh_its, refresh_sec))
            t1, _ = time_run(base, base, a.iters, a.skip, tmp, a.device, a.configs)
            base_it = float(np.mean(np.concatenate([t0, t1])))
            for interval, t, refresh_its, refresh_sec in hdl_runs:
                its = np.arange(a.skip, a.skip + len(t)) + 1
                plain = ~np.isin(its, list(refresh_its))
                step_pct = 100.0 * (float(np.mean(t[plain])) / base_it - 1.0)
                est = step_pct + 100.0 * refresh_sec / (default * base_it)
                print(f"{base:<11}{interval:>9}{base_it:>11.4f}{float(np.mean(t)):>10.4f}"
                      f"{100.0 * (float(np.mean(t)) / base_it - 1.0):>12.1f}{refresh_sec:>11.3f}"
                      f"{step_pct:>8.1f}{est:>15.1f}", flush=True)
                if a.amortise and interval == min(a.intervals):
                    amortised.append((base, base_it, step_pct, refresh_sec))
    if a.amortise:
        print()
        print(f"{'base':<11}{'base s/it':>11}{'step %':>8}{'refresh s':>11}"
              + "".join(f"{'@' + str(i) + ' %':>10}" for i in a.amortise), flush=True)
        for base, base_it, step_pct, refresh_sec in amortised:
            print(f"{base:<11}{base_it:>11.4f}{step_pct:>8.1f}{refresh_sec:>11.3f}"
                  + "".join(f"{step_pct + 100.0 * refresh_sec / (i * base_it):>10.1f}" for i in a.amortise), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
