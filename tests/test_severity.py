import numpy as np
import pytest
import torch

from hdl.hierarchy import Hierarchy
from hdl.severity import level_distance_matrix, mistake_severity

CLASSES = ["a1", "a2", "b1", "b2", "b3"]


def two_level():
    return Hierarchy.from_nested({"root": {"A": ["a1", "a2"], "B": ["b1", "b2", "b3"]}}, CLASSES)


TARGETS = torch.tensor([0, 0, 2, 3, 4])
RANKED = torch.tensor([[0, 1], [1, 0], [3, 4], [0, 1], [2, 3]])


def test_top1_hand_computed():
    m = mistake_severity(RANKED[:, 0], TARGETS, two_level(), topk=(1,))
    # level 0: mistakes with heights 1, 1, 2, 1; level 1: only a1 vs b2 (height 2) is a mistake
    assert m == pytest.approx({
        "sev/l0/top1_error": 0.8, "sev/l0/top1_mistake_dist": 1.25, "sev/l0/top1_dist": 1.0,
        "sev/l1/top1_error": 0.2, "sev/l1/top1_mistake_dist": 2.0, "sev/l1/top1_dist": 0.4,
    })


def test_top2_hand_computed_and_scores_agree_with_ranks():
    m = mistake_severity(RANKED, TARGETS, two_level(), topk=(1, 2), levels=[0])
    assert m["sev/l0/top2_error"] == pytest.approx(0.6)
    assert m["sev/l0/top2_dist"] == pytest.approx(1.0)         # 10 / 10 pairs
    assert m["sev/l0/top2_mistake_dist"] == pytest.approx(1.25)  # 10 / 8 wrong pairs
    scores = torch.full((5, 5), -1.0)
    scores.scatter_(1, RANKED, torch.tensor([[2.0, 1.0]]).expand(5, 2))
    assert mistake_severity(scores, TARGETS, two_level(), topk=(1, 2), levels=[0]) == pytest.approx(m)
    assert set(mistake_severity(scores.numpy(), TARGETS.numpy(), two_level())) == {
        f"sev/l{lv}/top{k}_{s}" for lv in (0, 1) for k in (1, 5) for s in ("error", "mistake_dist", "dist")}


def test_no_mistakes_and_top_k_beyond_classes():
    m = mistake_severity(TARGETS, TARGETS, two_level(), topk=(1,))
    assert all(v == 0.0 for v in m.values())
    scores = torch.eye(5)[TARGETS]
    m5 = mistake_severity(scores, TARGETS, two_level(), topk=(1, 5, 10))
    assert "sev/l0/top10_error" not in m5
    assert m5["sev/l0/top5_error"] == 0.0
    assert m5["sev/l0/top5_dist"] == pytest.approx(np.mean(two_level().lca_height[TARGETS.numpy()]))


def test_flat_tree_distance_is_error():
    h = Hierarchy.flat(CLASSES)
    pred = torch.tensor([0, 1, 0, 3, 0])
    m = mistake_severity(pred, TARGETS, h, topk=(1,))
    assert m["sev/l0/top1_error"] == pytest.approx(0.6) == m["sev/l0/top1_dist"]
    assert m["sev/l0/top1_mistake_dist"] == 1.0


def test_unbalanced_level_distance():
    # classes i (depth 3), j, j2 (depth 5), k (depth 2), z (depth 1)
    h = Hierarchy.from_nested({"root": {"A": {"P": {"i": None, "Q": {"R": ["j", "j2"]}}, "k": None},
                                         "z": None}}, ["i", "j", "j2", "k", "z"])
    assert h.lca_height[0, 1] == h.height[h.index("P")] == 3
    d2 = level_distance_matrix(h, 2)  # i -> A, j -> Q: their LCA is A (height 4)
    assert d2[0, 1] == d2[1, 0] == 4 and d2[0, 3] == 0 and d2[1, 2] == 0 and d2[0, 4] == 5
    np.testing.assert_array_equal(level_distance_matrix(h, 0), h.lca_height)


def test_validation():
    h = two_level()
    with pytest.raises(ValueError, match="ranked predictions"):
        mistake_severity(RANKED, TARGETS, h, topk=(1, 5))
    with pytest.raises(ValueError, match="topk"):
        mistake_severity(RANKED, TARGETS, h, topk=(0,))
    with pytest.raises(ValueError, match="levels"):
        mistake_severity(RANKED, TARGETS, h, topk=(1,), levels=[2])
    with pytest.raises(ValueError, match="targets"):
        mistake_severity(RANKED[:0], TARGETS[:0], h, topk=(1,))
    with pytest.raises(ValueError, match="predicted classes"):
        mistake_severity(torch.tensor([5, 0, 0, 0, 0]), TARGETS, h, topk=(1,))
