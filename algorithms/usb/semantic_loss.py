"""Semantic supervised losses and mistake-severity metrics for the ``hdl_*`` algorithms.

``SemanticLossMixin`` sits right after ``HDLMixin`` in the bases
(``HDLFixMatch(HDLMixin, SemanticLossMixin, DeviceMixin, FixMatch)``).  The key
``semantic_loss`` chooses what replaces the base algorithm's supervised cross-entropy on the
labeled batch (ground truth plus, with ``hdl_use: pool``, HDL-labeled samples); the unlabeled
loss stays the base's own, on the ordinary class logits:

* ``none``: the base algorithm's loss, unchanged (nothing is wrapped).
* ``sal``: S-AL soft targets (:mod:`hdl.sal`).  ``self.ce_loss`` is wrapped so that, in the
  labeled-batch call only, hard targets ``y`` become ``Q[y]`` and soft targets ``T`` become
  ``T @ Q`` (``Q`` = the (C, C) S-AL target matrix, rows summing to 1).  MixMatch/ReMixMatch
  pass ``mixed_y = lam * onehot(y_a) + (1 - lam) * t_b`` (MixUp of labeled one-hot targets with
  other samples' targets); since ``T -> T @ Q`` is linear, ``mixed_y @ Q`` is exactly the MixUp
  (same ``lam``, same pairs) of the S-AL targets ``Q[y_a]`` and ``t_b @ Q``.  When ``Q`` is the
  identity (flat tree, or ``sal_beta: 1``) nothing is wrapped and the loss is the base's, bitwise.
* ``hace``: hierarchy-aware cross-entropy (:mod:`hdl.hace`).  The leaf logits are the model's
  ordinary class logits; an extra linear head on the labeled batch's features adds one logit per
  internal node (none for a flat tree).  Supervised loss = HACE loss of the concatenated node
  logits: ``total = base_total - ce_sup + hace_sup``.  The HACE prediction (the leaf with the
  largest aggregated probability) is the argmax of the class logits, so predicting from the class
  logits is HACE's own prediction.  FixMatch/FreeMatch only: MixMatch/ReMixMatch compute the
  supervised loss on MixUp-ed inputs whose features are not returned (ValueError; use ``sal``).
* ``pmi``: PMI label embeddings (:mod:`hdl.pmi`).  A linear head maps the labeled batch's
  features to a C-dimensional embedding trained with ``1 - cos`` against the label's PMI
  embedding: ``total = base_total + pmi_weight * pmi_loss``.  The class logits keep their
  cross-entropy: the PMI decoder is a separate head, and without it the class logits (which
  make the pseudo-labels and the predictions) would receive no supervision at all.  Works with
  all four bases (the unmixed labeled features exist in all of them).

The supervised loss is a role, as in :mod:`.seam`: around the base ``train_step`` the wrapped
``ce_loss`` is armed with the labeled batch size B, and the **first** ``self.ce_loss`` call of
the step is the supervised loss (so in all four bases; their unlabeled losses use
``consistency_loss``); every later call passes through unchanged.  A first call with other than
B rows, or a step without the call, raises RuntimeError.

PMI co-occurrence: the targets start as the PMI of a diagonal co-occurrence (one-hot
embeddings).  At every HDL refresh (a refresh consumer, see
:meth:`hdl.algorithms.usb.hdl_wrapper.HDLMixin.register_refresh_consumer`) they are rebuilt from
class co-occurrence inside the first
``pmi_k`` neighbours of the kNN graph that refresh just built (no second search), counting pairs
of samples that both carry a ground-truth or new HDL-pool label.  The new
embedding is rotated onto the previous one (orthogonal Procrustes: same cosines, so the same
targets up to rotation) so the head does not chase arbitrary eigenvector signs.  With
``hdl_enable: False`` the bank stays empty and the targets stay one-hot.

The extra heads are submodules of the model (``model.semantic_head``): their parameters are in
the optimizer, the EMA and every checkpoint (the PMI embedding is a buffer, saved too).  Class
prediction, evaluation and best-checkpoint selection use the ordinary class logits.

Every evaluation adds mistake-severity metrics of the run's hierarchy
(:func:`hdl.severity.mistake_severity`, keys ``<split>/sev/l<level>/top<k>_error``,
``_mistake_dist``, ``_dist`` for k in 1, 5; floats, never NaN); they reach ``results.json``.

``semantic_tree``: ``auto`` (the shipped tree named like the dataset, else flat), ``flat``,
``wordnet`` (:func:`hdl.hierarchy.from_wordnet`), a shipped tree name, or a .yaml/.yml/.json path.
"""
from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from typing import Any, Callable, Dict, NamedTuple, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

from hdl import config_keys
from hdl.hace import hace_aggregation_matrix, hace_loss, hace_node_targets, hace_target_matrix
from hdl.hierarchy import Hierarchy, load_hierarchy, shipped_trees
from hdl.pmi import cooccurrence_from_knn, pmi_embeddings, pmi_loss, pmi_targets, ppmi
from hdl.sal import sal_similarity_from_hierarchy, sal_similarity_from_vectors, sal_targets
from hdl.severity import mistake_severity

from hdl.config_keys import SEMANTIC_LOSSES, SEMANTIC_SOURCES  # noqa: E402,F401  (re-exported)
MIX_BASES = ("mixmatch", "remixmatch")
HEAD_NAME = "semantic_head"


@dataclass(frozen=True)
class SemanticSettings:
    """The semantic keys, read once from USB's ``args`` and validated."""

    loss: str = "none"
    tree: str = "auto"
    source: str = "hierarchy"
    sal_beta: float = 0.4
    hace_d: float = 0.7
    pmi_weight: float = 1.0
    pmi_k: int = 10

    @classmethod
    def from_args(cls, args) -> "SemanticSettings":
        """Read the semantic keys (each checked by :mod:`hdl.config_keys`), then the rules between them."""
        v = {name: key.validate(getattr(args, name, key.default)) for name, key in config_keys.keys(["semantic"]).items()}
        s = cls(v["semantic_loss"], v["semantic_tree"], v["semantic_source"], v["sal_beta"], v["hace_d"],
                v["pmi_weight"], v["pmi_k"])
        if s.source != "hierarchy" and s.loss != "sal":
            raise ValueError(f"semantic_source: {s.source!r} (word vectors) is used only by semantic_loss 'sal', "
                             f"got semantic_loss {s.loss!r}; use semantic_source 'hierarchy'")
        tree_ok = s.tree in ("auto", "flat", "wordnet") or s.tree in shipped_trees() or \
            s.tree.lower().endswith((".yaml", ".yml", ".json"))
        if not tree_ok:
            raise ValueError(f"semantic_tree: expected 'auto', 'flat', 'wordnet', one of {shipped_trees()} or a "
                             f".yaml/.yml/.json path, got {s.tree!r}")
        return s


def resolve_hierarchy(spec: str, dataset: str, class_names: Sequence[str]) -> Hierarchy:
    """The class tree named by ``semantic_tree`` (see the module docstring), leaves in class order."""
    names = [str(c) for c in class_names]
    if spec == "auto":
        spec = dataset if dataset in shipped_trees() else "flat"
    if spec.lower().endswith((".yaml", ".yml", ".json")) and not os.path.isfile(spec):
        raise ValueError(f"semantic_tree: no tree file at {spec!r}")
    try:
        return load_hierarchy(spec, names)
    except ValueError as e:
        raise ValueError(f"semantic_tree: {spec!r}: {e}") from e


# ---------------------------------------------------------------------- heads
class HACEInternalHead(nn.Module):
    """One logit per internal non-root node from the features; the leaf logits are the class logits.

    ``forward(class_logits (B, C), feat (B, F)) -> node logits (B, N-1)`` in the node order of
    :mod:`hdl.hierarchy` (classes first).  ``loss(node_logits, targets)``: HACE loss for (B,) int
    labels or (B, C) float class distributions.
    """

    def __init__(self, num_features: int, hierarchy: Hierarchy, d: float = 0.7, eps: float = 1e-8):
        super().__init__()
        n_internal = hierarchy.num_nodes - 1 - hierarchy.num_classes
        self.eps = eps
        self.fc = nn.Linear(num_features, n_internal) if n_internal > 0 else None
        self.register_buffer("target_matrix", hace_target_matrix(hierarchy, d), persistent=False)
        self.register_buffer("aggregation", hace_aggregation_matrix(hierarchy), persistent=False)

    def forward(self, class_logits: torch.Tensor, feat: torch.Tensor) -> torch.Tensor:
        z = class_logits.float()
        if self.fc is None:
            return z
        return torch.cat([z, self.fc(feat.to(self.fc.weight.dtype)).float()], dim=1)

    def loss(self, node_logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return hace_loss(node_logits, hace_node_targets(targets, self.target_matrix), self.aggregation, self.eps)


class PMIHead(nn.Module):
    """Linear map of the features to a C-dim label embedding; ``embedding`` (C, C) float32 buffer
    holds the PMI targets (columns past the rank are zero), saved with the model."""

    def __init__(self, num_features: int, num_classes: int):
        super().__init__()
        self.fc = nn.Linear(num_features, num_classes)
        self.register_buffer("embedding", torch.eye(num_classes))

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.fc(feat.to(self.fc.weight.dtype))

    def loss(self, feat: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return pmi_loss(self(feat).float(), pmi_targets(labels, self.embedding.float()))


@torch.no_grad()
def pmi_embedding_from_graph(neighbors: torch.Tensor, labels: torch.Tensor, num_classes: int,
                             previous: Optional[torch.Tensor] = None) -> torch.Tensor:
    """(C, C) float32 PMI embedding from a kNN graph (N, k) and labels (N,) (-1 = unknown).

    Columns past the number of positive PMI eigenvalues are zero.  With ``previous`` (C, C) the
    result is rotated by the orthogonal R minimising ``||E R - previous||`` (same row cosines).
    """
    e = pmi_embeddings(ppmi(cooccurrence_from_knn(neighbors.cpu(), labels.cpu(), num_classes)))
    full = torch.zeros(num_classes, num_classes, dtype=torch.float64)
    full[:, : e.shape[1]] = e
    if previous is not None:
        u, _, vt = torch.linalg.svd(full.T @ previous.double().cpu())
        full = full @ (u @ vt)
    return full.float()


class _Captured(NamedTuple):
    logits: torch.Tensor
    targets: torch.Tensor
    loss: torch.Tensor


class SupervisedLossTap:
    """Stands in for ``algorithm.ce_loss``: transforms and records the labeled-batch call.

    ``arm(rows)`` before the base train step; the first call after it is the supervised role (the
    first ``ce_loss`` call of all four bases' train steps): its logits must have ``rows`` rows
    (else RuntimeError), it gets ``targets_fn(targets, logits)`` applied (when given) and is
    recorded; later calls pass through.  ``disarm()`` returns the record (or None) and lets every
    call pass through again.
    """

    def __init__(self, inner: Callable, targets_fn: Optional[Callable] = None):
        self.inner = inner
        self.targets_fn = targets_fn
        self._rows: Optional[int] = None
        self._captured: Optional[_Captured] = None

    def arm(self, rows: int) -> None:
        self._rows, self._captured = rows, None

    def disarm(self) -> Optional[_Captured]:
        cap, self._rows, self._captured = self._captured, None, None
        return cap

    def __call__(self, logits, targets, reduction="none"):
        if self._rows is None or self._captured is not None:
            return self.inner(logits, targets, reduction=reduction)
        if logits.shape[0] != self._rows:
            rows, self._rows = self._rows, None
            raise RuntimeError(f"semantic loss: the first ce_loss call of the train step (the supervised role) has "
                               f"{logits.shape[0]} rows, expected the labeled batch's {rows}")
        if self.targets_fn is not None:
            targets = self.targets_fn(targets, logits)
        loss = self.inner(logits, targets, reduction=reduction)
        self._captured = _Captured(logits, targets, loss)
        return loss


def sal_target_fn(q: torch.Tensor) -> Callable:
    """``targets -> Q[targets]`` for (B,) int targets, ``targets @ Q`` for (B, C) float ones."""
    cache: Dict[Any, torch.Tensor] = {}

    def fn(targets: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        key = (logits.device, logits.dtype)
        if key not in cache:
            cache[key] = q.to(device=logits.device, dtype=logits.dtype)
        m = cache[key]
        if targets.ndim == 1 and not targets.is_floating_point():
            return m[targets]
        if targets.shape != logits.shape:
            raise ValueError(f"S-AL: soft targets must have the logits' shape {tuple(logits.shape)}, "
                             f"got {tuple(targets.shape)}")
        return targets.to(m.dtype) @ m
    return fn


# ---------------------------------------------------------------------- mixin
class SemanticLossMixin:
    """Semantic supervised losses and severity metrics (see the module docstring)."""

    def __init__(self, args, net_builder, tb_log=None, logger=None, **kwargs):
        self.semantic = SemanticSettings.from_args(args)
        base = getattr(self, "base_name", "")
        if self.semantic.loss == "hace" and base in MIX_BASES:
            raise ValueError(f"semantic_loss: 'hace' is not available with {base}: its supervised loss is computed on "
                             f"MixUp-ed inputs whose features (needed for the internal-node logits) the base step does "
                             f"not return; use semantic_loss 'sal' (MixUp of S-AL targets is exact) or 'pmi', or a "
                             f"fixmatch/freematch base")
        self.hierarchy: Optional[Hierarchy] = None
        self.sal_matrix: Optional[torch.Tensor] = None
        self._sem_tap: Optional[SupervisedLossTap] = None
        self.pmi_log = []
        super().__init__(args, net_builder, tb_log=tb_log, logger=logger, **kwargs)
        if self.semantic.loss == "sal":
            q = self.sal_matrix
            identity = torch.equal(q, torch.eye(q.shape[0], dtype=q.dtype))
            if not identity:
                self._sem_tap = SupervisedLossTap(self.ce_loss, sal_target_fn(q))
        elif self.semantic.loss in ("hace", "pmi"):
            self._sem_tap = SupervisedLossTap(self.ce_loss)
        if self._sem_tap is not None:
            self.ce_loss = self._sem_tap
        if self.semantic.loss == "pmi" and hasattr(self, "register_refresh_consumer"):
            self.register_refresh_consumer("pmi", lambda alg, event: alg.refresh_pmi(event.refresh.graph_idx,
                                                                                    event.labels) and None)
        self.print_fn(f"semantic loss: {self.semantic.loss}; hierarchy: {self.hierarchy!r}")

    # ------------------------------------------------------------------ construction
    def set_model(self):
        model = super().set_model()
        names = list(self.split_info.class_names) if self.split_info is not None else [str(c) for c in range(self.num_classes)]
        if len(names) != self.num_classes:
            raise ValueError(f"num_classes: {self.num_classes} but the dataset has {len(names)} class names")
        self.hierarchy = resolve_hierarchy(self.semantic.tree, self.settings.dataset, names)
        if self.semantic.loss == "sal":
            if self.semantic.source == "hierarchy":
                s = sal_similarity_from_hierarchy(self.hierarchy)
            else:
                from hdl.wordvec import class_name_vectors
                s = sal_similarity_from_vectors(class_name_vectors(names, self.semantic.source))
            self.sal_matrix = sal_targets(s, self.semantic.sal_beta).float()
        elif self.semantic.loss in ("hace", "pmi"):
            width = getattr(model, "num_features", None)
            if not isinstance(width, int) or width < 1:
                raise ValueError(f"semantic_loss: {self.semantic.loss!r} needs a network with an int attribute "
                                 f"'num_features' (the feature width); {type(model).__name__} has none")
            head = (HACEInternalHead(width, self.hierarchy, self.semantic.hace_d) if self.semantic.loss == "hace"
                    else PMIHead(width, self.num_classes))
            model.add_module(HEAD_NAME, head)
        return model

    def set_ema_model(self):
        head = getattr(self.model, HEAD_NAME, None)
        if head is None:
            return super().set_ema_model()
        del self.model._modules[HEAD_NAME]  # the base builds a plain network and copies the weights
        try:
            ema_model = super().set_ema_model()
        finally:
            self.model.add_module(HEAD_NAME, head)
        ema_model.add_module(HEAD_NAME, copy.deepcopy(head))
        return ema_model

    # ------------------------------------------------------------------ step
    def train_step(self, *args, **kwargs):
        tap = self._sem_tap
        if tap is None:
            return super().train_step(*args, **kwargs)
        y_lb = kwargs["y_lb"] if "y_lb" in kwargs else args[1]
        rows = int(y_lb.shape[0])
        tap.arm(rows)
        try:
            out_dict, log_dict = super().train_step(*args, **kwargs)
        finally:
            cap = tap.disarm()
        if cap is None:
            raise RuntimeError(f"semantic_loss {self.semantic.loss!r}: the base train step of {type(self).__name__} "
                               f"made no ce_loss call on the labeled batch ({rows} rows)")
        if self.semantic.loss in ("hace", "pmi"):
            feat = out_dict.get("feat", {}).get("x_lb") if isinstance(out_dict.get("feat"), dict) else None
            if not torch.is_tensor(feat) or feat.shape[0] != rows:
                raise RuntimeError(f"semantic_loss {self.semantic.loss!r}: out_dict['feat']['x_lb'] with {rows} rows "
                                   f"is missing from the base train step")
            head = getattr(self.model, HEAD_NAME)
            total = out_dict["loss"]
            if self.semantic.loss == "hace":
                new_sup = head.loss(head(cap.logits, feat), cap.targets)
                total = total - cap.loss + new_sup
            else:
                extra = head.loss(feat, y_lb)
                new_sup = cap.loss + self.semantic.pmi_weight * extra
                total = total + self.semantic.pmi_weight * extra
                log_dict["train/pmi_loss"] = float(extra.item())
            out_dict["loss"] = total
            log_dict["train/sup_loss"] = float(new_sup.item())
            log_dict["train/total_loss"] = float(total.item())
        return out_dict, log_dict

    # ------------------------------------------------------------------ PMI targets
    @torch.no_grad()
    def refresh_pmi(self, graph_idx: torch.Tensor, labels: torch.Tensor) -> Dict[str, float]:
        """Rebuild ``model.semantic_head.embedding`` from the class co-occurrence among the first
        ``pmi_k`` neighbours of HDL's refresh graph (pairs count where both ends are labeled)."""
        k = min(self.semantic.pmi_k, graph_idx.shape[1])
        stats = {"semantic/pmi_samples": float((labels >= 0).sum())}
        if k >= 1 and int((labels >= 0).sum()) >= 2:
            head = getattr(self.model, HEAD_NAME)
            e = pmi_embedding_from_graph(graph_idx[:, :k], labels, self.num_classes, head.embedding)
            for m in (self.model, self.ema_model):
                getattr(m, HEAD_NAME).embedding.copy_(e.to(head.embedding.device))
            stats["semantic/pmi_rank"] = float((e.abs().sum(dim=0) > 0).sum())
        self.pmi_log.append({"it": self.it + 1, **stats})
        if isinstance(getattr(self, "log_dict", None), dict):
            self.log_dict.update(stats)
        return stats

    # ------------------------------------------------------------------ evaluation
    def extra_eval_metrics(self, eval_dest: str, logits: np.ndarray, y_true: np.ndarray) -> Dict[str, float]:
        out = dict(super().extra_eval_metrics(eval_dest, logits, y_true))
        ok = y_true >= 0
        if self.hierarchy is not None and ok.any():
            out.update(mistake_severity(torch.from_numpy(np.ascontiguousarray(logits[ok], dtype=np.float32)),
                                        torch.from_numpy(y_true[ok].astype(np.int64)), self.hierarchy,
                                        topk=(1, 5), prefix=f"{eval_dest}/sev"))
        return out
