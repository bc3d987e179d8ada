import pytest
import torch

from hdl.blend import blend_distributions


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
