"""Per-refresh diagnostics of an ``hdl_*`` run, and HDL's training state with its checkpoint format.

:class:`RefreshDiagnostics` keeps the weak-view features of the unlabeled samples from the train
steps; at a refresh the current classifier head turns them into the model's own pseudo-labels, so
the HDL pool can be compared with them at equal coverage.  :class:`HDLState` owns the bank, the
pool and the diagnostics together and is the one place that saves, versions and restores them
(checkpoint entry ``"hdl"``; checkpoints written before it load too).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Dict, Mapping

import torch

from hdl.bank import EmbeddingBank
from hdl.blend import prior_probabilities
from hdl.labeling import balanced_accuracy_se
from hdl.pool import LabelPool
from hdl.refresh import Refresh

HDL_STATE_VERSION = 2


@dataclass(frozen=True)
class RefreshEvent:
    """What a refresh consumer receives: ``ids`` int64 (M,) sample indices of the refresh rows,
    ``refresh`` the :class:`hdl.refresh.Refresh` over those rows, ``labels`` int64 (M,) given plus
    new pool labels (-1 elsewhere), ``pool_ids`` the sample indices that entered the pool."""

    ids: torch.Tensor
    refresh: Refresh
    labels: torch.Tensor
    pool_ids: torch.Tensor


@torch.no_grad()
def head_probabilities(model, device, features: Callable[[torch.Tensor], torch.Tensor], ids: torch.Tensor,
                       chunk: int = 4096) -> torch.Tensor:
    """Float32 (len(ids), C) softmax of ``model``'s classifier head (``only_fc=True``) on
    ``features(ids_chunk)``, ``chunk`` samples at a time (an empty ``ids`` gives a (0, 0) tensor)."""
    out = []
    for start in range(0, len(ids), chunk):
        logits = model(features(ids[start:start + chunk]).to(device), only_fc=True)
        out.append(torch.softmax(logits.float(), dim=-1))
    return torch.cat(out) if out else torch.zeros(0, 0)


class RefreshDiagnostics:
    """raw_feat float32 (N, D) latest weak-view features; logit_pred int64 (N,) / logit_conf
    float32 (N,) the classifier head's prediction on them at the last refresh (-1 / 0: none)."""

    def __init__(self, num_samples: int, dim: int, device: torch.device | str = "cpu"):
        self.raw_feat = torch.zeros(num_samples, dim, dtype=torch.float32, device=device)
        self.logit_pred = torch.full((num_samples,), -1, dtype=torch.long, device=device)
        self.logit_conf = torch.zeros(num_samples, dtype=torch.float32, device=device)

    @torch.no_grad()
    def record(self, ids: torch.Tensor, feats: torch.Tensor) -> None:
        self.raw_feat[ids.to(self.raw_feat.device)] = feats.detach().float().to(self.raw_feat.device)

    def seen(self, ids: torch.Tensor) -> torch.Tensor:
        """bool (len(ids),): the samples a train step has recorded features of."""
        return self.raw_feat[ids].abs().sum(dim=1) > 0

    @torch.no_grad()
    def probabilities(self, model, device, ids: torch.Tensor) -> torch.Tensor:
        """Float32 (len(ids), C) softmax of the classifier head on the samples' latest features."""
        return head_probabilities(model, device, lambda i: self.raw_feat[i], ids)

    @torch.no_grad()
    def _predict(self, model, device, ids: torch.Tensor) -> None:
        """Set ``logit_pred`` / ``logit_conf`` of ``ids`` from :meth:`probabilities`."""
        if len(ids) == 0:
            return
        conf, pred = self.probabilities(model, device, ids).max(dim=-1)
        self.logit_pred[ids] = pred.to(self.logit_pred.device)
        self.logit_conf[ids] = conf.to(self.logit_conf.device)

    @torch.no_grad()
    def compute(self, alg, event: RefreshEvent) -> Dict[str, float]:
        """Pool size, coverage, accuracy (where the truth is known), per-class counts; the model's
        thresholded pseudo-labels (coverage, accuracy, accuracy at the pool's coverage); and the
        labels training injects (the pool entries passing ``hdl_min_agreement``): coverage,
        accuracy, and the model's accuracy on as many of its most confident samples; both also
        class-balanced (``hdl/injected_balanced_acc``, ``hdl/logit_balanced_acc_equal_injected``:
        the mean over the true classes among those samples of the share labeled right; on a
        long-tailed pool plain accuracy favours labels that follow the head classes, and USB's
        long-tailed test sets are balanced)."""
        pool = alg.pool
        pool_ids = event.pool_ids.to(alg._train_y.device)
        ulb_set = torch.unique(alg._ulb_global)
        ulb_set = ulb_set[~torch.isin(ulb_set, alg._lb_global)]
        truth = alg._train_y[pool_ids]
        known = truth >= 0
        res = event.refresh.result
        out = {"hdl/pool_size": float(len(pool_ids)), "hdl/k": float(res.chosen_k), "hdl/rounds": float(res.rounds),
               "hdl/pool_coverage": float(len(pool_ids)) / max(1, len(ulb_set))}
        if event.refresh.graph.recall is not None:  # an approximate graph: its measured recall
            out["hdl/graph_recall"] = event.refresh.graph.recall
        labels = pool.labels.to(pool_ids.device)
        if known.any():
            out["hdl/pool_acc"] = float((labels[pool_ids][known] == truth[known]).float().mean())
        counts = torch.bincount(labels[pool_ids], minlength=alg.num_classes)
        for c in range(alg.num_classes):
            out[f"hdl/pool_class_{c}"] = float(counts[c])
        cand = ulb_set[(alg._train_y[ulb_set] >= 0) & alg.bank.filled.to(ulb_set.device)[ulb_set]]
        if len(cand):
            self._predict(alg.model, alg.device, cand)
            thr = float(getattr(alg, "p_cutoff", 0.95) or 0.95)
            conf, pred, y = self.logit_conf[cand], self.logit_pred[cand], alg._train_y[cand]
            sel = conf >= thr
            out["hdl/logit_coverage"] = float(sel.float().mean())
            out["hdl/logit_acc"] = float((pred[sel] == y[sel]).float().mean()) if sel.any() else float("nan")
            n_eq = int(min(len(pool_ids), len(cand)))
            if n_eq > 0:
                top = torch.argsort(conf, descending=True)[:n_eq]
                out["hdl/logit_acc_equal_coverage"] = float((pred[top] == y[top]).float().mean())
        # what training uses: the pool labels that pass hdl_min_agreement, against the model's most
        # confident pseudo-labels on as many samples
        used = pool_ids[pool.agreement.to(pool_ids.device)[pool_ids] >= alg.hdl.min_agreement]
        out["hdl/injected_coverage"] = float(len(used)) / max(1, len(ulb_set))
        t_used = alg._train_y[used]
        if (t_used >= 0).any():
            out["hdl/injected_acc"] = float((labels[used][t_used >= 0] == t_used[t_used >= 0]).float().mean())
            out["hdl/injected_balanced_acc"] = balanced_accuracy_se(labels[used][t_used >= 0], t_used[t_used >= 0])[0]
        if len(cand) and len(used):
            top = torch.argsort(conf, descending=True)[: min(len(used), len(cand))]
            out["hdl/logit_acc_equal_injected"] = float((pred[top] == y[top]).float().mean())
            out["hdl/logit_balanced_acc_equal_injected"] = balanced_accuracy_se(pred[top], y[top])[0]
            lp = getattr(alg, "_loss_log_prior", None)
            if lp is not None:  # hdl_loss_prior adjusted: also the model as its unlabeled loss saw it
                conf_a, pred_a = prior_probabilities(self.probabilities(alg.model, alg.device, cand), lp).max(dim=1)
                pred_a = pred_a.to(y.device)
                top = torch.argsort(conf_a.to(y.device), descending=True)[: min(len(used), len(cand))]
                out["hdl/logit_prior_acc_equal_injected"] = float((pred_a[top] == y[top]).float().mean())
                out["hdl/logit_prior_balanced_acc_equal_injected"] = balanced_accuracy_se(pred_a[top], y[top])[0]
        return out

    def state_dict(self) -> Dict[str, torch.Tensor]:
        return {"raw_feat": self.raw_feat.clone(), "logit_pred": self.logit_pred.clone(),
                "logit_conf": self.logit_conf.clone()}

    def load_state_dict(self, state: Mapping[str, Any], where: str = "hdl.diagnostics") -> None:
        for name in ("raw_feat", "logit_pred", "logit_conf"):
            if name not in state:
                raise ValueError(f"{where}: checkpoint entry {name!r} is missing")
            cur = getattr(self, name)
            if not torch.is_tensor(state[name]) or state[name].shape != cur.shape:
                raise ValueError(f"{where}.{name}: expected shape {tuple(cur.shape)}, got "
                                 f"{tuple(getattr(state[name], 'shape', ()))}")
            cur.copy_(state[name].to(cur.device))


class HDLState:
    """HDL's state across steps: the embedding bank (float32 or float16 rows, ``hdl_bank_dtype``),
    the label pool, the diagnostics.  The bank's rows are saved in the dtype they are held in and
    load into a bank of either dtype (cast), so the format (version 2) does not depend on it."""

    def __init__(self, num_samples: int, dim: int, device: torch.device | str = "cpu",
                 bank_dtype: torch.dtype = torch.float32):
        self.bank = EmbeddingBank(num_samples, dim, device=device, dtype=bank_dtype)
        self.pool = LabelPool(num_samples, device=device)
        self.diagnostics = RefreshDiagnostics(num_samples, dim, device=device)

    def state_dict(self) -> Dict[str, Any]:
        return {"version": HDL_STATE_VERSION, "bank": self.bank.state_dict(), "pool": self.pool.state_dict(),
                "diagnostics": self.diagnostics.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any], where: str = "checkpoint['hdl']") -> None:
        """Load :meth:`state_dict` output or the flat ``hdl`` entry of earlier checkpoints
        (``bank``, ``pool_label``, ``pool_agreement``, ``raw_feat``, ``logit_pred``, ``logit_conf``)."""
        if "bank" not in state:
            raise ValueError(f"{where}: checkpoint entry 'bank' is missing")
        version = state.get("version", 1)
        if version not in (1, HDL_STATE_VERSION):
            raise ValueError(f"{where}: HDL state version {version!r} is not supported (this version reads 1 and "
                             f"{HDL_STATE_VERSION})")
        self.bank.load_state_dict(state["bank"])
        if version == 1:
            self.pool.load_state_dict(state, where)
            self.diagnostics.load_state_dict(state, where)
        else:
            for name in ("pool", "diagnostics"):
                if name not in state:
                    raise ValueError(f"{where}: checkpoint entry {name!r} is missing")
            self.pool.load_state_dict(state["pool"], f"{where}['pool']")
            self.diagnostics.load_state_dict(state["diagnostics"], f"{where}['diagnostics']")
