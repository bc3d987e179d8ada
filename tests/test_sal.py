import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hdl.hierarchy import Hierarchy
from hdl.sal import (sal_similarity_from_hierarchy, sal_similarity_from_vectors, sal_targets,
                     soft_cross_entropy)

CLASSES = ["a1", "a2", "b1", "b2", "b3"]


def two_level():
    return Hierarchy.from_nested({"root": {"A": ["a1", "a2"], "B": ["b1", "b2", "b3"]}}, CLASSES)


def test_hierarchy_similarity_hand_computed():
    s = sal_similarity_from_hierarchy(two_level())
    expected = torch.tensor([[1, .5, 0, 0, 0], [.5, 1, 0, 0, 0], [0, 0, 1, .5, .5],
                             [0, 0, .5, 1, .5], [0, 0, .5, .5, 1]], dtype=torch.float64)
    torch.testing.assert_close(s, expected)


def test_targets_hand_computed():
    y = sal_targets(sal_similarity_from_hierarchy(two_level()), beta=0.4)
    # a1: q = [2/3, 1/3, 0, 0, 0]; b1: q = [0, 0, 1/2, 1/4, 1/4]
    torch.testing.assert_close(y[0], torch.tensor([0.8, 0.2, 0, 0, 0], dtype=torch.float64))
    torch.testing.assert_close(y[2], torch.tensor([0, 0, 0.7, 0.15, 0.15], dtype=torch.float64))
    torch.testing.assert_close(y.sum(1), torch.ones(5, dtype=torch.float64))


def test_beta_one_and_flat_tree_give_one_hot():
    eye = torch.eye(5, dtype=torch.float64)
    torch.testing.assert_close(sal_targets(sal_similarity_from_hierarchy(two_level()), 1.0), eye)
    flat = sal_similarity_from_hierarchy(Hierarchy.flat(CLASSES))
    for beta in (0.0, 0.4, 1.0):
        torch.testing.assert_close(sal_targets(flat, beta), eye)


@pytest.mark.parametrize("tree", [
    {"r": {"A": ["a1", "a2"], "B": ["b1", "b2", "b3"]}},
    {"r": {"X": {"A": ["a1", "a2"], "B": ["b1"]}, "Y": {"C": ["b2", "b3"]}}},
])
def test_equal_depth_similarity_is_gram_of_normalised_ancestor_indicators(tree):
    h = Hierarchy.from_nested(tree, CLASSES)
    a = F.normalize(torch.tensor(h.ancestor_indicator), dim=1)
    torch.testing.assert_close(sal_similarity_from_hierarchy(h), a @ a.T)


def test_vector_similarity_and_negative_clipping():
    v = np.array([[1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])
    s = sal_similarity_from_vectors(v)
    torch.testing.assert_close(s, torch.tensor([[1., 0, -1], [0, 1, 0], [-1, 0, 1]], dtype=torch.float64))
    torch.testing.assert_close(sal_targets(s, 0.5), torch.eye(3, dtype=torch.float64))
    s2 = sal_similarity_from_vectors(np.array([[1.0, 0.0], [1.0, 1.0]]))
    y = sal_targets(s2, 0.0)
    c = 1 / np.sqrt(2)
    torch.testing.assert_close(y[0], torch.tensor([1 / (1 + c), c / (1 + c)], dtype=torch.float64))


def test_soft_cross_entropy_matches_cross_entropy_for_one_hot():
    torch.manual_seed(0)
    logits = torch.randn(4, 5, requires_grad=True)
    labels = torch.tensor([0, 3, 2, 4])
    t = torch.eye(5)[labels]
    torch.testing.assert_close(soft_cross_entropy(logits, t), F.cross_entropy(logits, labels))
    torch.testing.assert_close(soft_cross_entropy(logits, t, "sum"), F.cross_entropy(logits, labels, reduction="sum"))
    assert soft_cross_entropy(logits, t, "none").shape == (4,)
    empty = soft_cross_entropy(logits[:0], t[:0])
    empty.backward()
    assert empty.item() == 0.0 and logits.grad is not None


def test_soft_cross_entropy_with_sal_targets_gradient_vanishes_at_target():
    y = sal_targets(sal_similarity_from_hierarchy(two_level()), 0.4).float()
    logits = torch.log(y[[0, 2]] + 1e-12).clone().requires_grad_(True)
    soft_cross_entropy(logits, y[[0, 2]]).backward()
    assert logits.grad.abs().max() < 1e-6


def test_input_validation():
    with pytest.raises(ValueError, match="beta"):
        sal_targets(torch.eye(2), 1.5)
    with pytest.raises(ValueError, match="square"):
        sal_targets(torch.ones(2, 3), 0.4)
    with pytest.raises(ValueError, match="reduction"):
        soft_cross_entropy(torch.zeros(1, 2), torch.zeros(1, 2), "avg")
    with pytest.raises(ValueError, match="shape"):
        soft_cross_entropy(torch.zeros(1, 2), torch.zeros(1, 3))
