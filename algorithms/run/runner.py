"""Build and run an algorithm from a resolved config: the engine behind ``hdl-train``/``hdl-eval``."""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import tempfile
import time
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
import torch
from tqdm import tqdm

from semilearn.core.hooks import Hook
from semilearn.core.utils import TBLog
from semilearn.core.utils.misc import EMA

from hdl import config_keys
from hdl.data import DATASET_INFO

from .config import dump_config
from .tensorboard_records import event_files, purge_after
from ..usb.checkpoint_io import (CHECKPOINT_FILES, LATEST, PREVIOUS, choose_resume_checkpoint, remove_stale_temps)
from ..usb import distributed
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
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _jsonable(d: Dict[str, Any]) -> Dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (np.floating, np.integer)):
            v = v.item()
        if isinstance(v, (float, int, str, bool)) or v is None:
            out[k] = v
    return out


# keys that decide what a checkpoint means: a resume that changes one is refused
RESUME_FIXED_KEYS = ("algorithm", "imb_algorithm", "dataset", "num_classes", "num_labels", "ulb_num_labels", "ulb_num_per_class", "num_val",
                     "lb_imb_ratio", "ulb_imb_ratio", "include_lb_to_ulb", "seed", "net", "net_from_name", "img_size",
                     "optim", "batch_size", "uratio", "epoch", "use_cat", "semantic_loss", "semantic_tree",
                     "semantic_source")
# keys whose change on resume is not worth a record
_RESUME_SILENT_KEYS = ("resume", "load_path", "overwrite")
# what a run writes into its directory (cleared before a new run starts there)
RUN_FILES = ("log.txt", "hdl_refresh.jsonl", "results.json", "splits.npz", "config.yaml") + CHECKPOINT_FILES
RUN_DIRS = ("tensorboard",)


def resume_changes(run_dir: str, args: argparse.Namespace) -> Dict[str, Tuple[Any, Any]]:
    """Compare the requested config with the run's saved ``config.yaml``: raise ValueError (one
    line naming each key, saved vs requested) when a key of :data:`RESUME_FIXED_KEYS` differs;
    return the other changed keys as ``{key: (saved, requested)}``."""
    import yaml

    path = os.path.join(run_dir, "config.yaml")
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            saved = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"resume: cannot read the run's saved config {path}: {type(e).__name__}") from None
    if not isinstance(saved, dict):
        raise ValueError(f"resume: the run's saved config {path} is not a mapping")
    try:
        saved = config_keys.saved_config_defaults(saved)  # in today's keys, as the run ran
    except ValueError as e:
        raise ValueError(f"resume: the run's saved config {path}: {e}") from None
    requested = yaml.safe_load(dump_config(args))
    changed = {k: (saved.get(k), requested.get(k)) for k in sorted(set(saved) | set(requested))
               if saved.get(k) != requested.get(k) and k not in _RESUME_SILENT_KEYS}
    fixed = [k for k in changed if k in RESUME_FIXED_KEYS]
    if fixed:
        what = "; ".join(f"{k}: saved {changed[k][0]!r}, requested {changed[k][1]!r}" for k in fixed)
        raise ValueError(f"resume: {run_dir} was trained with another config ({what}); these keys decide what the "
                         f"checkpoint means; resume with the saved values or start a new run (another save_name)")
    return changed


def clear_run_dir(run_dir: str) -> List[str]:
    """Remove what an earlier run wrote into ``run_dir`` (:data:`RUN_FILES`, :data:`RUN_DIRS`,
    ``predictions_*.csv``); other files stay.  Returns the removed names."""
    import shutil

    if not os.path.isdir(run_dir):
        return []
    gone = []
    for name in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, name)
        if name in RUN_DIRS and os.path.isdir(path):
            shutil.rmtree(path)
            gone.append(name)
        elif os.path.isfile(path) and (name in RUN_FILES or (name.startswith("predictions_") and name.endswith(".csv"))):
            os.remove(path)
            gone.append(name)
    return gone


def join_processes(args: argparse.Namespace) -> distributed.ProcessGroup:
    """Several processes (torchrun's environment, :mod:`..usb.distributed`): join the process
    group on this process's device and mark ``args`` distributed (USB's keys ``distributed``,
    ``world_size``, ``rank``).  One process: nothing changes."""
    from ..usb.device import resolve_device

    group = distributed.from_env()
    if not group.distributed:
        return group
    if getattr(args, "imb_algorithm", None):
        raise ValueError(f"imb_algorithm: {args.imb_algorithm!r} runs in one process only (its networks are "
                         f"wrapped in ways DistributedDataParallel does not follow); launch without torchrun")
    device = distributed.process_device(group, resolve_device(args.device))
    group = distributed.init(group, device)
    args.distributed, args.world_size, args.rank = True, group.world_size, group.rank
    return group


def _silent_logger() -> logging.Logger:
    """The logger of the processes other than rank 0: USB's messages are rank 0's to write."""
    logger = logging.getLogger("hdl.run.silent")
    logger.propagate = False
    if not logger.handlers:
        logger.addHandler(logging.NullHandler())
    return logger


def train(args: argparse.Namespace, progress: bool = True) -> Dict[str, Any]:
    """Train ``args`` in this process; with torchrun's environment (``WORLD_SIZE`` > 1) as one of
    several processes (:func:`join_processes`), rank 0 writing the run's files.  See :func:`_train`."""
    group = join_processes(args)
    try:
        return _train(args, progress, group)
    finally:
        if group.distributed:
            distributed.shutdown()


def _train(args: argparse.Namespace, progress: bool, group: distributed.ProcessGroup) -> Dict[str, Any]:
    """Train ``args`` (a resolved config), write ``config.yaml``, logs and ``results.json``.

    ``resume: True`` continues ``save_dir/save_name`` from its ``latest_model.pth`` (or
    ``load_path``): the checkpoint is verified first (a damaged latest one falls back to
    ``previous_model.pth`` with a warning; none usable, or none at all, is an error) and the
    requested config is compared with the saved one (:func:`resume_changes`) before anything in the
    run directory is rewritten; per-refresh records after the restored iteration are dropped.
    Without ``resume`` a directory holding a checkpoint is refused unless ``overwrite`` is true;
    a new run first clears what an earlier run wrote there (:func:`clear_run_dir`).  Temp files
    of interrupted writes are removed first in every case.
    """
    run_dir = os.path.join(args.save_dir, args.save_name)
    main = group.is_main
    for name in (remove_stale_temps(run_dir) if main else []):
        log.info("removed %s, left by an interrupted write", os.path.join(run_dir, name))
    notes: List[str] = []
    changes: Dict[str, Tuple[Any, Any]] = {}
    if args.resume:
        args.load_path, notes = choose_resume_checkpoint(run_dir, args.load_path)
        changes = resume_changes(run_dir, args)
    else:
        held = [n for n in (LATEST, PREVIOUS[LATEST], "config.yaml", "results.json")
                if os.path.exists(os.path.join(run_dir, n))]
        if held and not args.overwrite:
            raise ValueError(f"save_name: {run_dir} already holds a run; pass --overwrite True to replace it or "
                             f"--resume True to continue it")
        distributed.barrier()  # every process has checked the directory before rank 0 clears it
        if main:
            clear_run_dir(run_dir)
    logger = make_logger(run_dir) if main else _silent_logger()
    for note in notes:
        log.warning(note)
        logger.warning(note)
    if changes:
        line = "resume: keys changed since the run started: " + "; ".join(
            f"{k} {a!r} -> {b!r}" for k, (a, b) in changes.items())
        log.info(line)
        logger.info(line)
    config_text = dump_config(args)  # as requested (building the algorithm adds derived keys to args)
    earlier_events = event_files(run_dir) if args.resume and main else []  # before this segment's writer
    start = time.time()
    alg = build_algorithm(args, logger, tb=main)
    if getattr(args, "imb_algorithm", None) and getattr(alg, "scheduler", None) is None:
        note = (f"learning rate: constant {args.lr} (imb_algorithm {args.imb_algorithm!r} builds its optimizer "
                f"without a scheduler, as in USB)")
        logger.info(note)
        log.info(note)
    if args.resume:
        try:
            alg.load_model(args.load_path)
        except RuntimeError as e:  # a checkpoint that does not fit the network/optimizer built here
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ValueError(f"resume: checkpoint {args.load_path} does not fit this config: {first}") from None
        dropped = alg.truncate_run_records(alg.it)
        purged = purge_after(earlier_events, alg.it)
        logger.info("resumed from %s at iteration %d%s%s", args.load_path, alg.it,
                    f" ({dropped} refresh record(s) after it dropped)" if dropped else "",
                    f" ({purged} TensorBoard event(s) after it removed)" if purged else "")
    alg.segment_start = start
    if main:
        _atomic_write(os.path.join(run_dir, "config.yaml"), config_text)
    alg.register_hook(ProgressHook(disable=not (progress and main)), "ProgressHook", "LOWEST")
    stopper = InterruptHook(run_dir)
    if not group.distributed:  # several processes: Ctrl-C reaches torchrun, which stops them all
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
        "wall_seconds": round(alg.elapsed_seconds(), 2),
        "resume_changes": {k: [a, b] for k, (a, b) in changes.items()},
        "threads": torch.get_num_threads(),
        "processes": group.world_size,
        "metrics": _jsonable(res),
        "settings": _jsonable(vars(args)),
    }
    if main:
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
        cfg = config_keys.saved_config_defaults(yaml.safe_load(f))
    run_dir = os.path.abspath(run_dir)
    cfg["save_dir"], cfg["save_name"] = os.path.dirname(run_dir), os.path.basename(run_dir)
    cfg["resume"] = True  # reuse the saved splits
    if device is not None:
        cfg["device"] = device
    for k in ("multiprocessing_distributed", "distributed", "use_wandb", "use_aim"):
        cfg.pop(k, None)
    args = resolve_config(cfg, list(name2alg.keys()))
    alg = build_algorithm(args, logger=None, tb=False)
    alg.warn_on_resume = False  # loaded to be read, not continued: no warning about the continuation
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
