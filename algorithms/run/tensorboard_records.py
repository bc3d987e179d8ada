"""Resume: TensorBoard events written after the restored iteration are removed, so the resumed
run's events are the only ones at those steps (a killed run logs steps its checkpoint never saw).

Each event file of an earlier segment is rewritten without its events whose step is larger than
the restored iteration (written to a temp file, then renamed in place); a file left without a
scalar event is removed.  The file of the current segment's writer is not touched.
"""
from __future__ import annotations

import os
from typing import List


def event_files(run_dir: str) -> List[str]:
    """The TensorBoard event files under ``run_dir/tensorboard`` (sorted paths)."""
    root = os.path.join(run_dir, "tensorboard")
    out = []
    for folder, _, names in os.walk(root):
        out += [os.path.join(folder, n) for n in names if ".tfevents." in n and not n.endswith(".tmp")]
    return sorted(out)


def purge_after(files: List[str], it: int) -> int:
    """Remove the events with ``step > it`` from ``files``; returns how many were removed."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.summary.writer.record_writer import RecordWriter

    removed = 0
    for path in files:
        if not os.path.isfile(path):
            continue
        events = list(EventFileLoader(path).Load())
        keep = [e for e in events if e.step <= it]
        if len(keep) == len(events):
            continue
        removed += len(events) - len(keep)
        if not any(e.HasField("summary") for e in keep):
            os.remove(path)
            continue
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            writer = RecordWriter(f)
            for e in keep:
                writer.write(e.SerializeToString())
            writer.flush()
        os.replace(tmp, path)
    return removed
