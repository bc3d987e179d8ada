"""Checkpoint files: atomic writes with a checksum, verification before loading, the previous
good checkpoint kept, and clean-up of interrupted writes.

A checkpoint ``NAME.pth`` is written next to ``NAME.pth.sha256`` (JSON: ``sha256`` and ``size``
of the checkpoint's bytes).  A write goes to a temp file (``.NAME.pth.<random>.tmp``), is read
back and hashed, and only then replaces the old file; with ``keep_previous`` the old file (and its
checksum) is first renamed to :data:`PREVIOUS` ``[NAME.pth]``, so a crash at any point leaves at
least one complete, verifiable checkpoint:

1. the new bytes go to ``.NAME.pth.*.tmp`` (fsync), its checksum to ``.NAME.pth.sha256.*.tmp``;
2. ``NAME.pth`` -> ``previous_...`` and ``NAME.pth.sha256`` -> ``previous_....sha256``;
3. the checksum temp file -> ``NAME.pth.sha256``, then the checkpoint temp file -> ``NAME.pth``.

A crash inside 2-3 leaves ``NAME.pth`` missing and the previous checkpoint intact, which
:func:`choose_resume_checkpoint` falls back to.  Checkpoints written before checksums existed
(no ``.sha256`` file) still load; a file that does not unpickle is reported as damaged.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from typing import Any, List, Optional, Tuple

import torch

from .faults import fault_point

CHECKSUM_SUFFIX = ".sha256"
TEMP_SUFFIX = ".tmp"
LATEST = "latest_model.pth"
BEST = "model_best.pth"
PREVIOUS = {LATEST: "previous_model.pth"}
# every file name a run writes for its checkpoints (used by the clean-up of a new run)
CHECKPOINT_FILES = tuple(n + s for n in (LATEST, BEST, PREVIOUS[LATEST]) for s in ("", CHECKSUM_SUFFIX))


class CheckpointError(ValueError):
    """A checkpoint file is missing, damaged or unreadable; the message names the file."""


class _HashingWriter:
    """File wrapper that hashes what is written through it."""

    def __init__(self, f):
        self.f, self.h, self.size = f, hashlib.sha256(), 0

    def write(self, b):
        self.h.update(b)
        self.size += len(b)
        return self.f.write(b)

    def flush(self):
        self.f.flush()


def file_sha256(path: str) -> Tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


def _fsync_dir(d: str) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _remove(path: Optional[str]) -> None:
    if path and os.path.exists(path):
        os.remove(path)


def save_checkpoint(obj: Any, path: str, keep_previous: bool = False) -> None:
    """Write ``obj`` (``torch.save``) to ``path`` atomically with its checksum file.

    ``keep_previous``: the current ``path`` (when there is one) becomes :data:`PREVIOUS`'s name
    for it before the new file takes its place.  Raises OSError naming the path on a failed write
    (nothing half-written is left: the temp files are removed).
    """
    d, name = os.path.split(path)
    d = d or "."
    os.makedirs(d, exist_ok=True)
    tmp = side_tmp = None
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=TEMP_SUFFIX, dir=d)
        with os.fdopen(fd, "wb") as f:
            w = _HashingWriter(f)
            torch.save(obj, w)
            f.flush()
            os.fsync(f.fileno())
        digest, size = file_sha256(tmp)  # read back: what is on disk is what was written
        if (digest, size) != (w.h.hexdigest(), w.size):
            raise OSError(f"{path}: the checkpoint read back differs from what was written")
        fd, side_tmp = tempfile.mkstemp(prefix=f".{name}{CHECKSUM_SUFFIX}.", suffix=TEMP_SUFFIX, dir=d)
        with os.fdopen(fd, "w") as f:
            json.dump({"sha256": digest, "size": size}, f)
            f.flush()
            os.fsync(f.fileno())
        fault_point("checkpoint_write")
        if keep_previous and name in PREVIOUS and os.path.exists(path):
            prev = os.path.join(d, PREVIOUS[name])
            os.replace(path, prev)
            if os.path.exists(path + CHECKSUM_SUFFIX):
                os.replace(path + CHECKSUM_SUFFIX, prev + CHECKSUM_SUFFIX)
            else:
                _remove(prev + CHECKSUM_SUFFIX)
            fault_point("checkpoint_rotate")
        os.replace(side_tmp, path + CHECKSUM_SUFFIX)
        side_tmp = None
        os.replace(tmp, path)
        tmp = None
        _fsync_dir(d)
    except OSError as e:
        _remove(tmp)
        _remove(side_tmp)
        raise OSError(f"cannot write checkpoint {path}: {e.strerror or e}") from None
    except BaseException:
        _remove(tmp)
        _remove(side_tmp)
        raise


def verify_checkpoint(path: str) -> Optional[str]:
    """None when ``path`` matches its checksum file (or has none: an older checkpoint), else a
    short reason.  A missing file is a reason too."""
    if not os.path.isfile(path):
        return "missing"
    side = path + CHECKSUM_SUFFIX
    if not os.path.isfile(side):
        return None
    try:
        with open(side) as f:
            want = json.load(f)
        want_sha, want_size = str(want["sha256"]), int(want["size"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        return f"its checksum file {os.path.basename(side)} is unreadable ({type(e).__name__})"
    digest, size = file_sha256(path)
    if size != want_size:
        return f"{size} bytes, expected {want_size} (truncated or overwritten)"
    if digest != want_sha:
        return f"checksum mismatch (sha256 {digest[:12]}..., expected {want_sha[:12]}...)"
    return None


def load_checkpoint(path: str) -> dict:
    """Verify and load a checkpoint on the CPU; raises :class:`CheckpointError` naming the file."""
    why = verify_checkpoint(path)
    if why == "missing":
        raise CheckpointError(f"checkpoint {path}: no such file")
    if why is not None:
        raise CheckpointError(f"checkpoint {path} is damaged: {why}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # a legacy file without checksum that does not unpickle
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"checkpoint {path} is damaged or not a checkpoint: {first}") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt:
        raise CheckpointError(f"checkpoint {path} is not a training checkpoint (no 'model' entry)")
    return ckpt


def choose_resume_checkpoint(run_dir: str, load_path: Optional[str] = None) -> Tuple[str, List[str]]:
    """The checkpoint to resume ``run_dir`` from and the warnings to show.

    ``load_path`` other than the run's ``latest_model.pth`` is taken as given (verified).  For the
    run's own checkpoint: ``latest_model.pth`` when it verifies, else ``previous_model.pth`` with a
    warning naming both files; raises :class:`CheckpointError` (one line) when neither is usable
    or the run has no checkpoint at all.
    """
    latest = os.path.join(run_dir, LATEST)
    if load_path and os.path.abspath(load_path) != os.path.abspath(latest):
        why = verify_checkpoint(load_path)
        if why is not None:
            raise CheckpointError(f"load_path: checkpoint {load_path} is {'missing' if why == 'missing' else 'damaged: ' + why}")
        return load_path, []
    prev = os.path.join(run_dir, PREVIOUS[LATEST])
    why_latest, why_prev = verify_checkpoint(latest), verify_checkpoint(prev)
    if why_latest is None:
        return latest, []
    if why_prev is None:
        what = "is missing (a checkpoint write was interrupted)" if why_latest == "missing" else f"is damaged ({why_latest})"
        return prev, [f"resume: {latest} {what}; resuming from the previous checkpoint {prev}"]
    if why_latest == "missing" and why_prev == "missing":
        raise CheckpointError(f"resume: no checkpoint in {run_dir} (no {LATEST}); check save_dir and save_name, "
                              f"or set resume: False to start a new run")
    raise CheckpointError(f"resume: no usable checkpoint in {run_dir}: {LATEST} {why_latest}; "
                          f"{PREVIOUS[LATEST]} {why_prev}")


def remove_stale_temps(run_dir: str) -> List[str]:
    """Delete temp files of interrupted writes in ``run_dir`` (checkpoints and the run's atomic
    text writes); returns their names."""
    if not os.path.isdir(run_dir):
        return []
    gone = []
    for f in sorted(os.listdir(run_dir)):
        stale = f.startswith(".") and (f.endswith(TEMP_SUFFIX) or f.startswith(".tmp.")
                                       or any(f.startswith(f".{n}.") for n in (LATEST, BEST)))
        if stale and os.path.isfile(os.path.join(run_dir, f)):
            os.remove(os.path.join(run_dir, f))
            gone.append(f)
    return gone
