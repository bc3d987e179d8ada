"""Property tests (hypothesis) of :func:`hdl.labeling.hdl_label` over random kNN graphs: given
labels never change, the result does not depend on the order of the samples (without the class
quota, whose documented tie-break is the sample index), levels are monotone, and every label is
justified by the documented vote rule, recomputed here in plain numpy."""
import numpy as np
import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, settings, strategies as st  # noqa: E402

from hdl.knn import knn_graph  # noqa: E402
from hdl.labeling import hdl_label  # noqa: E402

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)


@st.composite
def problems(draw):
    """Continuous random embeddings (no similarity ties), C classes, at least one given label."""
    n = draw(st.integers(4, 40))
    d = draw(st.integers(2, 6))
    c = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 2 ** 31 - 1))
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, 2, (c, d))
    truth = rng.integers(0, c, n)
    x = (centers[truth] + rng.normal(0, 1, (n, d))).astype(np.float32)
    given_mask = rng.random(n) < draw(st.floats(0.05, 0.6))
    given_mask[rng.integers(0, n)] = True
    labels = np.where(given_mask, truth, -1).astype(np.int64)
    k_max = draw(st.integers(1, min(n - 1, 12)))
    k = draw(st.one_of(st.just("adaptive"), st.integers(1, k_max)))
    weighting = draw(st.sampled_from(["uniform", "cosine", "cosine^gamma"]))
    return x, labels, c, k_max, k, weighting


def graph(x, k_max):
    x = torch.nn.functional.normalize(torch.from_numpy(x), dim=1)
    sims, idx = knn_graph(x, k_max, backend="torch")
    return x, sims, idx


def run(x, labels, c, k_max, k, weighting, **opts):
    xt, sims, idx = graph(x, k_max)
    opts = {"class_quota": None, "min_pairs": 2, "k_min": 1, **opts}
    res = hdl_label(sims, idx, torch.from_numpy(labels), c, k=k, feats=xt, weighting=weighting, **opts)
    return res, sims.numpy(), idx.numpy()


@SETTINGS
@given(problems(), st.sampled_from([None, 0.75]))
def test_given_labels_never_change(p, quota):
    x, labels, c, k_max, k, weighting = p
    res, _, _ = run(x, labels, c, k_max, k, weighting, class_quota=quota, fallback="prototype")
    g = labels >= 0
    assert (res.labels.numpy()[g] == labels[g]).all()
    assert (res.level.numpy()[g] == 0).all() and (res.agreement.numpy()[g] == 1).all()
    assert (res.level.numpy()[~g] != 0).all()


@SETTINGS
@given(problems(), st.integers(0, 2 ** 31 - 1))
def test_order_of_the_samples_does_not_matter(p, seed):
    x, labels, c, k_max, k, weighting = p
    perm = np.random.default_rng(seed).permutation(len(labels))
    a, _, _ = run(x, labels, c, k_max, k, weighting)
    b, _, _ = run(x[perm], labels[perm], c, k_max, k, weighting)
    assert a.chosen_k == b.chosen_k and a.rounds == b.rounds
    assert (a.labels.numpy()[perm] == b.labels.numpy()).all()
    assert (a.level.numpy()[perm] == b.level.numpy()).all()
    np.testing.assert_allclose(a.agreement.numpy()[perm], b.agreement.numpy(), rtol=1e-6)


def vote(nl, sims, weighting, c, gamma=3.0):
    """The documented vote: weights 1 / max(sim, 0) / max(sim, 0)**gamma; all-zero weights count
    uniformly; the largest class weight wins; ties go to the class of the most similar labeled
    neighbour.  Returns (winner, agreement)."""
    has = nl >= 0
    w = np.ones_like(sims) if weighting == "uniform" else np.maximum(sims, 0).astype(np.float64)
    if weighting == "cosine^gamma":
        w = w ** gamma
    w = np.where(has, w, 0.0)
    if w.sum() <= 0:
        w = has.astype(np.float64)
    votes = np.zeros(c)
    np.add.at(votes, nl[has], w[has])
    best = votes.max()
    tied = np.flatnonzero(np.isclose(votes, best, rtol=1e-5, atol=0))
    winner = next(int(l_) for l_ in nl[has] if l_ in tied)
    return winner, votes[winner] / votes.sum()


@SETTINGS
@given(problems(), st.integers(1, 3))
def test_levels_are_monotone_and_every_label_follows_the_vote_rule(p, min_votes):
    """level_quantile 0, no quota and the plain vote (diffusion_weight 0; with a diffusion blend
    the winner also weighs the diffusion posterior, hdl.labeling step 3): round r labels exactly
    the unlabeled samples with at least ``min_votes`` neighbours (among the top chosen_k) labeled
    before round r, each with the vote of those neighbours."""
    x, labels, c, k_max, k, weighting = p
    res, sims, idx = run(x, labels, c, k_max, k, weighting, level_quantile=0.0, min_votes=min_votes,
                         diffusion_weight=0.0)
    out, level, agr = res.labels.numpy(), res.level.numpy(), res.agreement.numpy()
    kk = res.chosen_k
    assert ((level == -1) == (out == -1)).all()
    assert level.max(initial=0) <= res.rounds
    for r in range(1, res.rounds + 1):
        before = (level >= 0) & (level < r)
        for u in np.flatnonzero((level == -1) | (level >= r)):
            nb = idx[u, :kk]
            ok = nb >= 0
            nl = np.where(ok & before[np.where(ok, nb, 0)], out[np.where(ok, nb, 0)], -1)
            n_votes = int((nl >= 0).sum())
            if level[u] == r:
                assert n_votes >= min_votes, (u, r)
                winner, share = vote(nl, sims[u, :kk], weighting, c)
                assert out[u] == winner, (u, r)
                assert agr[u] == pytest.approx(share, rel=1e-5, abs=1e-6)
            else:  # not labeled in round r: it was no candidate then
                assert n_votes < min_votes, (u, r, level[u])
