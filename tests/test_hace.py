import math

import pytest
import torch
import torch.nn.functional as F

from hdl.hace import (HACEHead, hace_aggregate, hace_aggregation_matrix, hace_loss, hace_node_targets,
                      hace_predict, hace_target_matrix)
from hdl.hierarchy import Hierarchy

# root -> {X: {Y: [x1, x2], x3}, z}; nodes: x1 x2 x3 z | X Y | root
TREE = {"root": {"X": {"Y": ["x1", "x2"], "x3": None}, "z": None}}
CLASSES = ["x1", "x2", "x3", "z"]


def tree():
    h = Hierarchy.from_nested(TREE, CLASSES)
    assert h.names == ("x1", "x2", "x3", "z", "X", "Y", "root")
    return h


def test_target_matrix_hand_computed():
    t = hace_target_matrix(tree(), d=0.5, dtype=torch.float64)
    expected = torch.tensor([
        [0.5, 0, 0, 0, 0.25, 0.25],  # x1: leaf d, Y d(1-d), X (topmost) the rest
        [0, 0.5, 0, 0, 0.25, 0.25],
        [0, 0, 0.5, 0, 0.5, 0],      # x3: leaf d, X the rest
        [0, 0, 0, 1.0, 0, 0],        # z sits under the root: all mass on the leaf
    ], dtype=torch.float64)
    torch.testing.assert_close(t, expected)
    t7 = hace_target_matrix(tree(), d=0.7, dtype=torch.float64)
    torch.testing.assert_close(t7[0], torch.tensor([0.7, 0, 0, 0, 0.09, 0.21], dtype=torch.float64))
    torch.testing.assert_close(hace_target_matrix(tree(), d=1.0)[:, :4], torch.eye(4))


def test_aggregation_hand_computed():
    h = tree()
    agg = hace_aggregation_matrix(h, torch.float64)
    logits = torch.log(torch.arange(1.0, 7.0, dtype=torch.float64))[None]  # p = [1..6] / 21
    q = hace_aggregate(logits, agg)[0] * 21
    # X = X + Y + x1 + x2 + x3 = 5 + 6 + 1 + 2 + 3; Y = Y + x1 + x2 = 6 + 1 + 2
    torch.testing.assert_close(q, torch.tensor([1, 2, 3, 4, 17, 9], dtype=torch.float64))
    y = hace_node_targets(torch.tensor([0]), hace_target_matrix(h, 0.5, torch.float64))
    loss = hace_loss(logits, y, agg, eps=1e-12)
    expected = -(0.5 * math.log(1 / 21) + 0.25 * math.log(17 / 21) + 0.25 * math.log(9 / 21))
    assert loss.item() == pytest.approx(expected, rel=1e-9)


def test_soft_labels_mix_target_rows():
    t = hace_target_matrix(tree(), 0.5)
    soft = torch.tensor([[0.5, 0.0, 0.0, 0.5]])
    torch.testing.assert_close(hace_node_targets(soft, t), 0.5 * (t[0] + t[3])[None])


def test_flat_tree_is_cross_entropy():
    h = Hierarchy.flat(["a", "b", "c"])
    torch.testing.assert_close(hace_target_matrix(h, 0.3), torch.eye(3))
    torch.manual_seed(0)
    logits = torch.randn(5, 3)
    labels = torch.tensor([0, 1, 2, 2, 0])
    loss = hace_loss(logits, hace_node_targets(labels, hace_target_matrix(h)), hace_aggregation_matrix(h))
    torch.testing.assert_close(loss, F.cross_entropy(logits, labels), atol=1e-6, rtol=1e-6)


def test_head_forward_loss_predict_and_backward():
    torch.manual_seed(0)
    head = HACEHead(8, tree())
    x = torch.randn(6, 8)
    z = head(x)
    assert z.shape == (6, 6)
    loss = head.loss(z, torch.tensor([0, 1, 2, 3, 0, 1]))
    loss.backward()
    assert head.fc.weight.grad is not None and torch.isfinite(loss)
    pred, scores = head.predict(z.detach())
    assert pred.shape == (6,) and scores.shape == (6, 4)
    assert torch.equal(pred, F.softmax(z.detach(), 1)[:, :4].argmax(1))
    empty = head.loss(head(x[:0]), torch.zeros(0, dtype=torch.long))
    empty.backward()
    assert empty.item() == 0.0
    assert "target_matrix" not in head.state_dict()


def test_training_moves_prediction_to_target():
    torch.manual_seed(0)
    h = tree()
    logits = torch.zeros(1, 6, requires_grad=True)
    opt = torch.optim.SGD([logits], lr=1.0)
    t, agg = hace_target_matrix(h), hace_aggregation_matrix(h)
    for _ in range(50):
        opt.zero_grad()
        hace_loss(logits, hace_node_targets(torch.tensor([1]), t), agg).backward()
        opt.step()
    assert hace_predict(logits.detach(), 4)[0].item() == 1


def test_validation():
    with pytest.raises(ValueError, match="d must be"):
        hace_target_matrix(tree(), d=0.0)
    t = hace_target_matrix(tree())
    with pytest.raises(ValueError, match="labels must lie"):
        hace_node_targets(torch.tensor([4]), t)
    with pytest.raises(ValueError, match="labels must be"):
        hace_node_targets(torch.zeros(2, 3), t)
    agg = hace_aggregation_matrix(tree())
    with pytest.raises(ValueError, match="node_logits"):
        hace_loss(torch.zeros(2, 5), torch.zeros(2, 5), agg)
    with pytest.raises(ValueError, match="reduction"):
        hace_loss(torch.zeros(2, 6), torch.zeros(2, 6), agg, reduction="avg")
