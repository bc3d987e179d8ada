"""What ``hdl-bench`` writes into a grid's ``out_dir`` from its finished cells.

* ``results.csv``: one row per finished cell (:data:`COLUMNS`; accuracies in [0, 1]).
* ``floors.json``: the pixel floors (:func:`hdl.floors.pixel_floors`) of every split the runs
  used, keyed by a fingerprint of the split (so they are computed once and on the same splits).
* ``plots/<setting>_val_acc.png`` (validation accuracy over iterations, from TensorBoard),
  ``_hdl_pool.png`` (pool size and pool label accuracy per refresh, from ``hdl_refresh.jsonl``),
  ``_vote_vs_logit.png`` (HDL's embedding-vote labels against the model's most confident
  pseudo-labels at equal coverage, per refresh) and, for long-tailed settings,
  ``_per_class.png`` (test accuracy per class at the best-validation checkpoint, from
  ``runner.evaluate_run``'s predictions).
* ``table.md``: per setting, mean +- sample std over seeds for each algorithm and arm, the
  paired difference HDL - base over the seeds both arms finished, the floors, and the plots.
"""
from __future__ import annotations

import csv
import hashlib
import json
import logging
import os
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

log = logging.getLogger("hdl.bench")

COLUMNS = ("setting", "dataset", "num_labels", "lb_imb_ratio", "ulb_num_labels", "ulb_imb_ratio", "algorithm", "arm",
           "imb", "label", "seed", "iterations", "best_val_acc", "test_acc_at_best_val", "test_acc_final",
           "test_balanced_acc_at_best_val", "test_balanced_acc_final", "hdl_refreshes", "hdl_pool_size",
           "hdl_pool_acc", "hdl_pool_coverage", "hdl_logit_acc_equal_coverage", "hdl_injected_acc",
           "hdl_injected_coverage", "hdl_logit_acc_equal_injected", "hdl_logit_coverage", "wall_seconds", "threads",
           "run_dir")


def read_refreshes(run_dir: str) -> List[Dict[str, float]]:
    """The refresh records of ``hdl_refresh.jsonl`` in iteration order, one per iteration (a
    refresh repeated after a resume keeps its last record); [] when the file is absent."""
    path = os.path.join(run_dir, "hdl_refresh.jsonl")
    if not os.path.isfile(path):
        return []
    by_it: Dict[int, Dict[str, float]] = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                rec = json.loads(line)
                by_it[int(rec["it"])] = rec
    return [by_it[k] for k in sorted(by_it)]


def cell_row(cell) -> Optional[Dict[str, Any]]:
    """The ``results.csv`` row of a finished cell, or None."""
    path = os.path.join(cell.run_dir, "results.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        res = json.load(f)
    cfg = res.get("settings", {})
    refreshes = read_refreshes(cell.run_dir)
    last = (refreshes or [{}])[-1]
    return {
        "setting": cell.setting.name, "dataset": res.get("dataset"), "num_labels": res.get("num_labels"),
        "lb_imb_ratio": cfg.get("lb_imb_ratio", 1), "ulb_num_labels": cfg.get("ulb_num_labels"),
        "ulb_imb_ratio": cfg.get("ulb_imb_ratio", 1), "algorithm": cell.algorithm, "arm": cell.arm,
        "imb": cell.imb, "label": cell.label, "seed": cell.seed,
        "iterations": res.get("iterations"), "best_val_acc": res.get("best_val_acc"),
        "test_acc_at_best_val": res.get("test_acc_at_best_val"), "test_acc_final": res.get("test_acc_final"),
        "test_balanced_acc_at_best_val": res.get("test_balanced_acc_at_best_val"),
        "test_balanced_acc_final": res.get("test_balanced_acc_final"),
        "hdl_refreshes": len(refreshes) if cell.arm == "hdl" else None,
        "hdl_pool_size": last.get("hdl/pool_size"), "hdl_pool_acc": last.get("hdl/pool_acc"),
        "hdl_pool_coverage": last.get("hdl/pool_coverage"),
        "hdl_logit_acc_equal_coverage": last.get("hdl/logit_acc_equal_coverage"),
        # what training injected at the last refresh, and the model's thresholded coverage
        "hdl_injected_acc": last.get("hdl/injected_acc"), "hdl_injected_coverage": last.get("hdl/injected_coverage"),
        "hdl_logit_acc_equal_injected": last.get("hdl/logit_acc_equal_injected"),
        "hdl_logit_coverage": last.get("hdl/logit_coverage"),
        "wall_seconds": res.get("wall_seconds"), "threads": res.get("threads"), "run_dir": cell.run_dir,
    }


def write_results_csv(rows: Sequence[Dict[str, Any]], path: str) -> None:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if row.get(k) is None else row[k]) for k in COLUMNS})


# ----------------------------------------------------------------------------- floors
def _run_config(run_dir: str) -> Dict[str, Any]:
    import yaml

    with open(os.path.join(run_dir, "config.yaml")) as f:
        return yaml.safe_load(f)


def split_fingerprint(lb_idx: np.ndarray, ulb_idx: np.ndarray, dataset: str) -> str:
    h = hashlib.sha1(dataset.encode())
    for arr in (lb_idx, ulb_idx):
        h.update(np.ascontiguousarray(arr, dtype=np.int64).tobytes())
        h.update(b"|")
    return h.hexdigest()[:16]


def setting_floors(cells, cache_path: str, max_unlabeled: int = 10000) -> Dict[str, List[Dict[str, float]]]:
    """Floors of every distinct split among the finished cells, per setting name; computed splits
    are cached in ``cache_path`` (a JSON mapping fingerprint -> floors)."""
    from hdl.data import Splits, load_dataset
    from hdl.floors import pixel_floors

    cache = {}
    if os.path.isfile(cache_path):
        with open(cache_path) as f:
            cache = json.load(f)
    data_cache: Dict[tuple, Any] = {}
    out: Dict[str, Dict[str, Dict[str, float]]] = defaultdict(dict)
    for cell in cells:
        split_path = os.path.join(cell.run_dir, "splits.npz")
        if cell.status() != "done" or not os.path.isfile(split_path):
            continue
        cfg = _run_config(cell.run_dir)
        splits = Splits.load(split_path)
        fp = split_fingerprint(splits.lb_idx, splits.ulb_idx, cfg["dataset"])
        if fp in out[cell.setting.name]:
            continue
        if fp not in cache or cache[fp].get("max_unlabeled") != max_unlabeled:
            key = (cfg["dataset"], cfg.get("data_dir"))
            if key not in data_cache:
                data_cache[key] = load_dataset(cfg["dataset"], cfg.get("data_dir"))
            d = data_cache[key]
            fl = pixel_floors(d.train_x, d.train_y, d.test_x, d.test_y, splits.lb_idx, splits.ulb_idx,
                              max_unlabeled=max_unlabeled, seed=int(cfg.get("seed", 0)))
            cache[fp] = {"setting": cell.setting.name, "seed": cell.seed, "dataset": cfg["dataset"],
                         "num_labeled": int(len(splits.lb_idx)), "max_unlabeled": max_unlabeled, **fl}
            with open(cache_path, "w") as f:
                json.dump(cache, f, indent=2)
        out[cell.setting.name][fp] = cache[fp]
    return {k: list(v.values()) for k, v in out.items()}


# ----------------------------------------------------------------------------- curves
def val_curve(run_dir: str, tag: str = "eval/top-1-acc"):
    """(steps, values) of a TensorBoard scalar of the run (last value per step); empty arrays if absent."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = os.path.join(run_dir, "tensorboard")
    if not os.path.isdir(tb):
        return np.zeros(0), np.zeros(0)
    acc = EventAccumulator(tb, size_guidance={"scalars": 0})
    acc.Reload()
    if tag not in acc.Tags().get("scalars", []):
        return np.zeros(0), np.zeros(0)
    by_step = {e.step: e.value for e in acc.Scalars(tag)}
    steps = np.array(sorted(by_step))
    return steps, np.array([by_step[s] for s in steps])


def per_class_accuracy(run_dir: str, num_classes: int) -> Optional[np.ndarray]:
    """Test accuracy per class (NaN for a class absent from the test set) at the best-validation
    checkpoint, from ``predictions_test_best.csv`` (written by ``runner.evaluate_run`` when missing
    or older than ``results.json``); None if evaluation fails."""
    from ..run.runner import evaluate_run

    pred_path = os.path.join(run_dir, "predictions_test_best.csv")
    res_path = os.path.join(run_dir, "results.json")
    if not os.path.isfile(pred_path) or os.path.getmtime(pred_path) < os.path.getmtime(res_path):
        try:
            evaluate_run(run_dir, "test", "best", pred_path)
        except Exception as e:  # noqa: BLE001 - a missing plot must not lose the table
            log.warning("per-class accuracy of %s unavailable: %s", run_dir, e)
            return None
    lab_pred = np.loadtxt(pred_path, delimiter=",", skiprows=1, usecols=(1, 2), dtype=np.int64, ndmin=2)
    out = np.full(num_classes, np.nan)
    for c in range(num_classes):
        sel = lab_pred[:, 0] == c
        if sel.any():
            out[c] = float((lab_pred[sel, 1] == c).mean())
    return out


def mean_by_x(series: Sequence[tuple]):
    """Mean over runs of (x, y) series, on the union of x (runs missing an x are skipped there)."""
    acc: Dict[float, List[float]] = defaultdict(list)
    for xs, ys in series:
        for x, y in zip(xs, ys):
            if y is not None and np.isfinite(y):
                acc[x].append(y)
    xs = sorted(acc)
    return np.array(xs), np.array([np.mean(acc[x]) for x in xs])


# ----------------------------------------------------------------------------- plots
def _style(algorithms: Sequence[str], alg: str, arm: str) -> Dict[str, Any]:
    import matplotlib.pyplot as plt

    color = plt.get_cmap("tab10")(list(algorithms).index(alg) % 10)
    return {"color": color, "linestyle": "-" if arm == "hdl" else "--"}


def make_plots(grid, cells, plot_dir: str) -> Dict[str, List[str]]:
    """Write the PNG plots of every setting with finished cells; returns setting -> file names."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(plot_dir, exist_ok=True)
    written: Dict[str, List[str]] = defaultdict(list)
    for setting in grid.settings:
        done = [c for c in cells if c.setting.name == setting.name and c.status() == "done"]
        if not done:
            continue
        groups = defaultdict(list)
        for c in done:
            groups[(c.algorithm, c.arm)].append(c)

        # validation accuracy over iterations
        fig, ax = plt.subplots(figsize=(7, 4.5))
        for (alg, arm), cs in sorted(groups.items()):
            x, y = mean_by_x([val_curve(c.run_dir) for c in cs])
            if len(x):
                ax.plot(x, 100 * y, label=f"{'hdl_' if arm == 'hdl' else ''}{alg} (n={len(cs)})",
                        **_style(grid.algorithms, alg, arm))
        ax.set(xlabel="iteration", ylabel="validation accuracy (%)", title=f"{setting.name}: validation accuracy")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        save_figure(fig, plot_dir, f"{setting.name}_val_acc.png", written[setting.name])

        hdl_groups = {k: v for k, v in sorted(groups.items()) if k[1] == "hdl"}
        refreshes = {k: [read_refreshes(c.run_dir) for c in cs] for k, cs in hdl_groups.items()}
        if any(any(r) for r in refreshes.values()):
            # per algorithm: mean over runs of each per-refresh quantity
            series = {k: {key: mean_by_x([([r["it"] for r in rs], [r.get(key) for r in rs]) for rs in runs])
                          for key in ("hdl/pool_size", "hdl/pool_acc", "hdl/logit_acc_equal_coverage")}
                      for k, runs in refreshes.items()}
            # pool size and pool label accuracy over refreshes
            fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4.2))
            for (alg, arm), ser in series.items():
                st = _style(grid.algorithms, alg, arm)
                a1.plot(*ser["hdl/pool_size"], marker="o", label=f"hdl_{alg}", **st)
                x, y = ser["hdl/pool_acc"]
                a2.plot(x, 100 * y, marker="o", label=f"hdl_{alg}", **st)
            a1.set(xlabel="iteration", ylabel="HDL-labeled unlabeled samples", title="pool size")
            a2.set(xlabel="iteration", ylabel="pool label accuracy (%)", title="pool label accuracy")
            for a in (a1, a2):
                a.grid(alpha=0.3)
                a.legend(fontsize=8)
            fig.suptitle(setting.name)
            save_figure(fig, plot_dir, f"{setting.name}_hdl_pool.png", written[setting.name])

            # embedding votes against the model's own pseudo-labels at equal coverage
            fig, ax = plt.subplots(figsize=(7, 4.5))
            for (alg, arm), ser in series.items():
                color = _style(grid.algorithms, alg, arm)["color"]
                x, y = ser["hdl/pool_acc"]
                ax.plot(x, 100 * y, marker="o", color=color, linestyle="-", label=f"{alg}: embedding vote (HDL)")
                x, y = ser["hdl/logit_acc_equal_coverage"]
                ax.plot(x, 100 * y, marker="s", color=color, linestyle=":", label=f"{alg}: logits, equal coverage")
            ax.set(xlabel="iteration", ylabel="pseudo-label accuracy (%)",
                   title=f"{setting.name}: embedding vote vs logit pseudo-labels")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
            save_figure(fig, plot_dir, f"{setting.name}_vote_vs_logit.png", written[setting.name])

        if grid.per_class and setting.long_tailed:
            num_classes = int(_run_config(done[0].run_dir)["num_classes"])
            fig, ax = plt.subplots(figsize=(max(7, num_classes * 0.12), 4.5))
            drew = False
            for (alg, arm), cs in sorted(groups.items()):
                accs = [a for a in (per_class_accuracy(c.run_dir, num_classes) for c in cs) if a is not None]
                if accs:
                    with np.errstate(all="ignore"):
                        mean = np.nanmean(np.stack(accs), axis=0)
                    ax.plot(np.arange(num_classes), 100 * mean, marker="." if num_classes > 20 else "o",
                            label=f"{'hdl_' if arm == 'hdl' else ''}{alg} (n={len(accs)})",
                            **_style(grid.algorithms, alg, arm))
                    drew = True
            ax.set(xlabel="class (labeled head first)", ylabel="test accuracy (%)",
                   title=f"{setting.name}: per-class test accuracy at the best-validation checkpoint")
            ax.grid(alpha=0.3)
            if drew:
                ax.legend(fontsize=8)
                save_figure(fig, plot_dir, f"{setting.name}_per_class.png", written[setting.name])
            else:
                plt.close(fig)
    return dict(written)


def save_figure(fig, plot_dir: str, name: str, written: List[str]) -> None:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    fig.savefig(os.path.join(plot_dir, name), dpi=110)
    plt.close(fig)
    written.append(name)


# ----------------------------------------------------------------------------- table
def _stat(values: Sequence[Optional[float]], scale: float = 100.0) -> str:
    """``mean ± std (n)`` in percent; sample std (ddof 1) when n > 1; '–' when no value."""
    v = np.array([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64) * scale
    if len(v) == 0:
        return "–"
    std = v.std(ddof=1) if len(v) > 1 else 0.0
    return f"{v.mean():.1f} ± {std:.1f} ({len(v)})"


def _paired(rows: Sequence[Dict[str, Any]], key: str) -> str:
    by = defaultdict(dict)
    for r in rows:
        by[r["seed"]][r["arm"]] = r.get(key)
    diffs = [d["hdl"] - d["base"] for d in by.values() if d.get("hdl") is not None and d.get("base") is not None]
    if not diffs:
        return "–"
    s = _stat(diffs)
    return ("+" if np.mean(diffs) > 0 else "") + s


def _pct(v: Optional[float]) -> str:
    return "–" if v is None or not np.isfinite(v) else f"{100 * v:.1f}"


def injected_lines(algorithms: Sequence[str], srows: Sequence[Dict[str, Any]], last: int = 2) -> List[str]:
    """Per HDL run of one setting: HDL − base final test accuracy (same seed), and at each of the
    last ``last`` refreshes the accuracy and coverage of the labels training injected against the
    model's most confident pseudo-labels on as many samples and its thresholded coverage
    (``hdl_refresh.jsonl``), then both accuracies class-balanced where the records have them.
    "labels ≥ model": at every one of those refreshes injected accuracy >= the model's at equal
    coverage and injected coverage >= the model's thresholded coverage; per algorithm the same test
    on the means over its seeds, then again with the class-balanced accuracies for the algorithms
    whose records all have them.  [] when no HDL run has refresh records."""
    head = ["| algorithm | seed | HDL − base final | refreshes | injected acc | model acc @ equal injected | "
            "injected cov. | model thresholded cov. | labels ≥ model | injected balanced acc | "
            "model balanced acc @ equal injected |", "|---|" + "---|" * 10]
    body: List[str] = []
    verdicts: List[str] = []
    balanced: List[str] = []  # class-balanced verdicts, for the algorithms whose records all have them
    for alg in algorithms:
        ar = [r for r in srows if r["algorithm"] == alg]
        base = {r["seed"]: r for r in ar if r["arm"] == "base"}
        per_seed = []
        for r in sorted((r for r in ar if r["arm"] == "hdl"), key=lambda r: r["seed"]):
            recs = read_refreshes(r["run_dir"])[-last:]
            if not recs:
                continue
            q = {k: [rec.get(f"hdl/{k}") for rec in recs] for k in
                 ("injected_acc", "logit_acc_equal_injected", "injected_coverage", "logit_coverage") + _BALANCED}
            per_seed.append(q)
            b = base.get(r["seed"])
            diff = (r["test_acc_final"] - b["test_acc_final"]) if b and b.get("test_acc_final") is not None \
                and r.get("test_acc_final") is not None else None
            body.append(" | ".join([f"| {alg}", str(r["seed"]), "–" if diff is None else f"{100 * diff:+.1f}",
                                    " / ".join(str(rec["it"]) for rec in recs)]
                                   + [" / ".join(_pct(v) for v in q[k]) for k in q if k not in _BALANCED]
                                   + ["yes" if _labels_hold(q) else "no"]
                                   + [" / ".join(_pct(v) for v in q[k]) for k in _BALANCED]) + " |")
        if per_seed:
            mean = {k: [float(np.mean([s[k][i] if s[k][i] is not None else np.nan for s in per_seed]))
                        for i in range(min(len(s[k]) for s in per_seed))] for k in per_seed[0]}
            verdicts.append(f"{alg} {'yes' if _labels_hold(mean) else 'no'}")
            if all(v is not None for s in per_seed for k in _BALANCED for v in s[k]):
                balanced.append(f"{alg} {'yes' if _labels_hold(mean, _BALANCED) else 'no'}")
    if not body:
        return []
    held = sum(v.endswith("yes") for v in verdicts)
    lines = ["What training injected at the last refreshes (per HDL run; values at each refresh, "
             "separated by /):", ""] + head + body + \
        ["", f"Labels at least as accurate as the model's at equal coverage, with at least its thresholded "
             f"coverage, at each of the last {last} refreshes (means over seeds): {held} of {len(verdicts)} "
             f"algorithms ({', '.join(verdicts)})."]
    if balanced:
        lines += ["", f"The same in class-balanced accuracy (algorithms whose runs all record it): "
                      f"{sum(v.endswith('yes') for v in balanced)} of {len(balanced)} algorithms "
                      f"({', '.join(balanced)})."]
    return lines + [""]


_BALANCED = ("injected_balanced_acc", "logit_balanced_acc_equal_injected")


def _labels_hold(q: Dict[str, List[Optional[float]]],
                 acc: Tuple[str, str] = ("injected_acc", "logit_acc_equal_injected")) -> bool:
    """At every refresh of ``q``: injected ``acc[0]`` >= the model's ``acc[1]`` on as many samples
    and injected coverage >= the model's thresholded coverage (a missing or NaN figure fails)."""
    vals = list(zip(q[acc[0]], q[acc[1]], q["injected_coverage"], q["logit_coverage"]))
    return bool(vals) and all(None not in v and np.isfinite(v).all() and v[0] >= v[1] and v[2] >= v[3]
                              for v in vals)


def write_table(grid, rows: Sequence[Dict[str, Any]], floors: Dict[str, List[Dict[str, float]]],
                plots: Dict[str, List[str]], n_cells: int, path: str) -> None:
    lines = [f"# Benchmark: {grid.name}", ""]
    if grid.description:
        lines += [grid.description.strip(), ""]
    lines += [f"{len(rows)} of {n_cells} runs finished. Test accuracy (%) at the checkpoint with the best "
              "validation accuracy (\"@best val\") and at the end of training: mean ± sample std over seeds "
              "(number of seeds). HDL − base: the per-seed paired difference over the seeds both arms finished. "
              "Pool columns: HDL's labels at the last refresh (accuracy on the unlabeled samples it labeled, and "
              "their share of the unlabeled set) and the accuracy of the model's most confident pseudo-labels "
              "on as many unlabeled samples.", ""]
    for setting in grid.settings:
        srows = [r for r in rows if r["setting"] == setting.name]
        lines += [f"## {setting.name} ({setting.describe()})", ""]
        if not srows:
            lines += ["No finished runs yet.", ""]
            continue
        fl = floors.get(setting.name)
        if fl:
            lines += [f"Floors on the same splits ({len(fl)} split(s)): logistic regression on the labeled images "
                      f"{_stat([f['logreg'] for f in fl])}, LabelSpreading (kNN, raw pixels) "
                      f"{_stat([f['labelspreading'] for f in fl])}.", ""]
        lines += ["| algorithm | base @best val | HDL @best val | HDL − base | base final | HDL final | HDL − base final "
                  "| base balanced | HDL balanced | HDL pool acc | HDL pool coverage | logits @ equal coverage |",
                  "|---|" + "---|" * 11]
        for alg in grid.algorithms:
            ar = [r for r in srows if r["algorithm"] == alg]
            if not ar:
                continue
            b = [r for r in ar if r["arm"] == "base"]
            h = [r for r in ar if r["arm"] == "hdl"]
            col = lambda rs, k: _stat([r.get(k) for r in rs])  # noqa: E731
            lines.append(" | ".join([f"| {alg}", col(b, "test_acc_at_best_val"), col(h, "test_acc_at_best_val"),
                                     _paired(ar, "test_acc_at_best_val"), col(b, "test_acc_final"),
                                     col(h, "test_acc_final"), _paired(ar, "test_acc_final"),
                                     col(b, "test_balanced_acc_at_best_val"), col(h, "test_balanced_acc_at_best_val"),
                                     col(h, "hdl_pool_acc"), col(h, "hdl_pool_coverage"),
                                     col(h, "hdl_logit_acc_equal_coverage")]) + " |")
        lines.append("")
        lines += injected_lines(grid.algorithms, srows)
        for name in plots.get(setting.name, []):
            lines += [f"![{name[len(setting.name) + 1:-4]}](plots/{name})", ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


def write_report(grid, cells) -> Dict[str, Any]:
    """Write results.csv, floors.json, the plots and table.md for the finished ``cells`` (the
    peers section is :func:`.peers.write_peer_section`'s); returns the paths and, under
    ``rows``, the results rows of every finished cell."""
    os.makedirs(grid.out_dir, exist_ok=True)
    all_rows = [r for r in (cell_row(c) for c in cells if c.refused is None) if r is not None]
    # the HDL − base tables and plots: the base and hdl arms without an imbalance algorithm
    core = [c for c in cells if c.arm in ("base", "hdl") and c.imb is None]
    rows = [r for r in all_rows if r["arm"] in ("base", "hdl") and not r["imb"]]
    paths = {"results": os.path.join(grid.out_dir, "results.csv"), "table": os.path.join(grid.out_dir, "table.md"),
             "floors": os.path.join(grid.out_dir, "floors.json"), "plots": os.path.join(grid.out_dir, "plots")}
    write_results_csv(all_rows, paths["results"])
    floors = setting_floors(core, paths["floors"], grid.floors_max_unlabeled) if grid.floors else {}
    plots = make_plots(grid, core, paths["plots"]) if rows else {}
    write_table(grid, rows, floors, plots, len(core), paths["table"])
    paths["rows"] = all_rows
    return paths
