"""Device layer: run USB's algorithms on CPU or one CUDA GPU without editing semilearn.

USB hard-codes CUDA device calls in ``process_batch``, ``evaluate`` and some ``load_model`` methods,
times steps with CUDA events, and moves the model with ``send_model_cuda``.  ``DeviceMixin``
overrides exactly those places; it goes first in the bases of a USB algorithm class::

    class CPUFixMatch(DeviceMixin, FixMatch): base_name = "fixmatch"

The mixin is the one place that decides the device (``self.device``), moves batches, runs
evaluation, times steps, places the model (after the whole algorithm is built, and again before
the run, since some imbalance algorithms wrap the model late), saves checkpoints atomically with a
checksum (:mod:`.checkpoint_io`) and restores every hook's tensor state on the right device.

It also owns USB's training loop (:meth:`DeviceMixin.train`, the same loop as
``AlgorithmBase.train``) so that a resume continues the run bit for bit: a checkpoint holds the
random-number states and the position in the data order (:mod:`.resume_state`); the resumed loop
restores the states after its ``before_run`` hooks and skips the batches the interrupted run had
already drawn in that epoch.  Exact with the same thread count and ``num_workers: 0``.
"""
from __future__ import annotations

import logging
import os
import time
from inspect import signature
from typing import Dict, List

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from semilearn.core.hooks import CheckpointHook, EvaluationHook, Hook, LoggingHook, TimerHook

from . import distributed
from .checkpoint_io import LATEST, load_checkpoint, save_checkpoint
from .faults import fault_point
from .resume_state import capture_rng, make_resumable, restore_rng
from .seam import hook_state_owner
from .settings import RunSettings

log = logging.getLogger("hdl")


def resolve_device(spec: str) -> torch.device:
    """Map a ``device`` setting to a torch device.

    ``"auto"``: ``cuda:0`` when CUDA is available, else ``cpu``. ``"cpu"``, ``"cuda"``, ``"cuda:N"``
    are taken as given; a CUDA device that does not exist raises ValueError.
    """
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError as e:
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}") from e
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device: {spec!r} was asked for but CUDA is not available; use 'cpu' or 'auto'")
        index = 0 if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise ValueError(f"device: {spec!r} does not exist; {torch.cuda.device_count()} CUDA device(s) found")
        dev = torch.device("cuda", index)
    elif dev.type != "cpu":
        raise ValueError(f"device: expected 'auto', 'cpu', 'cuda' or 'cuda:N', got {spec!r}")
    return dev


def place_hook_after(algorithm, hook, name: str, after: str) -> None:
    """Put ``hook`` (as ``name``, with the priority of hook ``after``) right after hook ``after`` in
    ``algorithm``'s hook order, which USB otherwise decides by priority alone."""
    at = next(i for i, h in enumerate(algorithm._hooks) if h.name == after)
    hook.name, hook.priority = name, algorithm._hooks[at].priority
    algorithm._hooks.insert(at + 1, hook)
    algorithm.hooks_dict = type(algorithm.hooks_dict)((h.name, h) for h in algorithm._hooks)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class DeviceTimerHook(Hook):
    """Wall-clock step timing that works on every device (replaces USB's CUDA-event TimerHook).

    Logs ``train/prefetch_time`` (waiting for the batch) and ``train/run_time`` (the step, the
    parameter update and the hooks that ran before this one), in seconds, and ``lr``.
    """

    def before_run(self, algorithm):
        self._last = time.perf_counter()
        self._start = self._last

    def before_train_step(self, algorithm):
        now = time.perf_counter()
        self._prefetch = now - self._last
        self._start = now

    def after_train_step(self, algorithm):
        _sync(algorithm.device)
        now = time.perf_counter()
        algorithm.log_dict["lr"] = algorithm.optimizer.param_groups[-1]["lr"]
        algorithm.log_dict["train/prefetch_time"] = self._prefetch
        algorithm.log_dict["train/run_time"] = now - self._start
        self._last = now


class StepStateHook(Hook):
    """Tracks whether the algorithm is inside a train step (between the first
    ``before_train_step`` and the last ``after_train_step`` hook), so checkpoints record the
    number of completed iterations exactly."""

    def __init__(self, entering: bool):
        self.entering = entering

    def before_train_step(self, algorithm):
        if self.entering:
            algorithm._in_train_step = True

    def after_train_step(self, algorithm):
        if not self.entering:
            algorithm._in_train_step = False


class PlacementHook(Hook):
    """Places model, EMA model and optimizer state on the device before the run (after
    everything that wraps the model has run); with several processes, wraps the model for
    DistributedDataParallel there."""

    def before_run(self, algorithm):
        algorithm.place_on_device()
        algorithm.wrap_for_processes()


class BufferSyncHook(Hook):
    """Several processes on the CPU: after the parameter update (before the EMA update) every
    process takes rank 0's model buffers (batch-norm running statistics), so the replicas, their
    EMA models, evaluations and embedding passes are identical in every process.  (DDP keeps the
    parameters equal; on CUDA SyncBatchNorm computes the statistics over all processes.)"""

    def after_train_step(self, algorithm):
        if algorithm.procs.distributed and algorithm.device.type != "cuda":
            for buf in algorithm.model.buffers():
                torch.distributed.broadcast(buf, src=0)


class ProcessCheckpointHook(CheckpointHook):
    """USB's checkpoint schedule (every ``num_eval_iter`` iterations and at the last one; the best
    model when this is the best iteration), written by rank 0 only; with several processes every
    process first hands rank 0 its random states, so a resume with as many processes continues
    each process exactly."""

    def after_train_step(self, algorithm):
        if self.every_n_iters(algorithm, algorithm.num_eval_iter) or self.is_last_iter(algorithm):
            algorithm.gather_rng_states()  # a collective: every process takes part
            if algorithm.procs.is_main:
                save_path = os.path.join(algorithm.save_dir, algorithm.save_name)
                algorithm.save_model("latest_model.pth", save_path)
                if algorithm.it == algorithm.best_it:
                    algorithm.save_model("model_best.pth", save_path)


class ResultsEvaluationHook(EvaluationHook):
    """USB's validation hook, with an honest end of run.

    During training it is USB's hook (evaluate on ``eval``, track the best).  After the run it
    saves the last checkpoint, evaluates ``test`` with the final weights, then loads the
    best-validation checkpoint (EMA weights included: USB keeps the final EMA shadow here) and
    evaluates ``test`` again.  Results go to ``algorithm.results_dict``.
    """

    def after_run(self, algorithm):
        save_path = os.path.join(algorithm.save_dir, algorithm.save_name)
        if algorithm.procs.is_main:
            algorithm.save_model("latest_model.pth", save_path)
        distributed.barrier()  # every process reads the best checkpoint once rank 0 has written it
        # iterations counted as completed (1-based), as everywhere in the run's outputs
        results = {"eval/best_acc": algorithm.best_eval_acc, "eval/best_it": algorithm.best_it + 1}
        per_class = {}
        if "test" in algorithm.loader_dict:
            final = algorithm.evaluate("test")
            results.update({f"final_{k}": v for k, v in final.items()})
            per_class["final"] = per_class_accuracy(algorithm.last_confusion["test"])
            best_path = os.path.join(save_path, "model_best.pth")
            if os.path.exists(best_path):
                last_it, timing = algorithm.it, (algorithm.wall_offset, algorithm.segment_start)
                algorithm.load_model(best_path)
                if algorithm.ema is not None:
                    algorithm.ema.load(algorithm.ema_model)
                best = algorithm.evaluate("test")
                per_class["best"] = per_class_accuracy(algorithm.last_confusion["test"])
                results.update({f"best_{k}": v for k, v in best.items()})
                results["test/best_acc"] = best["test/top-1-acc"]
                algorithm.it = last_it
                algorithm.wall_offset, algorithm.segment_start = timing
        algorithm.results_dict = results
        algorithm.per_class_test_acc = per_class


class _CompletedSteps:
    """``tb_log`` stand-in that writes at the number of completed iterations (``it + 1``)."""

    def __init__(self, tb_log):
        self.tb_log = tb_log

    def update(self, log_dict, it):
        self.tb_log.update(log_dict, it + 1)


class CompletedStepLoggingHook(LoggingHook):
    """USB's logging hook with TensorBoard steps counted as completed iterations (1-based), the
    numbering of ``log.txt``, ``hdl_refresh.jsonl`` and ``results.json``."""

    def after_train_step(self, algorithm):
        tb_log = algorithm.tb_log
        if tb_log is not None:
            algorithm.tb_log = _CompletedSteps(tb_log)
        try:
            super().after_train_step(algorithm)
        finally:
            algorithm.tb_log = tb_log


def per_class_accuracy(confusion: np.ndarray) -> List[float]:
    """Recall of every class from a confusion matrix normalised by the true class (rows)."""
    return [float(v) for v in np.diag(confusion)]


class DeviceMixin:
    """Put first in the bases of a USB algorithm class; set ``base_name`` to USB's name of the
    base algorithm (it decides which views USB's datasets return)."""

    base_name: str = ""
    # the warnings of load_model about a continuation that will not be bit-identical (other thread
    # count, process count, data workers); off where a checkpoint is loaded only to be evaluated
    warn_on_resume: bool = True

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        self.settings = RunSettings.from_args(args, base_name=self.base_name)
        # several processes: the layout torchrun's environment describes (hdl-train joins the group)
        self.procs = distributed.from_env() if getattr(args, "distributed", False) else distributed.ProcessGroup()
        self.device = distributed.process_device(self.procs, resolve_device(self.settings.device))
        self._ddp = None  # the DistributedDataParallel wrapper of self.model (several processes)
        self._rank_rngs = None  # every process's random states at the last checkpoint (several processes)
        self._in_train_step = False
        self.split_info = None
        self._epoch_batches = 0  # batches drawn from the training loaders in the current epoch
        self._resume_point = None  # (epoch, batches, rng states) of a loaded checkpoint, used by train()
        self.wall_offset = 0.0  # seconds of the earlier segments of a resumed run
        self.segment_start = time.time()
        super().__init__(args, net_builder, tb_log=tb_log, logger=logger, **kwargs)
        self.gpu = self.device.index if self.device.type == "cuda" else None
        if self.procs.distributed:
            # USB's hooks write checkpoints and logs where rank % ngpus_per_node == 0: rank 0 only here
            self.ngpus_per_node = self.procs.world_size
        if self.use_amp and self.device.type != "cuda":
            raise ValueError("amp: True needs a CUDA device; this run is on the CPU (set amp: False)")
        self.place_on_device()
        self.print_fn(f"device: {self.device}")

    # ------------------------------------------------------------------ placement
    def place_on_device(self) -> None:
        """Move model, EMA model and any optimizer state to ``self.device`` (idempotent)."""
        self.model.to(self.device)
        if self.ema_model is not None:
            self.ema_model.to(self.device)
        for state in self.optimizer.state.values():
            for k, v in state.items():
                if torch.is_tensor(v) and v.device != self.device and v.dim() > 0:
                    state[k] = v.to(self.device)

    def wrap_for_processes(self) -> None:
        """Several processes: wrap ``self.model`` in DistributedDataParallel as USB does
        (``find_unused_parameters=True``, ``broadcast_buffers=False``; on CUDA SyncBatchNorm; on the
        CPU, where SyncBatchNorm does not run, every process takes rank 0's batch-norm buffers after
        each parameter update: :class:`BufferSyncHook`).  The wrapper runs the train steps' forward passes (:meth:`train`); everything else
        (EMA, evaluation, embedding passes, checkpoints) uses the plain model, so parameter names and
        checkpoints are those of one process.  Idempotent."""
        if not self.procs.distributed or (self._ddp is not None and self._ddp.module is self.model):
            return
        from torch.nn.parallel import DistributedDataParallel

        if self.device.type == "cuda":
            self.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
            self._ddp = DistributedDataParallel(self.model, device_ids=[self.device], broadcast_buffers=False,
                                                find_unused_parameters=True)
        else:
            # buffers: rank 0's after every parameter update (BufferSyncHook)
            self._ddp = DistributedDataParallel(self.model, broadcast_buffers=False, find_unused_parameters=True)

    # ------------------------------------------------------------------ data
    def set_dataset(self):
        from .datasets import build_dataset_dict

        from .nets import bind_channels

        # several processes: rank 0 draws (and saves) the splits, the others then read them
        if not self.procs.is_main:
            distributed.barrier()
        dataset_dict, info = build_dataset_dict(self.settings, self.base_name, self.args.num_classes)
        if self.procs.is_main:
            distributed.barrier()
        self.split_info = info
        self.net_builder = bind_channels(self.net_builder, self.args.net, info.image_shape[2])
        self.args.ulb_dest_len = len(dataset_dict["train_ulb"])
        self.args.lb_dest_len = len(dataset_dict["train_lb"])
        self.print_fn(
            f"dataset {self.settings.dataset}: labeled {self.args.lb_dest_len}, unlabeled "
            f"{self.args.ulb_dest_len}, validation {len(info.splits.val_idx)}, test {len(dataset_dict['test'])}"
        )
        return dataset_dict

    def set_data_loader(self):
        loader_dict = super().set_data_loader()
        for name in ("train_lb", "train_ulb"):
            if (loader_dict or {}).get(name) is not None:
                loader_dict[name] = make_resumable(loader_dict[name])
        return loader_dict

    # ------------------------------------------------------------------ training loop
    def train(self):
        """USB's training loop, resumable bit for bit (see the module docstring)."""
        self.model.train()
        self.call_hook("before_run")
        point, self._resume_point = self._resume_point, None
        if point is not None:
            restore_rng(point["rng"], self.device)
        for epoch in range(self.start_epoch, self.epochs):
            self.epoch = epoch
            if self.it >= self.num_train_iter:
                break
            self.call_hook("before_train_epoch")
            lb, ulb = self.loader_dict["train_lb"], self.loader_dict["train_ulb"]
            skip = point["batches"] if point is not None and epoch == point["epoch"] else 0
            if skip and not all(hasattr(ld.sampler, "skip_next") for ld in (lb, ulb)):
                raise RuntimeError("resume inside an epoch needs resumable training samplers (resume_state.make_resumable)")
            if skip:
                lb.sampler.skip_next, ulb.sampler.skip_next = skip * lb.batch_size, skip * ulb.batch_size
                with torch.random.fork_rng(devices=[]):  # the iterators' seed draws are not part of the run
                    batches = zip(iter(lb), iter(ulb))
            else:
                batches = zip(lb, ulb)
            self._epoch_batches = skip
            for data_lb, data_ulb in batches:
                if self.it >= self.num_train_iter:
                    break
                self._epoch_batches += 1
                self.call_hook("before_train_step")
                plain = self.model
                if self._ddp is not None:  # the step's forward passes go through DistributedDataParallel
                    self.model = self._ddp
                try:
                    self.out_dict, self.log_dict = self.train_step(**self.process_batch(**data_lb, **data_ulb))
                finally:
                    self.model = plain
                fault_point("step")
                self.call_hook("after_train_step")
                self.it += 1
            self.call_hook("after_train_epoch")
        self.call_hook("after_run")
        self._resume_point = None

    def truncate_run_records(self, it: int) -> int:
        """Resume: drop per-iteration records written after iteration ``it`` (the restored one);
        returns how many were dropped.  The device layer keeps none; subclasses extend this."""
        return 0

    def elapsed_seconds(self) -> float:
        """Training wall time of this run, all segments of a resumed run together."""
        return self.wall_offset + (time.time() - self.segment_start)

    def process_batch(self, input_args=None, **kwargs):
        """Keep the entries the train step names and move tensors to ``self.device``."""
        if input_args is None:
            input_args = list(signature(self.train_step).parameters.keys())
        out = {}
        for arg, var in kwargs.items():
            if arg not in input_args or var is None:
                continue
            if isinstance(var, dict):
                var = {k: v.to(self.device, non_blocking=True) for k, v in var.items()}
            elif torch.is_tensor(var):
                var = var.to(self.device, non_blocking=True)
            out[arg] = var
        return out

    # ------------------------------------------------------------------ hooks
    def set_hooks(self):
        super().set_hooks()
        for i, hook in enumerate(self._hooks):
            if type(hook) is TimerHook:
                new = DeviceTimerHook()
            elif type(hook) is CheckpointHook:
                new = ProcessCheckpointHook()
            elif type(hook) is LoggingHook:
                new = CompletedStepLoggingHook()
            elif type(hook) is EvaluationHook:
                new = ResultsEvaluationHook()
            else:
                continue
            new.priority, new.name = hook.priority, hook.name
            self._hooks[i] = new
        place_hook_after(self, BufferSyncHook(), "BufferSyncHook", "ParamUpdateHook")  # before USB's EMA update
        self.register_hook(StepStateHook(entering=True), "StepEnterHook", "HIGHEST")
        self.register_hook(PlacementHook(), "PlacementHook", "HIGHEST")
        self.register_hook(StepStateHook(entering=False), "StepExitHook", "LOWEST")

    # ------------------------------------------------------------------ evaluation
    @torch.no_grad()
    def predict(self, eval_dest: str = "eval", out_key: str = "logits"):
        """Logits (N, C) float32 numpy and labels (N,) of a loader, with the EMA weights."""
        self.model.eval()
        self.ema.apply_shadow()
        ys, logits_all, loss_sum = [], [], 0.0
        try:
            for data in self.loader_dict[eval_dest]:
                x, y = data["x_lb"], data["y_lb"]
                x = {k: v.to(self.device) for k, v in x.items()} if isinstance(x, dict) else x.to(self.device)
                y = y.to(self.device)
                logits = self.model(x)[out_key]
                loss_sum += F.cross_entropy(logits, y, reduction="sum", ignore_index=-1).item()
                ys.append(y.cpu().numpy())
                logits_all.append(logits.float().cpu().numpy())
        finally:
            self.ema.restore()
            self.model.train()
        y_true = np.concatenate(ys) if ys else np.zeros(0, np.int64)
        logits = np.concatenate(logits_all) if logits_all else np.zeros((0, self.num_classes), np.float32)
        return logits, y_true, loss_sum

    def evaluate(self, eval_dest="eval", out_key="logits", return_logits=False):
        logits, y_true, loss_sum = self.predict(eval_dest, out_key)
        out = self.eval_metrics(eval_dest, logits, y_true, loss_sum)
        if return_logits:
            out[f"{eval_dest}/logits"] = logits
        return out

    def eval_metrics(self, eval_dest: str, logits: np.ndarray, y_true: np.ndarray, loss_sum: float) -> Dict[str, float]:
        """USB's evaluation keys (plus :meth:`extra_eval_metrics`) from :meth:`predict`'s output."""
        if len(y_true) == 0:
            raise ValueError(f"evaluation split {eval_dest!r} is empty")
        y_pred = logits.argmax(axis=1)
        labels = np.arange(self.num_classes)
        out = {
            f"{eval_dest}/loss": loss_sum / len(y_true),
            f"{eval_dest}/top-1-acc": accuracy_score(y_true, y_pred),
            f"{eval_dest}/balanced_acc": balanced_accuracy_score(y_true, y_pred),
            f"{eval_dest}/precision": precision_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
            f"{eval_dest}/recall": recall_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
            f"{eval_dest}/F1": f1_score(y_true, y_pred, labels=labels, average="macro", zero_division=0),
        }
        out.update(self.extra_eval_metrics(eval_dest, logits, y_true))
        self.last_confusion = {eval_dest: confusion_matrix(y_true, y_pred, labels=labels, normalize="true")}
        return out

    def extra_eval_metrics(self, eval_dest: str, logits: np.ndarray, y_true: np.ndarray) -> Dict[str, float]:
        """Extension point for further metrics (one float per key)."""
        return {}

    # ------------------------------------------------------------------ checkpoints
    def get_save_dict(self):
        save_dict = super().get_save_dict()
        save_dict["best_eval_acc"] = float(self.best_eval_acc)
        done = self.it + 1 if self._in_train_step else self.it
        save_dict["it"] = done
        # completed epochs: a resumed run continues inside an interrupted epoch
        save_dict["epoch"] = done // max(self.num_iter_per_epoch, 1)
        save_dict["hook_state"] = {
            hook.name: {k: v.detach().cpu().clone() for k, v in vars(hook_state_owner(hook)).items()
                        if torch.is_tensor(v)}
            for hook in self._hooks
        }
        save_dict["settings"] = self.settings.to_dict()
        # exact resume: where the data order stands and the random states at this point
        save_dict["data_position"] = {"epoch": int(self.epoch), "batches": int(self._epoch_batches)}
        # loaded but not yet resumed: the states the resume will start from
        pending = self._resume_point
        save_dict["rng"] = pending["rng"] if pending is not None else capture_rng(self.device)
        save_dict["threads"] = torch.get_num_threads()
        save_dict["world_size"] = self.procs.world_size
        if self.procs.distributed:
            save_dict["rng_ranks"] = pending.get("rng_ranks") if pending is not None else self._rank_rngs
        save_dict["wall_seconds"] = self.elapsed_seconds()
        return save_dict

    def gather_rng_states(self) -> None:
        """Several processes: collect every process's random states (rank order) for the next
        checkpoint; a collective, so every process calls it at the same iterations."""
        if self.procs.distributed:
            pending = self._resume_point
            own = pending["rng"] if pending is not None else capture_rng(self.device)
            self._rank_rngs = distributed.all_gather_object(distributed.tensors_to(own, "cpu"))

    def save_model(self, save_name, save_path):
        """Save atomically with a checksum (:func:`.checkpoint_io.save_checkpoint`); the previous
        ``latest_model.pth`` is kept as ``previous_model.pth``."""
        save_checkpoint(self.get_save_dict(), os.path.join(save_path, save_name), keep_previous=save_name == LATEST)

    def load_model(self, load_path):
        """Verify the checkpoint's checksum, then restore weights, EMA, optimizer, scheduler,
        iteration, every hook's tensors, the random states and the position in the data order.

        Replaces the base loader (the FreeMatch/ReMixMatch loaders hard-code CUDA device moves) and
        puts each saved hook tensor back on ``self.device``.  A damaged file raises
        :class:`.checkpoint_io.CheckpointError` naming it.
        """
        checkpoint = load_checkpoint(load_path)
        for key, net in (("model", self.model), ("ema_model", self.ema_model)):
            try:
                net.load_state_dict(checkpoint[key])
            except RuntimeError as e:  # torch lists every mismatch over many lines: keep the first
                lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
                detail = (lines[1] if len(lines) > 1 else lines[0] if lines else type(e).__name__)[:300]
                raise ValueError(f"checkpoint {load_path}: its {key} does not fit the network built here "
                                 f"({type(net).__name__}): {detail}") from None
        self.loss_scaler.load_state_dict(checkpoint["loss_scaler"])
        self.it = checkpoint["it"]
        self.start_epoch = self.epoch = checkpoint["epoch"]
        self.best_it = checkpoint["best_it"]
        self.best_eval_acc = checkpoint["best_eval_acc"]
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        if self.scheduler is not None and "scheduler" in checkpoint:
            self.scheduler.load_state_dict(checkpoint["scheduler"])
        self.wall_offset = float(checkpoint.get("wall_seconds", 0.0))
        self.segment_start = time.time()
        self._resume_point = None
        pos = checkpoint.get("data_position")
        if pos is not None and "rng" in checkpoint:
            epoch, batches = int(pos["epoch"]), int(pos["batches"])
            per_epoch = len(self.loader_dict["train_lb"]) if self.loader_dict else 0
            if batches >= per_epoch:  # the epoch was finished
                epoch, batches = epoch + 1, 0
            self.start_epoch = self.epoch = epoch
            self._epoch_batches = batches
            self._resume_point = {"epoch": epoch, "batches": batches, "rng": checkpoint["rng"]}
            saved_world = int(checkpoint.get("world_size", 1))
            if saved_world != self.procs.world_size:
                if self.warn_on_resume:
                    log.warning("resume: the checkpoint was written by %d process(es), this run has %d; the model, "
                                "optimizer and HDL state continue, but the data order and random states differ from "
                                "an uninterrupted run", saved_world, self.procs.world_size)
            elif checkpoint.get("rng_ranks") is not None:  # each process continues from its own states
                ranks = checkpoint["rng_ranks"]
                self._resume_point.update(rng=ranks[self.procs.rank], rng_ranks=ranks)
            saved_threads = checkpoint.get("threads")
            if saved_threads is not None and saved_threads != torch.get_num_threads() and self.warn_on_resume:
                log.warning("resume: the checkpoint was written with %d thread(s), this process uses %d; the "
                            "continued run will not be bit-identical to an uninterrupted one", saved_threads,
                            torch.get_num_threads())
            if getattr(self.args, "num_workers", 0) and self.warn_on_resume:
                log.warning("resume: num_workers=%d; the workers' augmentation random states are not saved, so the "
                            "continued run will not be bit-identical to an uninterrupted one (use num_workers: 0)",
                            self.args.num_workers)
        for name, state in checkpoint.get("hook_state", {}).items():
            hook = self.hooks_dict.get(name)
            if hook is None:
                continue
            for k, v in state.items():
                setattr(hook_state_owner(hook), k, v.to(self.device))
        self.place_on_device()
        return checkpoint
