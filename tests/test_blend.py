import pytest
import torch

from hdl.blend import blend_distributions, class_log_prior, prior_probabilities


def test_blend_on_paper():
    votes = torch.tensor([[3., 1.], [0., 0.]])   # second sample: no vote
    probs = torch.tensor([[.2, .8], [.6, .4]])
    # row 0: votes normalise to (.75, .25); weight .5 -> (.475, .525); row 1 keeps the model
    out = blend_distributions(votes, probs, 0.5)
    assert torch.allclose(out, torch.tensor([[.475, .525], [.6, .4]]))
    assert torch.allclose(blend_distributions(votes, probs, 0.0), probs)
    assert torch.allclose(blend_distributions(votes, probs, 1.0)[0], torch.tensor([.75, .25]))
    per_sample = blend_distributions(votes, probs, torch.tensor([1.0, 1.0]))
    assert torch.allclose(per_sample, torch.tensor([[.75, .25], [.6, .4]]))


def test_blend_checks_inputs():
    v, p = torch.ones(2, 3), torch.full((2, 3), 1 / 3)
    with pytest.raises(ValueError, match="shape"):
        blend_distributions(v, p[:, :2], 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        blend_distributions(v, p, 1.5)
    with pytest.raises(ValueError, match="shape"):
        blend_distributions(v, p, torch.ones(3))
    with pytest.raises(ValueError, match=">= 0"):
        blend_distributions(-v, p, 0.5)


def test_neighbourhood_votes_on_paper():
    from hdl.blend import neighbourhood_votes

    # 4 rows; row 0 given class 0, rows 1-3 labeled 1, 1, 2; row 3 has a missing neighbour (-1)
    sims = torch.tensor([[.9, .5], [.8, .6], [.7, .2], [.5, -.3]])
    idx = torch.tensor([[1, 2], [0, 2], [1, 0], [2, -1]])
    labels = torch.tensor([0, 1, 1, 2])
    v1 = neighbourhood_votes(sims, idx, labels, 3, 1, torch.tensor([1, 2, 3]))
    # k = 1: itself (weight 1) + its first neighbour (weight = its similarity)
    assert torch.allclose(v1, torch.tensor([[.8, 1., 0.], [0., 1.7, 0.], [0., .5, 1.]]))
    v2 = neighbourhood_votes(sims, idx, labels, 3, 5, torch.tensor([1, 3]))  # k clamped to K = 2
    assert torch.allclose(v2, torch.tensor([[.8, 1.6, 0.], [0., .5, 1.]]))
    # an unlabeled neighbour (-1) and a negative similarity do not vote
    v3 = neighbourhood_votes(sims, idx, torch.tensor([0, -1, 1, 2]), 3, 2, torch.tensor([0]))
    assert torch.allclose(v3, torch.tensor([[1., .5, 0.]]))
    with pytest.raises(ValueError, match="k must be"):
        neighbourhood_votes(sims, idx, labels, 3, 0, torch.tensor([0]))
    with pytest.raises(ValueError, match="labels must have shape"):
        neighbourhood_votes(sims, idx, labels[:2], 3, 1, torch.tensor([0]))


def test_calibrated_votes_on_paper():
    from hdl.blend import calibrated_votes

    votes = torch.tensor([[3.0, 1.0, 0.0, 0.0],   # HDL label 0 at confidence 0.6: the rest 0.4 to class 1 alone
                          [1.0, 1.0, 2.0, 0.0],   # label 2 at 0.5: class 0 and 1 share 0.5 by their votes (1:1)
                          [0.0, 0.0, 0.0, 2.0],   # label 3 at 0.9, no other vote: 0.1 evenly over the three others
                          [0.0, 1.0, 3.0, 0.0],   # no HDL label: the normalised votes
                          [0.0, 0.0, 0.0, 0.0]])  # no label, no votes: zero row (the blend takes the model's)
    label = torch.tensor([0, 2, 3, -1, -1])
    conf = torch.tensor([0.6, 0.5, 0.9, 0.7, 0.0])
    out = calibrated_votes(votes, label, conf)
    expect = torch.tensor([[0.6, 0.4, 0.0, 0.0],
                           [0.25, 0.25, 0.5, 0.0],
                           [0.1 / 3, 0.1 / 3, 0.1 / 3, 0.9],
                           [0.0, 0.25, 0.75, 0.0],
                           [0.0, 0.0, 0.0, 0.0]])
    assert torch.allclose(out, expect, atol=1e-6)
    # a label outside its own vote (the labeler's winner need not be the closed neighbourhood's) still
    # gets the confidence, and the votes go to the others
    out = calibrated_votes(torch.tensor([[0.0, 2.0, 2.0]]), torch.tensor([0]), torch.tensor([0.3]))
    assert torch.allclose(out, torch.tensor([[0.3, 0.35, 0.35]]))
    # blended at 0.5 with a model at (0.3, 0.6, 0.05, 0.05) on row 0: the raw shares (0.75, 0.25) keep
    # HDL's class 0 (0.375 + 0.15 = 0.525 against 0.125 + 0.3 = 0.425), the calibrated (0.6, 0.4) give
    # the model's class 1 (0.3 + 0.15 = 0.45 against 0.2 + 0.3 = 0.5)
    model = torch.tensor([[0.3, 0.6, 0.05, 0.05]])
    raw = blend_distributions(votes[:1], model, 0.5)
    cal = blend_distributions(calibrated_votes(votes[:1], label[:1], conf[:1]), model, 0.5)
    assert torch.allclose(raw, torch.tensor([[0.525, 0.425, 0.025, 0.025]]))
    assert torch.allclose(cal, torch.tensor([[0.45, 0.5, 0.025, 0.025]]))
    with pytest.raises(ValueError, match="confidence must lie in"):
        calibrated_votes(votes, label, conf + 0.5)
    with pytest.raises(ValueError, match="shape"):
        calibrated_votes(votes, label[:2], conf)


def test_balanced_probabilities_on_paper():
    from hdl.blend import balanced_probabilities

    # column means (.75, .25): row 0 (.9, .1) -> (1.2, .4) -> (.75, .25); row 1 (.6, .4) -> (.8, 1.6)
    # -> (1/3, 2/3): the second row's argmax moves from the head class 0 to class 1
    probs = torch.tensor([[.9, .1], [.6, .4]])
    out = balanced_probabilities(probs)
    assert torch.allclose(out, torch.tensor([[.75, .25], [1 / 3, 2 / 3]]))
    assert out.argmax(1).tolist() == [0, 1] and probs.argmax(1).tolist() == [0, 0]
    # balanced columns: unchanged; a class no row gives mass stays 0
    even = torch.tensor([[.7, .3, 0.], [.3, .7, 0.]])
    assert torch.allclose(balanced_probabilities(even), even)
    with pytest.raises(ValueError, match="probs must"):
        balanced_probabilities(torch.tensor([[.5, float("nan")]]))



def test_neighbourhood_mean_on_paper():
    from hdl.blend import neighbourhood_mean

    # the graph of the votes test; per row a distribution over 2 classes
    sims = torch.tensor([[.9, .5], [.8, .6], [.7, .2], [.5, -.3]])
    idx = torch.tensor([[1, 2], [0, 2], [1, 0], [2, -1]])
    probs = torch.tensor([[1., 0.], [.2, .8], [.6, .4], [0., 1.]])
    m1 = neighbourhood_mean(sims, idx, probs, 1, torch.tensor([1, 3]))
    # k = 1, row 1: (.2, .8) + .8 * (1, 0) = (1.0, .8), over 1.8; row 3: (0, 1) + .5 * (.6, .4) = (.3, 1.2), over 1.5
    assert torch.allclose(m1, torch.tensor([[1.0 / 1.8, .8 / 1.8], [.2, .8]]))
    # k = 2 (and 5, clamped): row 1 adds .6 * (.6, .4) -> (1.36, 1.04) / 2.4; row 3's -1 neighbour
    # and its negative similarity weigh 0
    m2 = neighbourhood_mean(sims, idx, probs, 5, torch.tensor([1, 3]))
    assert torch.allclose(m2, torch.tensor([[1.36 / 2.4, 1.04 / 2.4], [.2, .8]]))
    assert torch.allclose(m2.sum(1), torch.ones(2))
    # row 1's own argmax is class 1; its neighbourhood (1.36 against 1.04) turns it to class 0
    assert m2.argmax(1).tolist() == [0, 1] and probs[[1, 3]].argmax(1).tolist() == [1, 1]
    with pytest.raises(ValueError, match="probs must have shape"):
        neighbourhood_mean(sims, idx, probs[:3], 1, torch.tensor([0]))
    with pytest.raises(ValueError, match="k must be"):
        neighbourhood_mean(sims, idx, probs, 0, torch.tensor([0]))


def test_class_log_prior_on_paper():
    # counts 2, 1, 0 (the -1 ignored) plus one each: 3, 2, 1 of 6
    lp = class_log_prior(torch.tensor([0, 1, 0, -1]), 3)
    assert torch.allclose(lp.exp(), torch.tensor([3 / 6, 2 / 6, 1 / 6]))
    assert torch.allclose(class_log_prior(torch.tensor([], dtype=torch.long), 4).exp(), torch.full((4,), 0.25))
    with pytest.raises(ValueError, match=r"labels must lie in \[-1, 2\)"):
        class_log_prior(torch.tensor([0, 2]), 2)
    with pytest.raises(ValueError, match="num_classes"):
        class_log_prior(torch.tensor([0]), 0)


def test_prior_probabilities_on_paper():
    probs = torch.tensor([[0.5, 0.5], [0.2, 0.8], [0.0, 0.0]])
    lp = torch.tensor([0.8, 0.2]).log()
    # row 0: (.4, .1) -> (.8, .2); row 1: (.16, .16) -> (.5, .5); a row without mass stays 0
    out = prior_probabilities(probs, lp)
    assert torch.allclose(out, torch.tensor([[0.8, 0.2], [0.5, 0.5], [0.0, 0.0]]))
    # the same as softmax(z + log prior) for probs = softmax(z)
    z = torch.tensor([[1.0, -2.0, 0.5]])
    lp3 = torch.tensor([0.7, 0.2, 0.1]).log()
    assert torch.allclose(prior_probabilities(torch.softmax(z, dim=1), lp3), torch.softmax(z + lp3, dim=1))
    with pytest.raises(ValueError, match="log_prior"):
        prior_probabilities(probs, torch.zeros(3))
