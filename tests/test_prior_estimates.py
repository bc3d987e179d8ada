"""scripts/prior_estimates.py: EM over the unlabeled class shares, on paper."""
import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "scripts"))
from prior_estimates import em, tv  # noqa: E402


def test_em_on_paper():
    # separable likelihoods: every posterior is one-hot whatever the shares, so one step gives the counts
    lik = torch.tensor([[1.0, 0.0]] * 3 + [[0.0, 2.0]])
    assert torch.allclose(em(lik, 1), torch.tensor([0.75, 0.25]))
    # one step from uniform shares is the mean of the row-normalised likelihoods
    lik = torch.tensor([[3.0, 1.0], [1.0, 1.0]])
    assert torch.allclose(em(lik, 1), torch.tensor([(0.75 + 0.5) / 2, (0.25 + 0.5) / 2]))
    # the fixed point of two samples with likelihood ratios 3 and 1/3 under a 50/50 truth: pi = 1/2
    lik = torch.tensor([[3.0, 1.0], [1.0, 3.0]])
    assert torch.allclose(em(lik, 50), torch.tensor([0.5, 0.5]))
    # a class no sample supports loses its share, step by step (second step computed by hand)
    lik = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    pi1 = torch.tensor([0.75, 0.25])
    post = torch.tensor([[0.75, 0.25], [1.0, 0.0]])
    assert torch.allclose(em(lik, 1), pi1) and torch.allclose(em(lik, 2), post.mean(dim=0))
    assert tv(torch.tensor([1.0, 0.0]), torch.tensor([0.0, 2.0])) == pytest.approx(1.0)
    assert tv(torch.tensor([2.0, 2.0]), torch.tensor([0.25, 0.75])) == pytest.approx(0.25)
