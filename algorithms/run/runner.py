"""Build and run an algorithm from a resolved config: the engine behind ``hdl-train``/``hdl-eval``."""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import tempfile
import time
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from semilearn.core.hooks import Hook
from semilearn.core.utils import TBLog
from semilearn.core.utils.misc import EMA

from hdl.data import DATASET_INFO

from .config import dump_config
from ..usb.registry import device_algorithm, get_net_builder

log = logging.getLogger("hdl")


class ProgressHook(Hook):
    """A tqdm bar over training iterations with the loss and the latest validation accuracy."""

    def __init__(self, disable: bool = False):
        self.disable = disable
        self.bar = None

    def before_run(self, algorithm):
        self.bar = tqdm(total=algorithm.num_train_iter, initial=algorithm.it, desc=algorithm.save_name,
                        dynamic_ncols=True, disable=self.disable, leave=True)

    def after_train_step(self, algorithm):
        post = {}
        if "train/total_loss" in algorithm.log_dict:
            post["loss"] = f"{algorithm.log_dict['train/total_loss']:.3f}"
        if "eval/top-1-acc" in algorithm.log_dict:
            post["val"] = f"{algorithm.log_dict['eval/top-1-acc']:.3f}"
        post["best"] = f"{algorithm.best_eval_acc:.3f}"
        self.bar.set_postfix(post, refresh=False)
        self.bar.update(1)

    def after_run(self, algorithm):
        if self.bar is not None:
            self.bar.close()


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run at a step boundary, after ``checkpoint`` was written; ``iteration``
    iterations are done."""

    def __init__(self, iteration: int, checkpoint: str):
        super().__init__(f"interrupted at iteration {iteration}")
        self.iteration, self.checkpoint = iteration, checkpoint


class InterruptHook(Hook):
    """Turns the first Ctrl-C (SIGINT) into a stop at the end of the running step: after the
    step's updates, refresh, evaluation and logging it writes ``latest_model.pth`` and raises
    :class:`RunInterrupted`.  A second Ctrl-C stops at once (KeyboardInterrupt)."""

    def __init__(self, run_dir: str):
        self.run_dir = run_dir
        self.requested = False
        self._previous = None

    def install(self) -> bool:
        """Catch SIGINT (main thread only); True when installed."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return False

        def handler(signum, frame):
            if self.requested:
                raise KeyboardInterrupt
            self.requested = True
            log.warning("Ctrl-C: stopping after this iteration (press it again to stop at once)")
        self._previous = signal.signal(signal.SIGINT, handler)
        return True

    def uninstall(self) -> None:
        import signal

        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def after_train_step(self, algorithm):
        if self.requested:
            algorithm.save_model("latest_model.pth", self.run_dir)  # inside the step: counts it as done
            raise RunInterrupted(algorithm.it + 1, os.path.join(self.run_dir, "latest_model.pth"))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def algorithm_class(args: argparse.Namespace):
    """The class to build for ``args.algorithm``: a registered HDL algorithm or a device-aware base,
    combined with USB's ``args.imb_algorithm`` when that is set (see :mod:`.imbalance`)."""
    from semilearn.algorithms import name2alg

    from ..usb.device import DeviceMixin
    from ..usb.imbalance import imbalance_algorithm

    cls = name2alg[args.algorithm] if args.algorithm in name2alg else None
    if cls is None or not issubclass(cls, DeviceMixin):
        cls = device_algorithm(args.algorithm)
    imb = getattr(args, "imb_algorithm", None)
    return imbalance_algorithm(imb, cls) if imb else cls


def make_logger(run_dir: str) -> logging.Logger:
    os.makedirs(run_dir, exist_ok=True)
    logger = logging.getLogger("hdl.run")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for h in list(logger.handlers):
        logger.removeHandler(h)
        h.close()
    fmt = logging.Formatter("[%(asctime)s %(levelname)s] %(message)s")
    fh = logging.FileHandler(os.path.join(run_dir, "log.txt"))
    fh.setFormatter(fmt)
    logger.addHandler(fh)
    return logger


def build_algorithm(args: argparse.Namespace, logger: Optional[logging.Logger] = None, tb: bool = True):
    """Seed, build the network builder for the dataset's channels and construct the algorithm."""
    seed_everything(args.seed)
    info = DATASET_INFO.get(args.dataset)
    # None (user formats): the device layer binds the channel count after loading the data once
    in_chans = info.image_shape[2] if info is not None and info.image_shape is not None else None
    net_builder = get_net_builder(args.net, args.net_from_name, in_chans)
    run_dir = os.path.join(args.save_dir, args.save_name)
    tb_log = TBLog(run_dir, "tensorboard", use_tensorboard=True) if tb else None
    cls = algorithm_class(args)
    return cls(args=args, net_builder=net_builder, tb_log=tb_log, logger=logger)


def _atomic_write(path: str, text: str) -> None:
    d = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp.", dir=d)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _jsonable(d: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        if isinstance(v, (float, int, str, bool)) or v is None:
            out[k] = v
    return out


def train(args: argparse.Namespace, progress: bool = True) -> Dict[str, Any]:
    """Train ``args`` (a resolved config), write ``config.yaml``, logs and ``results.json``.

    A run directory with a checkpoint is resumed when ``resume`` is true (``load_path``
    defaults to its ``latest_model.pth``); without ``resume`` and with ``overwrite`` false it is
    refused, so no run is clobbered by accident.
    """
    run_dir = os.path.join(args.save_dir, args.save_name)
    latest = os.path.join(run_dir, "latest_model.pth")
    if args.resume and not args.load_path:
        args.load_path = latest
    if not args.resume and not args.overwrite and any(
            os.path.exists(os.path.join(run_dir, f)) for f in ("latest_model.pth", "config.yaml", "results.json")):
        raise ValueError(f"save_name: {run_dir} already holds a run; pass --overwrite True to replace it or "
                         f"--resume True to continue it")
    logger = make_logger(run_dir)
    _atomic_write(os.path.join(run_dir, "config.yaml"), dump_config(args))
    start = time.time()
    alg = build_algorithm(args, logger)
    if getattr(args, "imb_algorithm", None) and getattr(alg, "scheduler", None) is None:
        note = (f"learning rate: constant {args.lr} (imb_algorithm {args.imb_algorithm!r} builds its optimizer "
                f"without a scheduler, as in USB)")
        logger.info(note)
        log.info(note)
    if args.resume:
        if os.path.exists(args.load_path):
            alg.load_model(args.load_path)
            logger.info("resumed from %s at iteration %d", args.load_path, alg.it)
        else:
            logger.warning("resume: no checkpoint at %s, starting from scratch", args.load_path)
    alg.register_hook(ProgressHook(disable=not progress), "ProgressHook", "LOWEST")
    stopper = InterruptHook(run_dir)
    alg.register_hook(stopper, "InterruptHook", "LOW")  # after the step's other hooks, before its exit
    stopper.install()
    try:
        alg.train()
    except RunInterrupted as stop:
        logger.info("interrupted at iteration %d; checkpoint %s", stop.iteration, stop.checkpoint)
        raise
    finally:
        stopper.uninstall()
    res = dict(alg.results_dict)
    per_class = getattr(alg, "per_class_test_acc", {})
    results = {
        "algorithm": args.algorithm,
        "dataset": args.dataset,
        "num_labels": args.num_labels,
        "seed": args.seed,
        "device": str(alg.device),
        "iterations": alg.it,
        "num_val": args.num_val,
        "selection_on_test_set": args.num_val == 0,
        "best_val_acc": res.get("eval/best_acc"),
        "best_it": res.get("eval/best_it"),
        "test_acc_at_best_val": res.get("best_test/top-1-acc"),
        "test_balanced_acc_at_best_val": res.get("best_test/balanced_acc"),
        "test_acc_final": res.get("final_test/top-1-acc"),
        "test_balanced_acc_final": res.get("final_test/balanced_acc"),
        "test_per_class_acc_at_best_val": per_class.get("best"),
        "test_worst_class_acc_at_best_val": min(per_class["best"]) if per_class.get("best") else None,
        "test_per_class_acc_final": per_class.get("final"),
        "test_worst_class_acc_final": min(per_class["final"]) if per_class.get("final") else None,
        "wall_seconds": round(time.time() - start, 2),
        "metrics": _jsonable(res),
        "settings": _jsonable(vars(args)),
    }
    _atomic_write(os.path.join(run_dir, "results.json"), json.dumps(results, indent=2, default=float))
    if alg.tb_log is not None and getattr(alg.tb_log, "writer", None) is not None:
        alg.tb_log.writer.close()
    return results


CHECKPOINTS = {"best": "model_best.pth", "latest": "latest_model.pth"}


def load_run(run_dir: str, checkpoint: str = "best", device: Optional[str] = None):
    """Rebuild the algorithm of a run written by ``hdl-train`` and load ``checkpoint`` into it.

    The run's ``config.yaml`` and ``splits.npz`` are reused; ``device`` overrides the run's.
    """
    import yaml
    from semilearn.algorithms import name2alg

    from .config import resolve_config

    if checkpoint not in CHECKPOINTS:
        raise ValueError(f"checkpoint: expected one of {sorted(CHECKPOINTS)}, got {checkpoint!r}")
    cfg_path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(cfg_path):
        raise FileNotFoundError(f"run: {run_dir} has no config.yaml (is it a run directory made by hdl-train?)")
    ckpt = os.path.join(run_dir, CHECKPOINTS[checkpoint])
    if not os.path.isfile(ckpt):
        raise FileNotFoundError(f"checkpoint: {ckpt} does not exist")
    with open(cfg_path) as f:
        cfg = yaml.safe_load(f)
    run_dir = os.path.abspath(run_dir)
    cfg["save_dir"], cfg["save_name"] = os.path.dirname(run_dir), os.path.basename(run_dir)
    cfg["resume"] = True  # reuse the saved splits
    if device is not None:
        cfg["device"] = device
    for k in ("multiprocessing_distributed", "distributed", "use_wandb", "use_aim"):
        cfg.pop(k, None)
    args = resolve_config(cfg, list(name2alg.keys()))
    alg = build_algorithm(args, logger=None, tb=False)
    alg.load_model(ckpt)
    return alg


def evaluate_run(run_dir: str, split: str = "test", checkpoint: str = "best", out: Optional[str] = None) -> Tuple[Dict[str, float], str]:
    """Evaluate a saved run on ``split`` (``test`` or ``eval``) and write per-sample predictions.

    Returns the metrics and the predictions CSV path (columns: index, label, prediction,
    confidence, then one probability column per class).
    """
    if split not in ("test", "eval"):
        raise ValueError(f"--split: expected 'test' or 'eval', got {split!r}")
    alg = load_run(run_dir, checkpoint)
    alg.ema = EMA(alg.model, alg.ema_m)
    alg.ema.load(alg.ema_model)
    logits, y_true, loss_sum = alg.predict(split)
    metrics = alg.eval_metrics(split, logits, y_true, loss_sum)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    pred = probs.argmax(1)
    out = out or os.path.join(run_dir, f"predictions_{split}_{checkpoint}.csv")
    header = "index,label,prediction,confidence," + ",".join(f"p{c}" for c in range(probs.shape[1]))
    rows = [header]
    for i in range(len(pred)):
        rows.append(f"{i},{int(y_true[i])},{int(pred[i])},{probs[i, pred[i]]:.6f}," + ",".join(f"{p:.6f}" for p in probs[i]))
    _atomic_write(out, "\n".join(rows) + "\n")
    return {k: float(v) for k, v in metrics.items()}, out
