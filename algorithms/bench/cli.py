"""``hdl-bench``: run every cell of a benchmark grid (:mod:`.grid`) with ``runner.train``,
one after the other, then summarise the finished cells (:mod:`.report`).

    hdl-bench --config configs/bench/fashion_mnist_offline.yaml [--dry-run] [--only-table]
              [--in-process] [--out-dir DIR] [--only-settings a,b] [--only-algorithms ...]
              [--only-arms ...] [--only-seeds 0,1] [--jobs N] [--no-progress] [--key value ...]

A cell with ``results.json`` is finished and never re-run; a cell with a checkpoint
(``latest_model.pth``) resumes from it (``resume: True`` then, ``false`` for a cell without one). Cells run in a
fresh ``hdl-train`` process each (``isolation: subprocess``, the default) or in this process
(``inprocess`` / ``--in-process``). ``bench_cell.yaml`` in the run folder records the cell's
config; a failed cell leaves ``bench_output.txt`` (subprocess) or ``bench_error.txt``
(in-process) and is tried again by the next invocation. ``--key value`` pairs override the
config of every cell (see :func:`.grid.build_cells` for the order).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import subprocess
import sys
import traceback
import warnings
from typing import Dict, List, Optional, Sequence

import yaml

from .grid import (ARMS, ISOLATIONS, Cell, Grid, Setting, allowed_algorithms, build_cells, check_cells, hdl_only_keys,
                         load_grid, parse_grid, select_cells)
from ..run.config import parse_overrides

__all__ = ["ARMS", "Cell", "Grid", "Setting", "build_cells", "hdl_only_keys", "load_grid", "main", "parse_grid",
           "run_cell", "run_grid", "select_cells", "write_reports"]

log = logging.getLogger("hdl.bench")


# ----------------------------------------------------------------------------- running
def _train_command(cell_yaml: str) -> List[str]:
    return [sys.executable, "-m", "hdl.algorithms.run.cli", "--config", cell_yaml, "--no-progress"]


def _record_config(cell: Cell) -> str:
    """Write ``bench_cell.yaml``; warn when an earlier attempt of the cell used another config."""
    os.makedirs(cell.run_dir, exist_ok=True)
    path = os.path.join(cell.run_dir, "bench_cell.yaml")
    text = yaml.safe_dump(cell.config, sort_keys=True)
    if os.path.isfile(path):
        with open(path) as f:
            old = yaml.safe_load(f) or {}
        new = yaml.safe_load(text)
        changed = sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))
        if changed:
            log.warning("cell %s: resuming with a changed config (keys %s)", cell.key, changed)
    with open(path, "w") as f:
        f.write(text)
    return path


def _cell_env(threads: int) -> Dict[str, str]:
    """Environment of a cell's process: ``threads`` CPU threads (the grid's ``threads``, default 1),
    the same whatever ``--jobs`` is, so a grid's numbers do not depend on it."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = env["MKL_NUM_THREADS"] = str(threads)
    return env


def run_cell(cell: Cell, isolation: str = "subprocess", env: Optional[Dict[str, str]] = None) -> bool:
    """Train one cell (resuming its checkpoint if any); True when ``results.json`` was written.

    Failures are logged (subprocess output in ``bench_output.txt``, in-process tracebacks in
    ``bench_error.txt``) and do not stop the grid; KeyboardInterrupt does.
    """
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation: expected one of {list(ISOLATIONS)}, got {isolation!r}")
    cell_yaml = _record_config(cell)
    resume = cell.status() == "partial"  # a cell without a checkpoint starts (resume: True would be an error)
    if isolation == "subprocess":
        with open(os.path.join(cell.run_dir, "bench_output.txt"), "a") as out:
            rc = subprocess.call(_train_command(cell_yaml) + ["--resume", str(resume).lower()], stdout=out, stderr=subprocess.STDOUT, env=env)
        if rc != 0:
            log.error("cell %s failed (exit %d); see %s", cell.key, rc, os.path.join(cell.run_dir, "bench_output.txt"))
    else:
        import torch

        from ..run import runner
        from ..run.config import resolve_config

        threads = int((env or {}).get("OMP_NUM_THREADS", 0)) or torch.get_num_threads()
        before = torch.get_num_threads()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                args = resolve_config(dict(cell.config, resume=resume), allowed_algorithms())
            torch.set_num_threads(threads)
            runner.train(args, progress=False)
        except Exception:  # noqa: BLE001 - one failing cell must not stop the grid
            with open(os.path.join(cell.run_dir, "bench_error.txt"), "w") as f:
                f.write(traceback.format_exc())
            log.error("cell %s failed; see %s", cell.key, os.path.join(cell.run_dir, "bench_error.txt"))
        finally:
            torch.set_num_threads(before)
    return cell.status() == "done"


def run_grid(grid: Grid, cells: Sequence[Cell], isolation: Optional[str] = None, progress: bool = True,
             jobs: int = 1) -> Dict[str, List[str]]:
    """Run the unfinished ``cells``, ``jobs`` at a time (one after the other by default; more than
    one needs subprocess isolation); every cell runs with the grid's ``threads`` (default 1) CPU
    threads whatever ``jobs`` is.  Returns the keys that ran, were skipped (finished before) and
    failed."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    from tqdm import tqdm

    isolation = isolation or grid.isolation
    if not isinstance(jobs, int) or jobs < 1:
        raise ValueError(f"jobs: expected an int >= 1, got {jobs!r}")
    if jobs > 1 and isolation != "subprocess":
        raise ValueError(f"jobs={jobs} needs isolation 'subprocess' (cells in one process cannot run side by side)")
    cells = [c for c in cells if c.refused is None]  # the report shows the refused pairs and why
    status = {c.key: c.status() for c in cells}
    todo = [c for c in cells if status[c.key] != "done"]
    done = [c.key for c in cells if status[c.key] == "done"]
    ran, failed = [], []
    env = _cell_env(grid.threads)
    bar = tqdm(total=len(cells), initial=len(done), desc=grid.name, unit="run", dynamic_ncols=True, disable=not progress)

    def finished(cell: Cell, ok: bool) -> None:
        (ran if ok else failed).append(cell.key)
        bar.update(1)
        if not progress:  # one line per finished cell where there is no bar
            print(f"[{len(done) + len(ran) + len(failed)}/{len(cells)}] {cell.key}: {'done' if ok else 'FAILED'}",
                  flush=True)

    try:
        if jobs == 1:  # in this thread, so Ctrl-C stops an in-process cell too
            for cell in todo:
                bar.set_postfix_str(cell.key + (" (resuming)" if status[cell.key] == "partial" else ""))
                finished(cell, run_cell(cell, isolation, env))
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                running = {}
                for cell in todo:
                    running[pool.submit(run_cell, cell, isolation, env)] = cell
                    if len(running) < jobs:
                        continue
                    bar.set_postfix_str(", ".join(c.key for c in running.values()))
                    for fut in wait(list(running), return_when=FIRST_COMPLETED)[0]:
                        finished(running.pop(fut), fut.result())
                for fut in wait(list(running))[0]:
                    finished(running.pop(fut), fut.result())
    finally:
        bar.close()
    return {"ran": ran, "skipped": done, "failed": failed}


def write_reports(grid: Grid, cells: Sequence[Cell]) -> Dict[str, object]:
    """The grid's report (:func:`.report.write_report`) and, for a grid with an ``la`` arm or
    imbalance algorithms, its peers section (:func:`.peers.write_peer_section`)."""
    from . import peers, report

    paths = report.write_report(grid, cells)
    peers.write_peer_section(grid, cells, paths)
    return paths


# ----------------------------------------------------------------------------- command line
def _csv_list(value: Optional[str], cast=str):
    if value is None:
        return None
    try:
        return [cast(v.strip()) for v in value.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"expected a comma-separated list, got {value!r}") from None


def main(argv: Optional[List[str]] = None) -> int:
    """``hdl-bench``: run a grid (resumable), then write results.csv, table.md and plots."""
    logging.basicConfig(format="[%(levelname)s] %(message)s", level=logging.INFO)
    p = argparse.ArgumentParser(prog="hdl-bench", description=main.__doc__,
                                epilog="Extra --key value pairs override the config of every cell.")
    p.add_argument("--config", required=True, help="grid YAML file (see hdl.algorithms.bench)")
    p.add_argument("--dry-run", action="store_true", help="validate every cell (config, data set, splits) and list "
                   "them with their status; exit 2 naming each invalid cell")
    p.add_argument("--only-table", action="store_true", help="run nothing; summarise the finished cells")
    p.add_argument("--in-process", action="store_true", help="train in this process instead of one process per cell")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.add_argument("--jobs", type=int, default=1,
                   help="cells trained side by side (each with the grid's 'threads', default 1, whatever --jobs is)")
    p.add_argument("--out-dir", default=None, help="output folder instead of the grid's out_dir")
    p.add_argument("--report-dir", default=None, help="write results.csv, table.md, floors.json and the plots here "
                   "instead of the out_dir (the runs stay where they are; e.g. a results/ folder to commit)")
    for what in ("settings", "algorithms", "arms", "seeds"):
        p.add_argument(f"--only-{what}", default=None, help=f"comma-separated {what} to run (default: all)")
    p.add_argument("--only-imb", default=None, help="comma-separated imbalance algorithms to run ('none' for the "
                   "cells without one; default: all)")
    known, rest = p.parse_known_args(argv)
    try:
        grid = load_grid(known.config)
        if known.out_dir:
            grid = dataclasses.replace(grid, out_dir=known.out_dir)
        cells = build_cells(grid, parse_overrides(rest))
        chosen = select_cells(cells, _csv_list(known.only_settings), _csv_list(known.only_algorithms),
                              _csv_list(known.only_arms), _csv_list(known.only_seeds, int),
                              _csv_list(known.only_imb))
    except (ValueError, FileNotFoundError) as e:
        print(f"hdl-bench: error: {e}", file=sys.stderr)
        return 2
    if known.dry_run:
        problems = check_cells(chosen)
        for c in chosen:
            print(f"{c.status():8s} {c.key:50s} {c.refused or c.base_config}")
        for line in problems:
            print(f"hdl-bench: error: {line}", file=sys.stderr)
        if problems:
            return 2
        counts = {s: sum(c.status() == s for c in chosen) for s in ("done", "partial", "todo", "refused")}
        print(f"{len(chosen)} cells: {counts['done']} done, {counts['partial']} to resume, {counts['todo']} to run, "
              f"{counts['refused']} refused (the pair does not run here)")
        return 0
    summary = {"ran": [], "skipped": [], "failed": []}
    if not known.only_table:
        try:
            summary = run_grid(grid, chosen, "inprocess" if known.in_process else None, progress=not known.no_progress,
                               jobs=known.jobs)
        except ValueError as e:
            print(f"hdl-bench: error: {e}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print("hdl-bench: interrupted; the same command resumes the grid", file=sys.stderr)
            return 130
    report_grid = dataclasses.replace(grid, out_dir=known.report_dir) if known.report_dir else grid
    paths = write_reports(report_grid, cells)
    print(f"hdl-bench: {len(summary['ran'])} ran, {len(summary['skipped'])} already finished, "
          f"{len(summary['failed'])} failed; table: {paths['table']}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
