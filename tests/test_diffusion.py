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


def _affinity_through_coo(sims, idx, k, gamma=3.0):
    """The normalised affinity built another way: every edge in both directions into one sparse
    COO tensor, coalesced (duplicates summed), degrees from its rows, scaled."""
    n = idx.shape[0]
    w = sims[:, :k].float().clamp(min=0).pow(gamma)
    rows = torch.arange(n, device=idx.device).unsqueeze(1).expand(-1, k)
    keep = (idx[:, :k] >= 0) & (idx[:, :k] != rows) & (w > 0)
    r, c, v = rows[keep], idx[:, :k][keep], w[keep]
    sym = torch.sparse_coo_tensor(torch.stack([torch.cat([r, c]), torch.cat([c, r])]), torch.cat([v, v]),
                                  (n, n)).coalesce()
    i, vals = sym.indices(), sym.values()
    deg = torch.zeros(n, device=idx.device).index_add_(0, i[0], vals)
    deg[deg == 0] = 1.0
    return i, vals * deg.rsqrt()[i[0]] * deg.rsqrt()[i[1]]


@pytest.mark.parametrize("block_rows", [1, 7, 64, 1 << 17])
def test_blocked_affinity_equals_the_coalesced_one(block_rows, device):
    # a kNN graph with reciprocal edges (summed), a missing neighbour, a self edge and a negative
    # similarity (both dropped); every row block size gives the same CSR, bit for bit
    torch.manual_seed(0)
    x = F.normalize(torch.randn(300, 6), dim=1).to(device)
    sims, idx = knn_graph(x, 12, backend="torch")
    idx[0, -1], idx[1, 0], sims[2, 1] = -1, 1, -0.5
    wn = normalized_affinity(sims, idx, 12, block_rows=block_rows)
    i, vals = _affinity_through_coo(sims, idx, 12)
    crow, col = wn.crow_indices().long(), wn.col_indices().long()
    rows = torch.repeat_interleave(torch.arange(300, device=crow.device), crow[1:] - crow[:-1])
    assert torch.equal(rows, i[0]) and torch.equal(col, i[1])
    if device.type == "cpu":  # the same sums in the same order
        assert torch.equal(wn.values(), vals)
    else:
        assert torch.allclose(wn.values(), vals, rtol=1e-6, atol=0)
    assert wn.col_indices().dtype == torch.int32


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


def test_locality_order_walks_a_shuffled_path():
    # a path 0 - 1 - ... - 19 stored under shuffled node ids: reverse Cuthill-McKee starts at an
    # end (the lowest degree) and walks the path, so consecutive nodes of the order are neighbours
    from hdl.diffusion import locality_order

    n = 20
    ids = torch.randperm(n, generator=torch.Generator().manual_seed(0))  # path position -> node id
    idx = torch.full((n, 2), -1, dtype=torch.int64)
    for p in range(n):
        nb = [q for q in (p - 1, p + 1) if 0 <= q < n]
        idx[ids[p], :len(nb)] = ids[torch.tensor(nb)]
    order = locality_order(idx)
    assert torch.equal(torch.sort(order).values, torch.arange(n))
    pos = torch.empty(n, dtype=torch.int64)
    pos[ids] = torch.arange(n)  # node id -> path position
    assert torch.equal((pos[order][1:] - pos[order][:-1]).abs(), torch.ones(n - 1, dtype=torch.int64))


def test_renumbered_affinity_is_the_permuted_matrix_and_diffuses_the_same(device, monkeypatch):
    # the affinity built over renumbered nodes is P A P^T of the one in the graph's numbering, and
    # diffusion through it (as diffusion_affinity builds it from LOCALITY_MIN_ROWS rows on) gives
    # the same scores back in the graph's numbering
    import hdl.diffusion as D

    torch.manual_seed(1)
    x = F.normalize(torch.randn(200, 5), dim=1).to(device)
    sims, idx = knn_graph(x, 8, backend="torch")
    idx[3, -1], sims[4, 2] = -1, -0.3
    order = torch.randperm(200, generator=torch.Generator().manual_seed(2)).to(device)
    plain = normalized_affinity(sims, idx, 8).to_dense()
    renumbered = normalized_affinity(sims, idx, 8, block_rows=37, order=order).to_dense()
    assert torch.allclose(renumbered, plain[order][:, order], rtol=1e-6, atol=1e-8)
    y = torch.full((200,), -1, dtype=torch.int64, device=device)
    y[:9] = torch.arange(9, device=device) % 3
    z = diffusion_scores(sims, idx, y, 3, k=8, alpha=0.9, iters=50,
                         affinity=D.Affinity(normalized_affinity(sims, idx, 8, order=order), order))
    monkeypatch.setattr(D, "LOCALITY_MIN_ROWS", 100)
    built = D.diffusion_affinity(sims, idx, 8)
    assert (built.order is not None) == (device.type == "cpu")
    z_auto = diffusion_scores(sims, idx, y, 3, k=8, alpha=0.9, iters=50)
    monkeypatch.setattr(D, "LOCALITY_MIN_ROWS", 10 ** 9)
    z_plain = diffusion_scores(sims, idx, y, 3, k=8, alpha=0.9, iters=50)
    assert D.diffusion_affinity(sims, idx, 8).order is None
    assert torch.allclose(z, z_plain, rtol=1e-4, atol=1e-6) and torch.allclose(z_auto, z_plain, rtol=1e-4, atol=1e-6)
