import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F

from hdl.diffusion import conjugate_gradient, diffusion_label, diffusion_scores, normalized_affinity
from hdl.knn import knn_graph
from tests.test_labeling import L, graph


def test_two_nodes_solved_on_paper():
    # one edge of similarity 0.5 listed by both rows: W01 = 2 * 0.5^3 = 0.25, degrees 0.25, so
    # Wn = [[0, 1], [1, 0]]; with alpha 0.5: z0 - z1 / 2 = 1, z1 - z0 / 2 = 0 -> z = (4/3, 2/3)
    sims, idx = graph([[(1, .5)], [(0, .5)]])
    wn = normalized_affinity(sims, idx, k=1)
    assert torch.allclose(wn.to_dense(), torch.tensor([[0., 1.], [1., 0.]]))
    z = diffusion_scores(sims, idx, L(0, -1), 1, k=1, alpha=0.5)
    assert torch.allclose(z[:, 0], torch.tensor([4 / 3, 2 / 3]), atol=1e-5)


def test_class_normalised_seeds():
    # star: 0 unlabeled in the middle, leaf 1 of class 0, leaves 2 and 3 of class 1 (same
    # similarity): seeds 1 for class 0 and 1/2 + 1/2 for class 1 give node 0 equal scores
    sims, idx = graph([[(1, .8), (2, .8), (3, .8)], [(0, .8)], [(0, .8)], [(0, .8)]])
    z = diffusion_scores(sims, idx, L(-1, 0, 1, 1), 2, k=3)
    assert z[0, 0] > 0 and math.isclose(float(z[0, 0]), float(z[0, 1]), rel_tol=1e-4)


def test_cg_matches_a_dense_solve_and_labels():
    torch.manual_seed(0)
    x = F.normalize(torch.randn(40, 3).abs(), dim=1)
    sims, idx = knn_graph(x, 6, backend="torch")
    y = torch.full((40,), -1, dtype=torch.int64)
    y[:6] = torch.tensor([0, 1, 2, 0, 1, 2])
    z = diffusion_scores(sims, idx, y, 3, k=6, alpha=0.9, iters=200)
    a = torch.eye(40) - 0.9 * normalized_affinity(sims, idx, 6).to_dense()
    seeds = torch.zeros(40, 3)
    seeds[torch.arange(6), y[:6]] = 1 / 2
    assert torch.allclose(z, torch.linalg.solve(a, seeds).clamp(min=0), atol=1e-4)
    res, scores = diffusion_label(sims, idx, y, 3, k=6, alpha=0.9, iters=200)
    assert torch.equal(res.labels[:6], y[:6]) and torch.equal(res.labels[6:], scores[6:].argmax(dim=1))
    assert float(res.agreement.max()) == pytest.approx(1.0)


def test_unreached_samples_stay_unlabeled():
    sims, idx = graph([[(1, .9)], [(0, .9)], [(3, .9)], [(2, .9)]])  # two components
    res, _ = diffusion_label(sims, idx, L(0, -1, -1, -1), 2, k=1)
    assert res.labels.tolist() == [0, 0, -1, -1] and res.level.tolist() == [0, 1, -1, -1]


def test_conjugate_gradient_stops_per_column():
    a = torch.tensor([[4., 1.], [1., 3.]])
    b = torch.tensor([[1., 0.], [2., 0.]])  # second column is already solved by x = 0
    x = conjugate_gradient(lambda v: a @ v, b, iters=5)
    assert torch.allclose(x[:, 0], torch.linalg.solve(a, b[:, 0]), atol=1e-6) and torch.all(x[:, 1] == 0)


def test_label_spreading_on_the_shared_graph_equals_its_own_search():
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
    from compare_labeling import label_spreading

    torch.manual_seed(1)
    x = F.normalize(torch.randn(60, 5), dim=1)
    y = torch.full((60,), -1, dtype=torch.int64)
    y[:9] = torch.arange(9) % 3
    _, idx = knn_graph(x, 9, backend="torch")
    own = label_spreading(x.numpy(), y.numpy(), 7)
    shared = label_spreading(x.numpy(), y.numpy(), 7, graph_idx=idx)
    assert (own == shared).all()
