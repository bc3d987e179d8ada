"""Blend a labeler's class distribution with a model's class probabilities (pure, for the
training refresh; DASO, CVPR 2022, blends similarity-based and linear pseudo-labels this way).

``blend_distributions(votes, probs, weight)`` returns ``weight * v + (1 - weight) * probs`` row by
row, ``v`` the rows of ``votes`` normalised to sum 1; a row of ``votes`` without mass (a sample the
labeler did not reach) keeps the model's row.  ``weight`` is a float in [0, 1] or a float tensor
(N,) of per-sample weights in [0, 1] (e.g. a calibrated confidence).

``neighbourhood_votes(graph_sims, graph_idx, labels, num_classes, k, rows)`` is the labeler's class
distribution used by ``hdl_inject: blend`` in training: for each of ``rows``, the cosine-weighted
(max(sim, 0)) votes of the labels of its closed neighbourhood, the sample itself (similarity 1)
and its first ``k`` graph neighbours, over the labels after the labeling (given and HDL).

``calibrated_votes(votes, label, confidence)`` replaces a vote distribution's sharpness by the
labeler's calibrated confidence: ``confidence`` on ``label``, the rest ``1 - confidence`` shared by
the other classes in proportion to their votes (evenly where they have none).  A raw vote share is
no probability: on the Fashion-MNIST LT-100 runs its mean winning share was 0.92-0.95 where the
labels were 78-85% correct, while the labeler's held-out calibrated confidence averaged 0.75-0.89;
blended as it is, an overconfident vote outweighs a calibrated model on the samples where the two
disagree (``hdl_inject: blend`` uses this wherever the labeling calibrated its confidence;
blending the raw vote shares, ``hdl_blend_votes: raw``, was removed in 0.2.0).

``neighbourhood_mean(graph_sims, graph_idx, probs, k, rows)`` smooths a model's probabilities
over the graph: for each of ``rows``, the cosine-weighted (max(sim, 0)) mean of the rows of
``probs`` of its closed neighbourhood (itself with weight 1 and its first ``k`` graph neighbours,
the neighbourhood of :func:`neighbourhood_votes`); ``scripts/replay_refresh.py`` scores it
(``ema~graph``, the EMA head's probabilities of every graph row, smoothed).  Replayed on the
Fashion-MNIST LT-100 runs these were the most accurate pool labels of all the columns, and the
most head-biased but one; blended in training (``hdl_blend_model: ema_graph``, with
``hdl_blend_prior: none``) the test accuracy was level with the unadjusted ``ema`` blend and below
the default on all 12 runs (``results/inject_rule/fmnist_lt100_ema_graph_none``), so that option
was removed in 0.2.0.

``balanced_probabilities(probs)`` divides a model's probabilities by their mean over the rows
(the model's own estimate of the class shares) and renormalises each row: the posterior the model
would give under balanced classes, as logit adjustment (Menon et al., ICLR 2021) and debiased
pseudo-labeling (Wang et al., CVPR 2022) make one.  On long-tailed data a model's argmax follows
the head classes; HDL's labels, paced per class, do not, so a blend with the raw probabilities
hands the head's bias back to the pool.  ``hdl_blend_prior: balanced`` blends with these instead
(on balanced data the mean is about uniform and the rows barely move); it is what ``auto`` (the
default) resolves to for MixMatch and in pool mode.  On the Fashion-MNIST LT-100 grid (four bases,
three seeds, ``results/fashion_mnist_offline``) it raised HDL's test accuracy on every one of the 12
runs over the unadjusted blend; where it loses: the plain accuracy of the pool labels on
long-tailed data drops (head samples move to tail classes), below the model's own pseudo-labels.

``class_log_prior(labels, num_classes)`` is the log of the class shares of a set of labels with one
pseudo-count per class (Laplace): with ``hdl_loss_prior: adjusted`` the unlabeled consistency losses
of the base see the logits plus the log prior of the injected pool labels, the logit-adjusted loss
of Menon et al. that long-tailed SSL methods apply to the unlabeled loss with an estimated
unlabeled class distribution (ACR, CVPR 2023): the labels can then follow the pool's class
distribution (the plain-accurate ones on long-tailed data) while the raw logits the model is
evaluated with learn the class-balanced posterior.  The blend then takes the model's probabilities
as that loss trained them, ``softmax(z + log prior)`` with the prior in force since the previous
refresh (:func:`prior_probabilities`).  ``auto`` (the default) resolves to it where the base's
unlabeled loss is a cross-entropy (FixMatch, FreeMatch, ReMixMatch), with ``hdl_blend_prior:
none``.  Why: on the LT-100 grid it raised the test accuracy of those three bases over the balanced
labels on all 9 runs (+0.7 to +4.5 points) and its injected labels were ahead of the model's most
confident pseudo-labels at the last two refreshes (``results/fashion_mnist_offline/
fmnist_lt_100_loss_prior``); for MixMatch, whose unlabeled loss is a squared error on
probabilities (no consistency argument for the shifted logits there), it lost 2.3-6.2 points on
all 3 seeds, and MixMatch keeps the balanced labels.  Use ``none`` for both where the test set is
as long-tailed as the training set.

*Ours* (not from the HDL paper; after DASO): the blend runs once per refresh on the pool, with one
fixed weight (0.5: neither source is trusted more a priori; no label is available to tune it), not
per step with DASO's class-distribution-aware weight, so the train step stays free of host reads
and every process of a multi-process run computes the same pool.
"""

from __future__ import annotations

from typing import Tuple, Union

import torch


def _neighbours(graph_sims: torch.Tensor, graph_idx: torch.Tensor, k: int,
                rows: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` (>= 1, clamped to K) graph neighbours of ``rows`` (int64 (R, k), -1 =
    missing) and their weights max(sim, 0) (float32 (R, k), 0 for a missing one), after checking
    that ``graph_sims`` / ``graph_idx`` are both (M, K)."""
    if graph_sims.shape != graph_idx.shape or graph_idx.dim() != 2:
        raise ValueError(f"graph_sims and graph_idx must both have shape (M, K), got {tuple(graph_sims.shape)} "
                         f"and {tuple(graph_idx.shape)}")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be an int >= 1, got {k!r}")
    k = min(k, graph_idx.shape[1])
    nb = graph_idx[rows, :k]
    return nb, torch.where(nb >= 0, graph_sims[rows, :k].float().clamp(min=0), 0.0)


def neighbourhood_votes(graph_sims: torch.Tensor, graph_idx: torch.Tensor, labels: torch.Tensor,
                        num_classes: int, k: int, rows: torch.Tensor) -> torch.Tensor:
    """Float32 (R, C) votes (not normalised) of ``rows`` (int64 (R,) row numbers of the graph):
    ``graph_sims`` float (M, K) / ``graph_idx`` int64 (M, K) the kNN graph (self excluded, -1 =
    missing), ``labels`` int64 (M,) in [-1, C) (-1: no label, no vote), ``k`` >= 1 the columns
    used (clamped to K)."""
    if labels.shape != (graph_idx.shape[0],):
        raise ValueError(f"labels must have shape ({graph_idx.shape[0]},), got {tuple(labels.shape)}")
    nb, w = _neighbours(graph_sims, graph_idx, k, rows)
    nl = torch.where(nb >= 0, labels[nb.clamp(min=0)], -1)
    w = torch.where(nl >= 0, w, 0.0)
    own = labels[rows]
    nl = torch.cat([own[:, None], nl], dim=1)
    w = torch.cat([(own >= 0).float()[:, None], w], dim=1)
    out = torch.zeros(len(rows), num_classes, dtype=torch.float32, device=graph_sims.device)
    return out.scatter_add_(1, nl.clamp(min=0), w)


def neighbourhood_mean(graph_sims: torch.Tensor, graph_idx: torch.Tensor, probs: torch.Tensor, k: int,
                       rows: torch.Tensor) -> torch.Tensor:
    """Float32 (R, C): for each of ``rows`` (int64 (R,) row numbers of the graph), ``probs[row]``
    (weight 1) plus the rows of ``probs`` (float (M, C) >= 0, one per graph row) of its first ``k``
    graph neighbours weighted by max(sim, 0) (-1 = missing, weight 0), divided by the total weight;
    ``graph_sims`` / ``graph_idx`` float / int64 (M, K), ``k`` >= 1 clamped to K."""
    if probs.dim() != 2 or probs.shape[0] != graph_idx.shape[0]:
        raise ValueError(f"probs must have shape ({graph_idx.shape[0]}, C), got {tuple(probs.shape)}")
    nb, w = _neighbours(graph_sims, graph_idx, k, rows)
    p = probs.float()
    total = p[rows] + (w[:, :, None] * p[nb.clamp(min=0)]).sum(dim=1)
    return total / (1.0 + w.sum(dim=1, keepdim=True))


def calibrated_votes(votes: torch.Tensor, label: torch.Tensor, confidence: torch.Tensor) -> torch.Tensor:
    """Float32 (R, C) distributions: ``confidence`` (float (R,), in [0, 1]) on ``label`` (int64
    (R,) in [-1, C)), ``1 - confidence`` over the other classes in proportion to ``votes`` (R, C)
    >= 0 (evenly where they have no vote); a row with ``label < 0`` keeps its normalised votes
    (all zero where it has none, so :func:`blend_distributions` takes the model's row)."""
    if votes.dim() != 2 or label.shape != (votes.shape[0],) or confidence.shape != (votes.shape[0],):
        raise ValueError(f"votes must have shape (R, C) and label, confidence shape (R,), got "
                         f"{tuple(votes.shape)}, {tuple(label.shape)}, {tuple(confidence.shape)}")
    if (votes < 0).any():
        raise ValueError("votes must be >= 0")
    conf = confidence.float()
    if not torch.isfinite(conf).all() or (conf < 0).any() or (conf > 1).any():
        raise ValueError("confidence must lie in [0, 1]")
    c = votes.shape[1]
    has = label >= 0
    onehot = torch.zeros_like(votes, dtype=torch.float32).scatter_(1, label.clamp(min=0)[:, None], 1.0)
    other = votes.float() * (1 - onehot)
    mass = other.sum(dim=1, keepdim=True)
    even = (1 - onehot) / max(c - 1, 1)
    other = torch.where(mass > 0, other / mass.clamp(min=1e-30), even)
    out = conf[:, None] * onehot + (1 - conf)[:, None] * other
    total = votes.float().sum(dim=1, keepdim=True)
    plain = votes.float() / total.clamp(min=1e-30)
    return torch.where(has[:, None], out, plain)


def blend_distributions(votes: torch.Tensor, probs: torch.Tensor,
                        weight: Union[float, torch.Tensor]) -> torch.Tensor:
    """Float32 (N, C) blend of ``votes`` (N, C) >= 0 and ``probs`` (N, C) (rows sum to 1)."""
    if votes.shape != probs.shape or votes.dim() != 2:
        raise ValueError(f"votes and probs must both have shape (N, C), got {tuple(votes.shape)} and "
                         f"{tuple(probs.shape)}")
    if (votes < 0).any():
        raise ValueError("votes must be >= 0")
    w = torch.as_tensor(weight, dtype=torch.float32, device=probs.device)
    if w.dim() not in (0, 1) or (w.dim() == 1 and w.shape[0] != votes.shape[0]):
        raise ValueError(f"weight must be a float or a tensor of shape ({votes.shape[0]},), got shape "
                         f"{tuple(w.shape)}")
    if not torch.isfinite(w).all() or (w < 0).any() or (w > 1).any():
        raise ValueError("weight must lie in [0, 1]")
    mass = votes.float().sum(dim=1, keepdim=True)
    v = votes.float() / mass.clamp(min=1e-30)
    w = w.reshape(-1, 1) if w.dim() == 1 else w
    out = w * v + (1 - w) * probs.float()
    return torch.where(mass > 0, out, probs.float())


def balanced_probabilities(probs: torch.Tensor) -> torch.Tensor:
    """Float32 (N, C): each row of ``probs`` (N, C) >= 0 divided by the column means of
    ``probs`` (the model's estimated class shares; a class no row gives mass keeps 0) and
    renormalised to sum 1 (a row without mass stays 0)."""
    if probs.dim() != 2:
        raise ValueError(f"probs must have shape (N, C), got {tuple(probs.shape)}")
    p = probs.float()
    if not torch.isfinite(p).all() or (p < 0).any():
        raise ValueError("probs must be finite and >= 0")
    if p.shape[0] == 0:
        return p
    share = p.mean(dim=0)
    out = torch.where(share > 0, p / share.clamp(min=1e-30), torch.zeros_like(p))
    return out / out.sum(dim=1, keepdim=True).clamp(min=1e-30)


def class_log_prior(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Float32 (C,): ``log((n_c + 1) / (n + C))``, ``n_c`` the count of class ``c`` among
    ``labels`` (int64, any shape; entries < 0 are ignored), ``n`` their total."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an int >= 1, got {num_classes!r}")
    lab = labels.flatten()
    lab = lab[lab >= 0]
    if len(lab) and int(lab.max()) >= num_classes:
        raise ValueError(f"labels must lie in [-1, {num_classes}), got {int(lab.max())}")
    counts = torch.bincount(lab, minlength=num_classes).float() + 1.0
    return (counts / counts.sum()).log()


def prior_probabilities(probs: torch.Tensor, log_prior: torch.Tensor) -> torch.Tensor:
    """Float32 (N, C): each row of ``probs`` (N, C) >= 0 times ``exp(log_prior)`` (C,),
    renormalised to sum 1 (a row without mass stays 0): ``softmax(z + log_prior)`` for
    ``probs = softmax(z)``."""
    if probs.dim() != 2 or log_prior.shape != (probs.shape[1],):
        raise ValueError(f"probs must have shape (N, C) and log_prior (C,), got {tuple(probs.shape)} "
                         f"and {tuple(log_prior.shape)}")
    p = probs.float() * log_prior.float().to(probs.device).exp()
    return p / p.sum(dim=1, keepdim=True).clamp(min=1e-30)
