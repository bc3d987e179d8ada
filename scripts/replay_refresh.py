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
  calibrated vote distributions (``hdl_blend_votes``) and either model;
* rules measured against the fixed weight (not options of training): ``cal*ema``, the product of
  the calibrated votes and the EMA model's probabilities (a log-linear pool, no weight; a class
  without a neighbour vote gets none), ``cal*ema/prior`` the same divided by the class prior (the
  label frequencies after the labeling, +1 each: the product of two posteriors counts the prior
  twice under conditional independence), and ``cal/ema conf-w``: a per-sample weight
  ``c_v / (c_v + c_m)``, ``c_v`` the labeler's calibrated confidence, ``c_m`` the EMA head's
  largest probability (each source weighted by its own confidence on the sample);

and the mean winning vote share, calibrated confidence and model confidences (how calibrated each
source is).  Means per algorithm (``hdl_<name>`` of the run's config) close the table.

    python scripts/replay_refresh.py RUN_DIR [RUN_DIR ...] [--weight 0.5] [--device cpu] [--out FILE]

The table goes to ``--out`` (written to a temporary file, then renamed) or to stdout.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections import defaultdict

import torch

COLUMNS = ["train", "ema", "hdl", "raw/train", "cal/train", "raw/ema", "cal/ema", "cal*ema", "cal*ema/prior",
           "cal/ema conf-w"]
CONFIDENCES = ["vote share", "calibrated", "train conf", "ema conf"]


@torch.no_grad()
def replay(run_dir: str, weight: float = 0.5, device: str = "cpu") -> dict:
    """Accuracies (%) of the :data:`COLUMNS` and mean :data:`CONFIDENCES` on ``run_dir``'s pool."""
    from hdl.algorithms.run.runner import load_run
    from hdl.blend import blend_distributions, calibrated_votes, neighbourhood_votes
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
    p_ema = alg._ema_probabilities(pool_ids).cpu()
    votes, cal, hdl, truth, known = votes.cpu(), cal.cpu(), hdl.cpu(), truth.cpu(), known.cpu()

    def acc(pred):
        return 100.0 * float((pred[known] == truth[known]).float().mean())

    out = {"train": acc(p_train.argmax(1)), "ema": acc(p_ema.argmax(1)), "hdl": acc(hdl)}
    for vname, v in (("raw", votes), ("cal", cal)):
        for mname, p in (("train", p_train), ("ema", p_ema)):
            out[f"{vname}/{mname}"] = acc(blend_distributions(v, p, weight).argmax(1))
    prod = cal * p_ema
    prod = torch.where(prod.sum(1, keepdim=True) > 0, prod, p_ema)  # no vote at all: the model's row
    out["cal*ema"] = acc(prod.argmax(1))
    given_and_hdl = r.result.labels[r.result.labels >= 0].cpu()
    prior = torch.bincount(given_and_hdl, minlength=alg.num_classes).float() + 1
    out["cal*ema/prior"] = acc((prod / (prior / prior.sum())).argmax(1))
    if conf is not None:
        c_v, c_m = conf[rows].cpu().float(), p_ema.max(1).values
        out["cal/ema conf-w"] = acc(blend_distributions(cal, p_ema, c_v / (c_v + c_m).clamp(min=1e-30)).argmax(1))
    else:
        out["cal/ema conf-w"] = float("nan")
    share = votes / votes.sum(1, keepdim=True).clamp(min=1e-30)
    out["vote share"] = float(share.max(1).values.mean())
    out["calibrated"] = float(conf[rows].mean()) if conf is not None else float("nan")
    out["train conf"] = float(p_train.max(1).values.mean())
    out["ema conf"] = float(p_ema.max(1).values.mean())
    out["algorithm"] = getattr(alg, "base_name", type(alg).__name__)
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
        groups[res["algorithm"]].append(res)
        lines.append(f"| {os.path.basename(os.path.normpath(run))} | "
                     + " | ".join(f"{res[c]:.1f}" for c in COLUMNS)
                     + " | " + " | ".join(f"{res[c]:.3f}" for c in CONFIDENCES) + " |")
        print(lines[-1], file=sys.stderr, flush=True)
    for name, rs in groups.items():
        lines.append(f"| mean {name} ({len(rs)}) | "
                     + " | ".join(f"{sum(r[c] for r in rs) / len(rs):.2f}" for c in COLUMNS)
                     + " | " + " | ".join(f"{sum(r[c] for r in rs) / len(rs):.3f}" for c in CONFIDENCES) + " |")
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
