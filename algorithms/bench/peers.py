"""The peers section of a grid's ``table.md``: every arm of an algorithm side by side (base, ``la``,
USB's imbalance algorithms, HDL, HDL on top of a peer), refused pairs with their reason, the
paired per-seed differences of HDL against each other arm and against the best of them, accuracy
on the head / middle / tail thirds of the classes, and a validation-accuracy plot with each arm's
best and final points marked.

Appended to ``table.md`` by :func:`write_peer_section` (``hdl-bench`` calls it after
:func:`.report.write_report`) for grids with an ``la`` arm or imbalance algorithms.
"""
from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .report import mean_by_x, per_class_accuracy, save_figure, val_curve

ACC_KEYS = (("test_acc_at_best_val", "@best val"), ("test_acc_final", "final"))


def arm_order(cells) -> List[str]:
    """Labels of the arms of one setting and algorithm in table order: base, la, the base's peers,
    hdl, HDL on top of the peers."""
    rank = {"base": 0, "la": 1, "hdl": 3}

    def key(c):  # a stable sort: the peers keep the grid's order
        return rank[c.arm] + (1 if c.imb else 0)

    seen: Dict[str, Any] = {}
    for c in sorted(cells, key=key):
        seen.setdefault(c.label, c)
    return list(seen)


def class_thirds(num_classes: int, lb_counts: Optional[Sequence[int]], ulb_counts: Optional[Sequence[int]]
                 ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Head / middle / tail class indices: the classes ordered by labeled count, then unlabeled
    count, then index (most first), split into three near-equal parts (the first the largest)."""
    lb = np.zeros(num_classes) if lb_counts is None else np.asarray(lb_counts, dtype=float)
    ulb = np.zeros(num_classes) if ulb_counts is None else np.asarray(ulb_counts, dtype=float)
    order = sorted(range(num_classes), key=lambda c: (-lb[c], -ulb[c], c))
    parts = np.array_split(np.array(order, dtype=np.int64), 3)
    return parts[0], parts[1], parts[2]


def setting_thirds(setting, num_classes: int):
    """:func:`class_thirds` of a grid setting's split counts."""
    from hdl.data.splits import make_imbalance_counts

    def counts(total, ratio):
        if total is None:
            return None
        if (ratio or 1) == 1:
            return [total // num_classes] * num_classes
        return make_imbalance_counts(total, num_classes, ratio)

    ulb = ([setting.ulb_num_per_class] * num_classes if setting.ulb_num_per_class is not None
           else counts(setting.ulb_num_labels, setting.ulb_imb_ratio))
    return class_thirds(num_classes, counts(setting.num_labels, setting.lb_imb_ratio), ulb)


def paired(a: Dict[int, float], b: Dict[int, float]) -> Optional[Tuple[float, float, List[float]]]:
    """Mean, standard error and per-seed values (seed order) of ``a - b`` over the seeds both have
    (percentage points); None without a common seed.  The standard error is the sample std over
    sqrt(n) (0 for one seed)."""
    seeds = sorted(set(a) & set(b))
    if not seeds:
        return None
    d = [100.0 * (a[s] - b[s]) for s in seeds]
    se = float(np.std(d, ddof=1) / np.sqrt(len(d))) if len(d) > 1 else 0.0
    return float(np.mean(d)), se, d


def _fmt_paired(p) -> str:
    if p is None:
        return "–"
    mean, se, d = p
    return f"{mean:+.1f} ± {se:.1f} ({len(d)}; " + " / ".join(f"{x:+.1f}" for x in d) + ")"


def _mean_std(values: Sequence[float]) -> str:
    v = 100.0 * np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=float)
    if len(v) == 0:
        return "–"
    return f"{v.mean():.1f} ± {(v.std(ddof=1) if len(v) > 1 else 0.0):.1f} ({len(v)})"


def best_peer(by_label: Dict[str, Dict[int, Dict[str, Any]]], hdl_label: str, key: str) -> Optional[str]:
    """The non-HDL arm with the highest mean ``key`` over the seeds it shares with ``hdl_label``
    (ties: table order); None when none shares a seed."""
    hdl_seeds = set(by_label.get(hdl_label, {}))
    best, best_v = None, -np.inf
    for label, runs in by_label.items():
        if label.startswith("hdl_"):
            continue
        seeds = sorted(hdl_seeds & set(runs))
        vals = [runs[s].get(key) for s in seeds]
        if not seeds or any(v is None for v in vals):
            continue
        if np.mean(vals) > best_v:
            best, best_v = label, float(np.mean(vals))
    return best


def peer_lines(grid, cells, rows: Sequence[Dict[str, Any]], thirds_fn=None) -> List[str]:
    """The peers section (markdown lines) of ``table.md``; ``thirds_fn(cell, num_classes)``: the
    per-class test accuracy of a finished cell (default :func:`.report.per_class_accuracy`)."""
    thirds_fn = thirds_fn or (lambda cell, c: per_class_accuracy(cell.run_dir, c))
    by_key = {(r["setting"], r["label"], r["seed"]): r for r in rows}
    lines = ["## Peers", "",
             "Every arm of an algorithm side by side: test accuracy (%) at the best-validation checkpoint and at "
             "the end (mean ± sample std over seeds, number of seeds), and at the best-validation checkpoint on "
             "the head / middle / tail thirds of the classes (ordered by labeled count). `la_<alg>`: the base "
             "with HDL's logit adjustment, the prior from the EMA model's predictions on HDL's schedule, HDL's "
             "labels off. `<alg>_<peer>`: USB's imbalance algorithm over the base; `hdl_<alg>_<peer>`: HDL on top "
             "of it. HDL − X: paired per-seed difference in points, mean ± standard error (seeds; per seed).", ""]
    for setting in grid.settings:
        scells = [c for c in cells if c.setting.name == setting.name]
        if not scells:
            continue
        lines += [f"### {setting.name} ({setting.describe()})", ""]
        num_classes = setting.num_classes
        thirds = setting_thirds(setting, num_classes) if num_classes else None
        for alg in grid.algorithms:
            acells = [c for c in scells if c.algorithm == alg]
            if not acells:
                continue
            labels = arm_order(acells)
            by_label: Dict[str, Dict[int, Dict[str, Any]]] = defaultdict(dict)
            for c in acells:
                r = by_key.get((setting.name, c.label, c.seed))
                if r is not None:
                    by_label[c.label][c.seed] = r
            lines += [f"**{alg}**", "", "| arm | @best val | final | head | middle | tail | runs |",
                      "|---|---|---|---|---|---|---|"]
            for label in labels:
                lc = [c for c in acells if c.label == label]
                if lc[0].refused is not None:
                    lines.append(f"| {label} | refused: {lc[0].refused} | | | | | 0 of {len(lc)} |")
                    continue
                runs = by_label.get(label, {})
                third_cols = ["–", "–", "–"]
                if thirds is not None and runs:
                    per = [thirds_fn(c, num_classes) for c in lc if c.seed in runs]
                    per = [p for p in per if p is not None]
                    if per:
                        third_cols = [_mean_std([float(np.nanmean(p[t])) for p in per]) for t in thirds]
                lines.append("| " + " | ".join([label, _mean_std([r.get("test_acc_at_best_val") for r in runs.values()]),
                                                _mean_std([r.get("test_acc_final") for r in runs.values()]),
                                                *third_cols, f"{len(runs)} of {len(lc)}"]) + " |")
            lines.append("")
            hdl_label = "hdl_" + alg
            if by_label.get(hdl_label):
                diff_rows = []
                for key, name in ACC_KEYS:
                    acc = {lab: {s: r.get(key) for s, r in runs.items() if r.get(key) is not None}
                           for lab, runs in by_label.items()}
                    best = best_peer(by_label, hdl_label, key)
                    cols = [_fmt_paired(paired(acc[hdl_label], acc[lab])) for lab in labels
                            if not lab.startswith("hdl_") and lab in acc]
                    best_col = "–" if best is None else f"{best}: {_fmt_paired(paired(acc[hdl_label], acc[best]))}"
                    diff_rows.append((name, cols, best_col))
                others = [lab for lab in labels if not lab.startswith("hdl_") and lab in by_label]
                lines += ["| HDL − | " + " | ".join(others) + " | best of them |",
                          "|---|" + "---|" * (len(others) + 1)]
                for name, cols, best_col in diff_rows:
                    lines.append(f"| {name} | " + " | ".join(cols) + f" | {best_col} |")
                lines.append("")
                for label in labels:  # HDL on top of a peer against that peer alone
                    if label.startswith(hdl_label + "_") and by_label.get(label):
                        peer = label[len("hdl_"):]
                        acc = {lab: {s: r.get("test_acc_at_best_val") for s, r in by_label.get(lab, {}).items()}
                               for lab in (label, peer)}
                        lines.append(f"- {label} − {peer} @best val: {_fmt_paired(paired(acc[label], acc[peer]))}")
                lines.append("")
        lines += [f"![val_acc_marked](plots/{setting.name}_peers_val_acc.png)", ""]
    return lines


def peer_plots(grid, cells, plot_dir: str) -> List[str]:
    """Per setting: validation accuracy over iterations of every arm (mean over seeds, one panel
    per algorithm), each arm's best point marked with a star and its final point with a circle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(plot_dir, exist_ok=True)
    written: List[str] = []
    for setting in grid.settings:
        done = [c for c in cells if c.setting.name == setting.name and c.status() == "done"]
        algs = [a for a in grid.algorithms if any(c.algorithm == a for c in done)]
        if not algs:
            continue
        fig, axes = plt.subplots(1, len(algs), figsize=(6.5 * len(algs), 4.5), squeeze=False)
        for ax, alg in zip(axes[0], algs):
            acells = [c for c in done if c.algorithm == alg]
            cmap = plt.get_cmap("tab10")
            for i, label in enumerate(arm_order(acells)):
                cs = [c for c in acells if c.label == label]
                x, y = mean_by_x([val_curve(c.run_dir) for c in cs])
                if not len(x):
                    continue
                color = cmap(i % 10)
                ax.plot(x, 100 * y, color=color, linestyle="-" if label.startswith("hdl_") else "--",
                        label=f"{label} (n={len(cs)})")
                b = int(np.argmax(y))
                ax.plot(x[b], 100 * y[b], marker="*", markersize=12, color=color)
                ax.plot(x[-1], 100 * y[-1], marker="o", markersize=6, color=color, fillstyle="none")
            ax.set(xlabel="iteration", ylabel="validation accuracy (%)",
                   title=f"{setting.name}, {alg} (star: best, circle: final)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        save_figure(fig, plot_dir, f"{setting.name}_peers_val_acc.png", written)
    return written


def write_peer_section(grid, cells, paths: Dict[str, Any]) -> bool:
    """Append the peers section to ``paths['table']`` and draw its plots, for a grid with an
    ``la`` arm or imbalance algorithms; False (nothing written) for other grids."""
    if "la" not in grid.arms and tuple(grid.imb_algorithms) == ("none",):
        return False
    rows = paths.get("rows") or []
    if rows:
        peer_plots(grid, cells, paths["plots"])
    with open(paths["table"], "a") as f:
        f.write("\n\n" + "\n".join(peer_lines(grid, cells, rows)))
    return True
