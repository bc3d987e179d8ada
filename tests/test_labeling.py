import inspect
import math

import pytest
import torch
import torch.nn.functional as F

from hdl.knn import knn_graph, knn_search
from hdl.labeling import (DEFAULT_OPTIONS, OPTION_TABLE, balanced_accuracy_se, choose_k_heldout,
                          class_weights, estimate_prior_em, hdl_label, heldout_split, knn_vote, one_se_choice,
                          smallest_class_size,
                          validate_options)

NEG = float("-inf")


def graph(rows):
    """rows: list of [(neighbour, sim), ...] padded with (-1, -inf) to the same width."""
    width = max(len(r) for r in rows)
    idx = torch.full((len(rows), width), -1, dtype=torch.int64)
    sims = torch.full((len(rows), width), NEG)
    for i, r in enumerate(rows):
        for j, (n, s) in enumerate(r):
            idx[i, j], sims[i, j] = n, s
    return sims, idx


def L(*v):
    return torch.tensor(v, dtype=torch.int64)


# the mechanics of levels and votes alone: no quota, every level at once, the paper's plain
# neighbour vote (diffusion_weight 0; the default blends in a diffusion posterior)
PLAIN = dict(class_quota=None, level_quantile=0.0, diffusion_weight=0.0)


def test_chain_propagates_one_step_per_round():
    # 0 (labeled) - 1 - 2 - 3: the label reaches 2 in round 2 and 3 in round 3
    sims, idx = graph([[(1, .9), (2, .5)], [(0, .9), (2, .8)], [(1, .8), (3, .7)], [(2, .7)]])
    res = hdl_label(sims, idx, L(0, -1, -1, -1), 2, k=2, **PLAIN)
    assert res.labels.tolist() == [0, 0, 0, 0]
    assert res.level.tolist() == [0, 1, 2, 3]
    assert res.rounds == 3 and res.chosen_k == 2
    assert res.agreement.tolist() == [1.0, 1.0, 1.0, 1.0]
    one = hdl_label(sims, idx, L(0, -1, -1, -1), 2, k=2, max_rounds=1, **PLAIN)
    assert one.labels.tolist() == [0, 0, -1, -1] and one.level.tolist() == [0, 1, -1, -1]


def test_highest_level_first_and_tie_break():
    # 2 has two labeled neighbours (m = 2), 3 has one (m = 1), 4 has none yet
    sims, idx = graph([[(2, .5), (3, .5)], [(2, .5), (3, .5)],
                       [(1, .8), (0, .8)], [(0, .6), (4, .5)], [(3, .5), (2, .4)]])
    labels = L(0, 1, -1, -1, -1)
    # diffusion_weight 0: the plain vote's tie rule (the default's diffusion posterior breaks ties)
    res = hdl_label(sims, idx, labels, 2, k=2, level_quantile=1.0, class_quota=None, diffusion_weight=0.0)
    # round 1: only sample 2 (level 2); a 1-1 tie goes to the first listed neighbour's class (1)
    # round 2: 3 and 4 both have one labeled neighbour (0 and 2)
    assert res.level.tolist() == [0, 0, 1, 2, 2]
    assert res.labels.tolist() == [0, 1, 1, 0, 1]
    assert math.isclose(float(res.agreement[2]), 0.5)
    # level_quantile=0 labels 2 and 3 together in round 1
    res0 = hdl_label(sims, idx, labels, 2, k=2, **PLAIN)
    assert res0.level.tolist() == [0, 0, 1, 1, 2]


@pytest.mark.parametrize("weighting,expected,agree", [
    ("uniform", 1, 2 / 3), ("cosine", 0, 0.9 / 1.5), ("cosine^gamma", 0, 0.729 / (0.729 + 2 * 0.027))])
def test_weighting(weighting, expected, agree):
    sims, idx = graph([[(3, 1.)], [(3, 1.)], [(3, 1.)], [(0, .9), (1, .3), (2, .3)]])
    res = hdl_label(sims, idx, L(0, 1, 1, -1), 2, k=3, weighting=weighting, gamma=3.0, **PLAIN)
    assert int(res.labels[3]) == expected
    assert math.isclose(float(res.agreement[3]), agree, rel_tol=1e-5)


def test_negative_similarities_fall_back_to_counts():
    sims, idx = graph([[(2, 1.)], [(2, 1.)], [(0, -.2), (1, -.1)]])
    res = hdl_label(sims, idx, L(0, 1, -1), 2, k=2, weighting="cosine", **PLAIN)
    assert int(res.labels[2]) == 0 and math.isclose(float(res.agreement[2]), 0.5)


def test_sentinels_and_missing_neighbours():
    # sample 3 has no labeled neighbour and sentinels; sample 2 only one real neighbour
    sims, idx = graph([[(2, .9)], [(2, .1)], [(0, .9)], [(-1, NEG)]])
    sims[2, 0] = .9
    res = hdl_label(sims, idx, L(0, 1, -1, -1), 2, k=1, **PLAIN)
    assert res.labels.tolist() == [0, 1, 0, -1]
    assert res.level.tolist() == [0, 0, 1, -1]
    assert float(res.agreement[3]) == 0.0


def test_fallbacks():
    # 0 labeled class 0, 1 labeled class 1; sample 3 sees only 2 (unlabeled) within k=1,
    # class 1 only at rank 2
    sims, idx = graph([[(2, .9), (3, .1)], [(3, .5), (2, .1)], [(0, .9), (3, .2)], [(2, .6), (1, .5)]])
    labels = L(0, 1, -1, -1)
    none = hdl_label(sims, idx, labels, 2, k=1, fallback="none", **PLAIN)
    assert none.labels.tolist() == [0, 1, 0, 0]  # 3 reached through 2 in round 2
    labels = L(0, 1, -1, -1)
    sims2, idx2 = graph([[(2, .9), (1, .1)], [(0, .1), (2, .1)], [(0, .9), (1, .1)], [(-1, NEG), (1, .5)]])
    none = hdl_label(sims2, idx2, labels, 2, k=1, fallback="none", **PLAIN)
    assert none.labels.tolist() == [0, 1, 0, -1]
    exp = hdl_label(sims2, idx2, labels, 2, k=1, fallback="expand", **PLAIN)
    assert exp.labels.tolist() == [0, 1, 0, 1] and exp.level.tolist() == [0, 0, 1, 2]
    feats = torch.tensor([[1., 0.], [0., 1.], [1., .1], [.2, 1.]])
    proto = hdl_label(sims2, idx2, labels, 2, k=1, fallback="prototype", feats=feats, **PLAIN)
    assert proto.labels.tolist() == [0, 1, 0, 1] and float(proto.agreement[3]) == 0.0
    assert proto.level.tolist() == [0, 0, 1, 2] and proto.rounds == 2
    with pytest.raises(ValueError, match="prototype"):
        hdl_label(sims2, idx2, labels, 2, k=1, fallback="prototype")


def test_class_quota_spreads_rounds():
    sims, idx = graph([[(2, .9)], [(5, .9)], [(0, .9)], [(0, .8)], [(0, .7)], [(1, .9)]])
    labels = L(0, 1, -1, -1, -1, -1)
    free = hdl_label(sims, idx, labels, 2, k=1, level_quantile=0.0, class_quota=None)
    assert free.rounds == 1 and free.labels.tolist() == [0, 1, 0, 0, 0, 1]
    # cap = ceil(0.5 * 4 selected / 2 classes) = 1 per class in round 1, then 1 per round
    q = hdl_label(sims, idx, labels, 2, k=1, level_quantile=0.0, class_quota=0.5)
    assert q.labels.tolist() == free.labels.tolist()
    assert q.level.tolist() == [0, 0, 1, 2, 3, 1] and q.rounds == 3


def test_class_weights_from_vote_and_auto_rule():
    # 2 labels per class; unlabeled points: 3 next to class 0's labels, 1 next to class 1's
    feats = torch.tensor([[1., 0.], [1., .1], [0., 1.], [.1, 1.],
                          [1., .05], [1., .02], [.9, .1], [.05, 1.]])
    labels = L(0, 0, 1, 1, -1, -1, -1, -1)
    w = class_weights(labels, 2, "vote", feats)
    # vote winners: 3 x class 0, 1 x class 1 -> estimated shares (3+1)/6, (1+1)/6 against label
    # shares 1/2, 1/2: ratios 4/3, 2/3, mixed 3:1 with the uniform weight 1
    assert torch.allclose(w, torch.tensor([0.75 * 4 / 3 + 0.25, 0.75 * 2 / 3 + 0.25]))
    assert torch.equal(class_weights(labels, 2, "auto", feats), w)  # balanced labels -> vote
    assert class_weights(labels, 2, "auto", None) is None  # no features -> uniform
    assert class_weights(labels, 2, "uniform", feats) is None
    lt = L(0, 0, 0, 1, -1, -1, -1, -1)  # 3:1 labels are imbalanced -> uniform
    assert class_weights(lt, 2, "auto", feats) is None
    with pytest.raises(ValueError, match="needs feats"):
        class_weights(labels, 2, "vote", None)
    with pytest.raises(ValueError, match="class_prior"):
        class_weights(labels, 2, "prior", feats)


def test_class_quota_follows_class_weights():
    # class 0 has 6 candidates, class 1 has 2; one labeled sample each; k=1, one level
    rows = [[(2, .9)], [(8, .9)]] + [[(0, .9 - .01 * i)] for i in range(6)] + [[(1, .9)], [(1, .8)]]
    sims, idx = graph(rows)
    labels = L(0, 1, *([-1] * 8))
    feats = torch.zeros(10, 2)
    feats[[0] + list(range(2, 8))] = torch.tensor([1., 0.])
    feats[[1, 8, 9]] = torch.tensor([0., 1.])
    # uniform: cap = ceil(0.5 * 8 / 2) = 2 per class in round 1
    uni = hdl_label(sims, idx, labels, 2, k=1, level_quantile=0.0, class_quota=0.5, class_prior="uniform")
    assert (uni.level == 1).sum() == 4
    # estimated shares 7/10, 3/10 vs label shares 1/2: weights 0.75 * 1.4 + 0.25 = 1.3 and
    # 0.75 * 0.6 + 0.25 = 0.7, so caps ceil(4 * 0.65) = 3 and ceil(4 * 0.35) = 2
    vote = hdl_label(sims, idx, labels, 2, k=1, level_quantile=0.0, class_quota=0.5, class_prior="vote",
                     feats=feats)
    assert ((vote.level == 1) & (vote.labels == 0)).sum() == 3
    assert ((vote.level == 1) & (vote.labels == 1)).sum() == 2
    assert vote.labels.tolist() == uni.labels.tolist() == [0, 1] + [0] * 6 + [1, 1]
    with pytest.raises(ValueError, match="class_prior='vote' needs feats"):
        hdl_label(sims, idx, labels, 2, k=1, class_prior="vote")


def test_min_agreement_leaves_unsure_samples():
    sims, idx = graph([[(3, 1.)], [(3, 1.)], [(3, 1.)], [(0, .5), (1, .5), (2, .5)]])
    res = hdl_label(sims, idx, L(0, 1, 1, -1), 2, k=3, min_agreement=0.7, **PLAIN)
    assert int(res.labels[3]) == -1 and res.rounds == 0
    res = hdl_label(sims, idx, L(0, 1, 1, -1), 2, k=3, min_agreement=0.6, **PLAIN)
    assert int(res.labels[3]) == 1


def test_min_votes():
    sims, idx = graph([[(2, .9)], [(2, .9)], [(0, .9), (3, .8)], [(1, .9), (2, .5)]])
    res = hdl_label(sims, idx, L(0, 1, -1, -1), 2, k=2, min_votes=2, **PLAIN)
    assert res.labels.tolist() == [0, 1, -1, -1]


def test_nothing_to_label_returns_input():
    sims, idx = graph([[(1, .9)], [(0, .9)], [(0, .5)]])
    labels = L(0, 1, 1)
    res = hdl_label(sims, idx, labels, 2, k=1)
    assert torch.equal(res.labels, labels) and res.rounds == 0
    assert res.level.tolist() == [0, 0, 0] and res.agreement.tolist() == [1, 1, 1]
    none = hdl_label(sims, idx, L(-1, -1, -1), 2, k=1)
    assert none.labels.tolist() == [-1, -1, -1] and none.level.tolist() == [-1, -1, -1]


def test_k_beyond_graph_and_pool():
    sims, idx = graph([[(1, .9)], [(0, .9)], [(0, .5)]])
    with pytest.raises(ValueError, match="graph width"):
        hdl_label(sims, idx, L(0, -1, -1), 2, k=2)
    # k larger than the labeled pool is fine: 1 labeled sample, graph of width 3
    x = F.normalize(torch.randn(4, 3, generator=torch.Generator().manual_seed(0)), dim=1)
    s, i = knn_graph(x, 5, backend="torch")  # width 5 > N - 1: sentinel columns
    res = hdl_label(s, i, L(1, -1, -1, -1), 2, k=5, **PLAIN)
    assert res.labels.tolist() == [1, 1, 1, 1]


def test_option_validation_names_the_option():
    sims, idx = graph([[(1, .9)], [(0, .9)]])
    labels = L(0, -1)
    for name, bad in [("weighting", "cos"), ("level_quantile", 1.5), ("class_quota", 0),
                      ("k", 0), ("fallback", "nearest"), ("k_min", 0), ("min_pairs", 0), ("max_rounds", 0)]:
        with pytest.raises(ValueError, match=repr(name)):
            hdl_label(sims, idx, labels, 2, **{name: bad})
    with pytest.raises(TypeError, match="unknown"):
        validate_options(alpha=0.9)
    for removed in ("adaptive_rule", "delta", "k_cap", "hierarchy_vote", "class_similarity", "class_groups"):
        with pytest.raises(TypeError, match=f"unknown labeling option.*'{removed}'"):
            validate_options(**{removed: None})
        assert removed not in inspect.signature(hdl_label).parameters
    assert set(DEFAULT_OPTIONS) == set(OPTION_TABLE)
    with pytest.raises(ValueError, match="labels must lie"):
        hdl_label(sims, idx, L(0, 5), 2, k=1)
    with pytest.raises(ValueError, match="graph_idx values"):
        hdl_label(sims, torch.tensor([[1], [7]]), labels, 2, k=1)
    with pytest.raises(ValueError, match="NaN"):
        hdl_label(torch.tensor([[float("nan")], [.9]]), idx, labels, 2, k=1)


def test_knn_vote_baseline():
    feats = torch.tensor([[1., 0.], [0., 1.], [.9, .1], [.1, .9], [1., .05]])
    labels = L(0, 1, -1, -1, 0)
    res = knn_vote(feats, labels, 2, k=1, backend="torch")
    assert res.labels.tolist() == [0, 1, 0, 1, 0] and res.level.tolist() == [0, 0, 1, 1, 0]
    # k beyond the labeled pool: all three labeled samples vote, class 0 wins 2-1
    res = knn_vote(feats, labels, 2, k=10, backend="torch")
    assert res.labels.tolist() == [0, 1, 0, 0, 0]
    assert math.isclose(float(res.agreement[3]), 2 / 3, rel_tol=1e-6)
    same = knn_vote(feats, L(0, 1, 0, 1, 0), 2, k=3)
    assert same.labels.tolist() == [0, 1, 0, 1, 0] and same.rounds == 0


# ---------------------------------------------------------------- a star graph (also tests/test_labeling_blend.py)
def _star(neighbour_labels):
    """Sample 0 unlabeled; its neighbours 1..n carry ``neighbour_labels`` with equal similarity."""
    n = len(neighbour_labels)
    rows = [[(j, 0.5) for j in range(1, n + 1)]] + [[(0, 0.5)] for _ in range(n)]
    sims, idx = graph(rows)
    return sims, idx, L(-1, *neighbour_labels)


# ---------------------------------------------------------------- held-out k and EM class prior
def test_heldout_split_keeps_one_label_per_class():
    labels = L(0, 0, 0, 0, 0, 1, 1, 2, -1, -1)
    held = heldout_split(labels)
    # floor(5 / 2) = 2 of class 0, floor(2 / 2) = 1 of class 1, none of class 2 (one label)
    assert [int((held & (labels == c)).sum()) for c in range(3)] == [2, 1, 0]
    assert not held[8:].any() and torch.equal(held, heldout_split(labels))


def test_balanced_accuracy_se_on_paper():
    # class 0: 2 of 3 right, class 1: 1 of 1 -> (2/3 + 1) / 2; SE = sqrt((2/3)(1/3)/3 + 0) / 2
    bal, se = balanced_accuracy_se(L(0, 0, 1, 1), L(0, 0, 0, 1))
    assert bal == pytest.approx(5 / 6) and se == pytest.approx(math.sqrt(2 / 27) / 2)


def test_one_se_choice_takes_the_widest_k_within_one_se():
    # best: k=10 (0.84, SE 0.03): the bar is 0.81, met by k=20 (0.82) but not k=50 (0.70)
    assert one_se_choice({5: (.80, .05), 10: (.84, .03), 20: (.82, .02), 50: (.70, .04)}) == 20
    assert one_se_choice({5: (.9, 0.), 10: (.9, 0.)}) == 10  # ties: the wider k


def _two_clusters():
    # class 0: 8 points near (1, 0); class 1: 24 points near (0, 1); every other point labeled
    g = torch.Generator().manual_seed(0)
    x = torch.cat([torch.tensor([1., 0.]) + 0.05 * torch.randn(8, 2, generator=g),
                   torch.tensor([0., 1.]) + 0.05 * torch.randn(24, 2, generator=g)])
    truth = torch.cat([torch.zeros(8), torch.ones(24)]).long()
    labels = torch.where(torch.arange(32) % 2 == 0, truth, torch.full_like(truth, -1))
    return F.normalize(x, dim=1), truth, labels


def test_heldout_k_prefers_a_width_that_labels_the_held_out_samples():
    x, truth, labels = _two_clusters()
    sims, idx = knn_graph(x, 20, backend="torch")
    opts = dict(weighting="uniform", class_quota=None, level_quantile=0.0, diffusion_weight=0.0)
    # held out: 2 of class 0's 4 labels, 6 of class 1's 12.  k <= 10: a held-out class-0 point has
    # its 7 class-0 companions first, 2 of them labeled, against at most 3 class-1 neighbours of
    # which about half are labeled, so every held-out point is right (score 1, SE 0); at k = 20 a
    # class-0 point has at most 7 class-0 neighbours against >= 13 of class 1 and the held-out
    # class-0 points go wrong (recalls 0 and 1: score 0.5).  The one-SE rule keeps the widest
    # perfect k.
    k, scores = choose_k_heldout(sims, idx, labels, 2, min_pairs=1, ks=(3, 5, 10), **opts)
    assert scores[[2, 4, 9]].tolist() == [1, 1, 1] and scores[19] == 0.5 and k == 10
    assert torch.isnan(scores[[0, 1, 3, 5, 18]]).all()
    # in hdl_label the candidates stop at the estimated smallest class, floor(32 * 4 / 16) = 8: the
    # candidates 5 and 8 both score 1 and the wider wins
    res = hdl_label(sims, idx, labels, 2, k="adaptive", min_pairs=1, **opts)
    assert res.chosen_k == 8 and res.k_scores[[4, 7]].tolist() == [1, 1]
    assert torch.isnan(res.k_scores[[2, 9, 19]]).all()
    # too few held-out labels (min_pairs) or one label per class: the graph width, nothing judged
    k, scores = choose_k_heldout(sims, idx, labels, 2, min_pairs=100, **opts)
    assert k == 20 and torch.isnan(scores).all()


def test_em_prior_on_paper():
    # given labels: class 0 at samples 0, 1; class 1 at sample 2.  With k = 1 each unlabeled
    # sample has one likelihood entry: 1/2 for class 0 (samples 3, 4, 5 near class 0's labels),
    # 1/1 for class 1 (sample 6), so every posterior is one-hot and EM stops at (3/4, 1/4)
    feats = torch.tensor([[1., 0.], [1., .1], [0., 1.], [1., .02], [1., .05], [.9, .1], [.05, 1.]])
    labels = L(0, 0, 1, -1, -1, -1, -1)
    assert torch.allclose(estimate_prior_em(feats, labels, 2, k=1), torch.tensor([.75, .25]))
    # class weights: 0.75 * prior / label share + 0.25; label shares 2/3, 1/3
    w = class_weights(labels, 2, "em", feats)
    assert w is not None and w.shape == (2,)
    # with k = PRIOR_VOTE_K (10 > 3 labels) every row sees all three labels: likelihoods
    # (2/2, 1/1) in every row, so EM keeps the uniform start
    assert torch.allclose(w, torch.tensor([0.75 * 0.5 / (2 / 3) + 0.25, 0.75 * 0.5 / (1 / 3) + 0.25]))
    with pytest.raises(ValueError, match="class_prior='em'"):
        hdl_label(*graph([[(1, .9)], [(0, .9)]]), L(0, -1), 2, k=1, class_prior="em")


def test_smallest_class_size_caps_the_adaptive_k():
    # 30 labels of class 0, 3 of class 1 among 441 samples: the smallest class is estimated at
    # floor(441 * 3 / 33) = 40 samples; balanced labels give N / C
    labels = torch.cat([torch.zeros(30), torch.ones(3), -torch.ones(408)]).long()
    assert smallest_class_size(labels) == 40
    assert smallest_class_size(L(0, 1, 0, 1, -1, -1)) == 3 and smallest_class_size(L(-1, -1)) is None
    # one label per class: nothing is judged, so the adaptive k is the graph width (12), capped at
    # floor(30 * 1 / 3) = 10, and raised to k_min when the estimate is smaller (never past the graph)
    x = F.normalize(torch.randn(30, 4, generator=torch.Generator().manual_seed(0)), dim=1)
    sims, idx = knn_graph(x, 12, backend="torch")
    y = torch.full((30,), -1, dtype=torch.int64)
    y[:3] = torch.tensor([0, 1, 2])
    assert hdl_label(sims, idx, y, 3).chosen_k == 10
    assert hdl_label(sims, idx, y, 3, k_min=11).chosen_k == 11
    assert hdl_label(sims, idx, y, 3, k_min=20).chosen_k == 12
    assert hdl_label(sims, idx, y, 3, k=12).chosen_k == 12  # a fixed k is not capped


def test_calibrated_confidence_is_the_isotonic_fit_of_held_out_correctness():
    from hdl.labeling import calibrate_confidence

    # held-out labels at agreement 0.2, 0.4, 0.6, 0.8 were right, wrong, right, right: the pool of
    # adjacent violators makes the fit 0.5, 0.5, 1, 1; between the points it is linear, outside clipped
    held_agr = torch.tensor([0.2, 0.4, 0.6, 0.8])
    held_ok = torch.tensor([True, False, True, True])
    got = calibrate_confidence(held_agr, held_ok, torch.tensor([0.1, 0.3, 0.5, 0.7, 0.9]))
    assert torch.allclose(got, torch.tensor([0.5, 0.5, 0.75, 1.0, 1.0]))


def test_hdl_label_reports_a_calibrated_confidence_when_held_out_labels_judge_k():
    torch.manual_seed(0)
    centers = torch.randn(3, 8) * 3
    y = torch.arange(3).repeat_interleave(60)
    x = centers[y] + torch.randn(180, 8)
    labels = torch.full_like(y, -1)
    for c in range(3):  # 16 labels per class: 24 held out, >= min_pairs=20
        labels[(y == c).nonzero().squeeze(1)[:16]] = c
    sims, idx = knn_graph(x, 20)
    res = hdl_label(sims, idx, labels, 3, feats=x)
    assert res.confidence is not None and res.confidence.shape == (180,)
    assert torch.all(res.confidence[labels >= 0] == 1) and torch.all(res.confidence[res.labels < 0] == 0)
    new = (labels < 0) & (res.labels >= 0)
    a, c = res.agreement[new], res.confidence[new]
    order = torch.argsort(a)
    assert torch.all(c[order][1:] >= c[order][:-1] - 1e-6)  # non-decreasing in the agreement
    # a fixed k judges nothing on held-out labels: no calibration
    assert hdl_label(sims, idx, labels, 3, k=10, feats=x).confidence is None


@pytest.mark.parametrize("opts", [{}, {"fallback": "expand", "k": 5, "min_agreement": 0.3},
                                  {"weighting": "uniform", "class_quota": None, "k": 8}])
def test_round_votes_in_chunks_equal_one_pass(monkeypatch, opts):
    """The rounds compute the waiting samples' votes VOTE_CHUNK rows at a time (memory); a chunk of
    7 rows gives bit for bit what one pass over all rows gives."""
    import hdl.labeling as lab

    g = torch.Generator().manual_seed(5)
    n, c = 600, 4
    y = torch.randint(0, c, (n,), generator=g)
    x = torch.nn.functional.normalize(torch.randn(c, 8, generator=g)[y] + torch.randn(n, 8, generator=g), dim=1)
    sims, idx = knn_graph(x, 12, backend="torch")
    idx[::13, -2:], sims[::13, -2:] = -1, float("-inf")  # missing neighbours
    labels = torch.full((n,), -1)
    given = torch.randperm(n, generator=g)[:30]
    labels[given] = y[given]
    monkeypatch.setattr(lab, "VOTE_CHUNK", 1 << 20)
    a = lab.hdl_label(sims, idx, labels, c, feats=x, **opts)
    monkeypatch.setattr(lab, "VOTE_CHUNK", 7)
    b = lab.hdl_label(sims, idx, labels, c, feats=x, **opts)
    assert a.rounds == b.rounds > 1 and a.chosen_k == b.chosen_k
    for f in ("labels", "level", "agreement"):
        assert torch.equal(getattr(a, f), getattr(b, f))


def test_knn_vote_in_chunks_equals_one_pass(monkeypatch):
    """The torch-backend kNN vote (the class prior's estimate) searches the unlabeled rows a chunk
    at a time, whole multiples of its matrix-multiply blocks: the same labels and agreements."""
    import hdl.labeling as lab

    g = torch.Generator().manual_seed(2)
    n, c = 45000, 5
    x = torch.randn(n, 4, generator=g) * 2
    y = torch.randint(0, c, (n,), generator=g)
    labels = torch.full((n,), -1)
    given = torch.randperm(n, generator=g)[:40000]
    labels[given] = y[given]
    monkeypatch.setattr(lab, "VOTE_CHUNK", 1 << 20)
    a = lab.knn_vote(x, labels, c, k=7, weighting="cosine", backend="torch")
    # below one block (2^26 / 40,000 = 1,677 rows): one block per chunk, three chunks for 5,000 rows
    monkeypatch.setattr(lab, "VOTE_CHUNK", 5)
    b = lab.knn_vote(x, labels, c, k=7, weighting="cosine", backend="torch")
    for f in ("labels", "level", "agreement"):
        assert torch.equal(getattr(a, f), getattr(b, f))
    # and the same as the vote computed by hand through knn_search on the normalised rows
    unl = (labels < 0).nonzero().squeeze(1)
    f = F.normalize(x, dim=1)
    s, i = knn_search(f[unl], f[labels >= 0], 7, backend="torch")
    votes = torch.zeros(len(unl), c).scatter_add_(1, labels[labels >= 0][i], s.clamp(min=0))
    assert torch.equal(a.labels[unl], votes.argmax(dim=1))


def test_prior_reads_a_seeded_subset_above_its_cap(monkeypatch):
    """Above PRIOR_ROWS unlabeled samples the class-size estimate reads a seeded subset of them:
    the "vote" estimate equals the histogram (+1 per class) of the full pass's votes at the drawn
    rows, the "em" estimate equals EM on those rows alone, and below the cap nothing changes."""
    import hdl.labeling as lab

    g = torch.Generator().manual_seed(3)
    n, c = 600, 3
    x = torch.randn(n, 5, generator=g)
    labels = torch.full((n,), -1)
    labels[:30] = torch.arange(30) % c
    full_vote = lab.knn_vote(x, labels, c, k=lab.PRIOR_VOTE_K, weighting="cosine", backend="torch").labels
    full_prior = lab.unlabeled_prior(labels, c, "vote", x)
    full_em = lab.estimate_prior_em(x, labels, c)
    assert torch.equal(lab.prior_rows(labels), torch.arange(n))  # 570 unlabeled <= 100,000
    monkeypatch.setattr(lab, "PRIOR_ROWS", 50)
    rows = lab.prior_rows(labels)
    assert len(rows) == 80 and torch.equal(rows[:30], torch.arange(30)) and bool((rows[1:] > rows[:-1]).all())
    assert torch.equal(rows, lab.prior_rows(labels))  # seeded: the same draw every time
    drawn = rows[30:]
    est = torch.bincount(full_vote[drawn], minlength=c).float() + 1.0
    assert torch.allclose(lab.unlabeled_prior(labels, c, "vote", x), est / est.sum())
    assert not torch.allclose(lab.unlabeled_prior(labels, c, "vote", x), full_prior)  # a different estimate
    sub_em = lab.estimate_prior_em(x[rows], labels[rows], c)  # 50 unlabeled rows: no further draw
    assert torch.allclose(lab.estimate_prior_em(x, labels, c), sub_em)
    assert torch.allclose(lab.unlabeled_prior(labels, c, "em", x), sub_em)
    assert not torch.allclose(sub_em, full_em)


def test_neighbour_lists_on_paper():
    # 0 lists (1, 2), 1 lists (2, -), 2 lists (0, 1): into 0 from 2 (column 0); into 1 from 0
    # (column 0) and 2 (column 1); into 2 from 0 (column 1) and 1 (column 0)
    from hdl.graph_labels import neighbour_lists

    lists = neighbour_lists(torch.tensor([[1, 2], [2, -1], [0, 1]]))
    assert lists.start.tolist() == [0, 1, 3, 5]
    assert lists.source.tolist() == [2, 0, 2, 0, 1]
    assert lists.column.tolist() == [0, 0, 1, 1, 0]


@pytest.mark.parametrize("kk", [3, 8])
def test_labeled_neighbour_counts_follow_the_labels(kk, device, monkeypatch):
    # the counts kept up to date round by round equal a direct count over the graph's first kk
    # columns; small build blocks so the lists are assembled from several blocks
    import hdl.graph_labels as G
    from hdl.labeling import _LabeledNeighbours

    monkeypatch.setattr(G, "NEIGHBOUR_LISTS_BLOCK_ROWS", 7)
    torch.manual_seed(0)
    x = F.normalize(torch.randn(120, 4), dim=1).to(device)
    _, idx = knn_graph(x, 8, backend="torch")
    idx[5, 2:] = -1
    cur = torch.full((120,), -1, dtype=torch.int64, device=device)
    cur[:6] = 0
    counts = _LabeledNeighbours(G.neighbour_lists(idx), kk, 8, cur)
    for step in torch.randperm(114, generator=torch.Generator().manual_seed(1)).add(6).split(19):
        gi = idx[:, :kk]
        direct = torch.where(gi >= 0, cur[gi.clamp(min=0)] >= 0, torch.zeros_like(gi, dtype=torch.bool)).sum(dim=1)
        assert torch.equal(counts.m, direct)
        rows = step.to(device)
        cur[rows] = 1
        counts.labeled(rows)
    assert torch.equal(counts.m, (idx[:, :kk] >= 0).sum(dim=1))


def _scores(winners, num_classes):
    """Diffusion-like scores (N, C) whose row argmax is ``winners`` (-1: a row no label reaches)."""
    z = torch.zeros(len(winners), num_classes)
    for i, w in enumerate(winners):
        if w >= 0:
            z[i, w] = 1.0
    return z


def test_anchor_prior_snaps_the_diffusion_counts_to_an_anchor():
    from hdl.labeling import anchor_prior, class_weights, unlabeled_prior

    # labels 6 / 3 / 1 of classes 0 / 1 / 2: consistent (0.6, 0.3, 0.1), uniform (1/3 each),
    # reversed (0.1, 0.3, 0.6) (most labels -> smallest share)
    given = [0] * 6 + [1] * 3 + [2]
    def case(unlabeled_winners):
        labels = torch.tensor(given + [-1] * len(unlabeled_winners))
        return labels, _scores([-1] * len(given) + unlabeled_winners, 3)

    # argmax counts 11 / 5 / 1 (+1 each: 12 / 6 / 2 = 0.6, 0.3, 0.1): the label shares themselves
    labels, z = case([0] * 11 + [1] * 5 + [2] + [-1] * 3)  # unreached rows do not count
    name, a = anchor_prior(labels, 3, z)
    assert name == "consistent" and torch.allclose(a, torch.tensor([.6, .3, .1]))
    assert class_weights(labels, 3, "anchor", diffusion=z) is None  # the consistent pace is the uniform one
    # 1 / 5 / 11 (+1: 0.1, 0.3, 0.6): reversed; weights (1 - m) * a / g + m with m = 0.25
    labels, z = case([0] + [1] * 5 + [2] * 11)
    name, a = anchor_prior(labels, 3, z)
    assert name == "reversed" and torch.allclose(a, torch.tensor([.1, .3, .6]))
    assert torch.allclose(class_weights(labels, 3, "anchor", diffusion=z),
                          0.75 * torch.tensor([.1 / .6, 1.0, 6.0]) + 0.25)
    assert torch.allclose(unlabeled_prior(labels, 3, "auto", diffusion=z), a)  # imbalanced labels: the anchor
    # 5 / 5 / 4 (+1: 6 / 6 / 5): nearest to uniform
    labels, z = case([0] * 5 + [1] * 5 + [2] * 4)
    assert anchor_prior(labels, 3, z)[0] == "uniform"
    with pytest.raises(ValueError, match="anchor"):
        class_weights(labels, 3, "anchor")


def test_anchors_skip_classes_without_labels_and_reverse_by_label_count():
    from hdl.labeling import anchor_prior

    # classes 0 and 2 labeled (1 and 3 labels), class 1 none: reversed swaps their shares
    labels = torch.tensor([2, 2, 2, 0] + [-1] * 8)
    z = _scores([-1] * 4 + [0] * 7 + [2], 3)  # counts 7 / - / 1 (+1: 8 / 0 / 2)
    name, a = anchor_prior(labels, 3, z)
    assert name == "reversed" and torch.allclose(a, torch.tensor([.75, 0., .25]))


def test_auto_prior_on_imbalanced_labels_follows_the_anchor(monkeypatch):
    # hdl_label reads the anchor from the diffusion of the given labels: where it says
    # "consistent" the labels equal those of the uniform pace, else the quota follows the anchor
    import hdl.labeling as lab

    torch.manual_seed(0)
    x = F.normalize(torch.randn(300, 8), dim=1)
    sims, idx = knn_graph(x, 12, backend="torch")
    labels = torch.full((300,), -1, dtype=torch.int64)
    labels[:12], labels[12:15], labels[15] = 0, 1, 2
    seen = []
    real = lab.anchor_prior
    monkeypatch.setattr(lab, "anchor_prior", lambda *a: seen.append(real(*a)) or seen[-1])
    res = hdl_label(sims, idx, labels, 3, k=5, feats=x)
    name = seen[-1][0]
    same = hdl_label(sims, idx, labels, 3, k=5, feats=x, class_prior="uniform")
    forced = hdl_label(sims, idx, labels, 3, k=5, feats=x,
                       quota_weights=lab.class_weights(labels, 3, "anchor", diffusion=lab._diffusion(
                           sims, idx, labels, 3, DEFAULT_OPTIONS["diffusion_alpha"])))
    assert torch.equal(res.labels, forced.labels)
    assert torch.equal(res.labels, same.labels) == (name == "consistent")
