"""Replay the last refresh of saved HDL runs and score the blend's inputs against the truth.

For each run folder (written by ``hdl-train`` / ``hdl-bench``, an ``hdl_*`` algorithm on a data set
with known labels) the latest checkpoint is loaded, the labeling of the refresh is recomputed from
the saved bank (as :meth:`HDLMixin.refresh` does), the training set is embedded again with the EMA
model, and the accuracy on the unlabeled pool samples (those a train step has seen) is printed for:

* ``train``: the training model's head on each sample's latest weak-view features (the diagnostics'
  buffer; ``hdl_blend_model: train``);
* ``ema``: the EMA model's head on the EMA embedding (``hdl_blend_model: ema``);
* ``hdl``: HDL's labels;
* ``raw/train``, ``cal/train``, ``raw/ema``, ``cal/ema``: the blend at ``--weight`` with raw or
  calibrated vote distributions (training blends the calibrated ones; the raw ones were
  ``hdl_blend_votes: raw``, removed in 0.2.0) and either model;
* rules measured against the fixed weight (not options of training): ``cal*ema``, the product of
  the calibrated votes and the EMA model's probabilities (a log-linear pool, no weight; a class
  without a neighbour vote gets none), ``cal*ema/prior`` the same divided by the class prior (the
  label frequencies after the labeling, +1 each: the product of two posteriors counts the prior
  twice under conditional independence), and ``cal/ema conf-w``: a per-sample weight
  ``c_v / (c_v + c_m)``, ``c_v`` the labeler's calibrated confidence, ``c_m`` the EMA head's
  largest probability (each source weighted by its own confidence on the sample);
* ``ema~graph``: the EMA head's probabilities averaged over each sample's closed neighbourhood in
  the refresh's graph (the sample and its first ``chosen k`` neighbours, cosine weights
  max(sim, 0), the neighbourhood of the votes; ``hdl.blend.neighbourhood_mean``, what
  ``hdl_blend_model: ema_graph`` blended until 0.2.0): the model's predictions smoothed by the graph;
* ``ema/prior`` and ``cal/ema/prior``: the EMA head's probabilities divided by their own mean
  over the pool (the model's estimate of the class shares; a balanced posterior, as logit
  adjustment makes one), alone and blended at ``--weight`` with the calibrated votes;

and the mean winning vote share, calibrated confidence and model confidences (how calibrated each
source is).  A second table gives the class-balanced accuracy (mean of the per-class recalls on
the same samples) of every column: the test sets of USB's long-tailed protocols are balanced, so
it is the figure that matches them, where the accuracy of a long-tailed pool rewards labels that
favour the head classes.  Means per algorithm (``hdl_<name>`` of the run's config) close the table.

    python scripts/replay_refresh.py RUN_DIR [RUN_DIR ...] [--weight 0.5] [--device cpu] [--out FILE]

The table goes to ``--out`` (written to a temporary file, then renamed) or to stdout.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections import defaultdict

import torch

COLUMNS = ["train", "ema", "hdl", "raw/train", "cal/train", "raw/ema", "cal/ema", "cal*ema", "cal*ema/prior",
           "cal/ema conf-w", "ema~graph", "ema/prior", "cal/ema/prior"]
CONFIDENCES = ["vote share", "calibrated", "train conf", "ema conf"]


@torch.no_grad()
def replay(run_dir: str, weight: float = 0.5, device: str = "cpu") -> dict:
    """Accuracies (%) of the :data:`COLUMNS` (class-balanced: ``"bal " + column``) and mean
    :data:`CONFIDENCES` on ``run_dir``'s pool."""
    from hdl.algorithms.run.runner import load_run
    from hdl.blend import (balanced_probabilities, blend_distributions, calibrated_votes, neighbourhood_mean,
                           neighbourhood_votes)
    from hdl.config_keys import KEYS
    from hdl.labeling import balanced_accuracy_se
    from hdl.refresh import refresh as refresh_labels

    alg = load_run(run_dir, "latest", device)
    if not hasattr(alg, "hdl"):
        raise ValueError(f"{run_dir}: not an hdl_* run")
    ids, labels, _ = alg.refresh_inputs()  # as the run's refresh: the saved bank, the given labels
    r = refresh_labels(alg.bank.features()[ids], labels, alg.num_classes, normalize=False, **alg.hdl.labeling)
    rows = torch.nonzero(r.new).flatten()
    pool_ids = ids[rows]
    diag = alg.hdl_state.diagnostics
    seen = diag.seen(pool_ids)
    rows, pool_ids = rows[seen], pool_ids[seen]
    truth = alg._train_y[pool_ids]
    known = truth >= 0
    if not known.any():
        raise ValueError(f"{run_dir}: no known labels among the unlabeled samples")
    hdl = r.result.labels[rows]
    votes = neighbourhood_votes(r.graph_sims, r.graph_idx, r.result.labels, alg.num_classes,
                                max(1, int(r.result.chosen_k)), rows)
    conf = r.result.confidence
    cal = calibrated_votes(votes, hdl, conf[rows]) if conf is not None else votes
    p_train = diag.probabilities(alg.model, alg.device, pool_ids).cpu()
    alg._embed_with_ema()  # after the labeling: re-embeds the bank and keeps the norms, as a refresh does
    p_all = alg._ema_probabilities(ids).cpu()  # every row of the graph, in its order
    p_ema = p_all[rows.cpu()]
    votes, cal, hdl, truth, known = votes.cpu(), cal.cpu(), hdl.cpu(), truth.cpu(), known.cpu()

    preds = {"train": p_train.argmax(1), "ema": p_ema.argmax(1), "hdl": hdl}
    for vname, v in (("raw", votes), ("cal", cal)):
        for mname, p in (("train", p_train), ("ema", p_ema)):
            preds[f"{vname}/{mname}"] = blend_distributions(v, p, weight).argmax(1)
    prod = cal * p_ema
    prod = torch.where(prod.sum(1, keepdim=True) > 0, prod, p_ema)  # no vote at all: the model's row
    preds["cal*ema"] = prod.argmax(1)
    given_and_hdl = r.result.labels[r.result.labels >= 0].cpu()
    prior = torch.bincount(given_and_hdl, minlength=alg.num_classes).float() + 1
    preds["cal*ema/prior"] = (prod / (prior / prior.sum())).argmax(1)
    if conf is not None:
        c_v, c_m = conf[rows].cpu().float(), p_ema.max(1).values
        preds["cal/ema conf-w"] = blend_distributions(cal, p_ema, c_v / (c_v + c_m).clamp(min=1e-30)).argmax(1)
    preds["ema~graph"] = neighbourhood_mean(r.graph_sims.cpu(), r.graph_idx.cpu(), p_all,
                                            max(1, int(r.result.chosen_k)), rows.cpu()).argmax(1)
    adjusted = balanced_probabilities(p_ema)  # as hdl_blend_prior: balanced
    preds["ema/prior"] = adjusted.argmax(1)
    preds["cal/ema/prior"] = blend_distributions(cal, adjusted, weight).argmax(1)

    t = truth[known]
    out = {}
    for name in COLUMNS:
        if name not in preds:
            out[name] = out["bal " + name] = float("nan")
            continue
        pk = preds[name][known]
        out[name] = 100.0 * float((pk == t).float().mean())
        out["bal " + name] = 100.0 * balanced_accuracy_se(pk, t)[0]
    share = votes / votes.sum(1, keepdim=True).clamp(min=1e-30)
    out["vote share"] = float(share.max(1).values.mean())
    out["calibrated"] = float(conf[rows].mean()) if conf is not None else float("nan")
    out["train conf"] = float(p_train.max(1).values.mean())
    out["ema conf"] = float(p_ema.max(1).values.mean())
    out["algorithm"] = getattr(alg, "base_name", type(alg).__name__)
    # runs of other priors than the defaults resolve to for this base: their own means, marked in the run column
    default = dataclasses.replace(alg.hdl, blend_prior=KEYS["hdl_blend_prior"].default,
                                  loss_prior=KEYS["hdl_loss_prior"].default).resolved(out["algorithm"])
    out["variant"] = ", ".join(f"hdl_{k} {getattr(alg.hdl, k)}" for k in ("blend_prior", "loss_prior")
                               if getattr(alg.hdl, k) != getattr(default, k))
    if out["variant"]:
        out["algorithm"] += ", " + out["variant"]
    out["samples"] = int(known.sum())
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders of hdl_* runs")
    p.add_argument("--weight", type=float, default=0.5, help="blend weight of the vote distribution")
    p.add_argument("--device", default="cpu")
    p.add_argument("--out", default=None, help="write the table here (default: stdout)")
    args = p.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    head = "| run | " + " | ".join(COLUMNS + CONFIDENCES) + " |"
    lines = [head, "|---" * (len(COLUMNS) + len(CONFIDENCES) + 1) + "|"]
    groups = defaultdict(list)
    for run in args.runs:
        res = replay(run, args.weight, args.device)
        res["run"] = os.path.basename(os.path.normpath(run)) + (f" ({res['variant']})" if res["variant"] else "")
        groups[res["algorithm"]].append(res)
        lines.append(f"| {res['run']} | "
                     + " | ".join(f"{res[c]:.1f}" for c in COLUMNS)
                     + " | " + " | ".join(f"{res[c]:.3f}" for c in CONFIDENCES) + " |")
        print(lines[-1], file=sys.stderr, flush=True)
    for name, rs in groups.items():
        lines.append(f"| mean {name} ({len(rs)}) | "
                     + " | ".join(f"{sum(r[c] for r in rs) / len(rs):.2f}" for c in COLUMNS)
                     + " | " + " | ".join(f"{sum(r[c] for r in rs) / len(rs):.3f}" for c in CONFIDENCES) + " |")
    lines += ["", "Class-balanced accuracy (%) of the same columns:", "",
              "| run | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 1) + "|"]
    for name, rs in groups.items():
        for res in rs:
            lines.append(f"| {res['run']} | " + " | ".join(f"{res['bal ' + c]:.1f}" for c in COLUMNS) + " |")
        lines.append(f"| mean {name} ({len(rs)}) | "
                     + " | ".join(f"{sum(r['bal ' + c] for r in rs) / len(rs):.2f}" for c in COLUMNS) + " |")
    text = "\n".join(lines) + "\n"
    if args.out:
        tmp = args.out + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, args.out)
    else:
        print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
