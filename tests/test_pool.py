"""The labeled pool (hdl.pool) and the one refresh path (hdl.refresh)."""
import numpy as np
import pytest
import torch

from hdl.knn import knn_graph
from hdl.labeling import hdl_label
from hdl.pool import LabelPool
from hdl.refresh import refresh
from hdl.relabel import relabel


def test_pool_assign_lookup_and_state(device):
    pool = LabelPool(6, device=device)
    ids = torch.tensor([5, 1, 3, 0], device=device)
    entered = pool.assign(ids, torch.tensor([2, 0, 1, -1]), torch.tensor([0.5, 1.0, 0.75, 0.0]),
                          torch.tensor([2, 0, 1, -1]), given=torch.tensor([False, True, False, False]))
    # row 1 was given (ground truth never enters the pool), row 3 has no label
    assert sorted(entered.tolist()) == [3, 5] and pool.size == 2 and pool.nonempty
    assert pool.labels.tolist() == [-1, -1, -1, 1, -1, 2] and pool.level.tolist() == [-1, -1, -1, 1, -1, 2]
    lab, agr = pool.lookup(torch.tensor([5, 4, 3]))
    assert lab.tolist() == [2, -1, 1] and agr.tolist() == [0.5, 0.0, 0.75] and lab.device.type == device.type
    state = pool.state_dict()
    other = LabelPool(6, device=device)
    other.load_state_dict(state)
    assert torch.equal(other.labels, pool.labels) and torch.equal(other.agreement, pool.agreement)
    state["labels"][0] = 9  # a copy
    assert pool.labels[0] == -1
    pool.assign(ids[:1], torch.tensor([0]), torch.tensor([1.0]), torch.tensor([1]), torch.tensor([False]))
    assert pool.size == 1  # every assignment replaces the whole pool


def test_pool_state_errors_and_earlier_format():
    pool = LabelPool(3)
    with pytest.raises(ValueError, match="entry 'level' is missing"):
        pool.load_state_dict({"version": 1, "labels": torch.zeros(3, dtype=torch.long), "agreement": torch.zeros(3)})
    with pytest.raises(ValueError, match=r"expected a tensor of shape \(3,\)"):
        pool.load_state_dict({"version": 1, "labels": torch.zeros(4, dtype=torch.long), "agreement": torch.zeros(3),
                              "level": torch.zeros(3, dtype=torch.long)})
    with pytest.raises(ValueError, match="version 7"):
        pool.load_state_dict({"version": 7})
    pool.load_state_dict({"pool_label": torch.tensor([-1, 4, 0]), "pool_agreement": torch.tensor([0.0, 0.5, 1.0])})
    assert pool.labels.tolist() == [-1, 4, 0] and pool.level.tolist() == [-1, 1, 1]
    with pytest.raises(ValueError, match="shape"):
        pool.assign(torch.tensor([0, 1]), torch.tensor([1]), torch.tensor([1.0]), torch.tensor([1]),
                    torch.tensor([False]))


def blobs(n=30, seed=0):
    g = np.random.default_rng(seed)
    centers = np.eye(3, 8) * 4
    x = np.concatenate([c + g.normal(0, 1, (n, 8)) for c in centers]).astype(np.float32)
    y = np.repeat(np.arange(3), n)
    given = np.full_like(y, -1)
    given[[0, 1, n, n + 1, 2 * n, 2 * n + 1]] = y[[0, 1, n, n + 1, 2 * n, 2 * n + 1]]
    return x, y, given


def test_refresh_is_the_graph_then_hdl_label(device):
    x, _, given = blobs()
    feats = torch.nn.functional.normalize(torch.from_numpy(x), dim=1).to(device)
    labels = torch.from_numpy(given).to(device)
    r = refresh(feats, labels, 3, k_max=10, backend="torch", k=5, class_quota=None)
    sims, idx = knn_graph(feats, 10, backend="torch")
    direct = hdl_label(sims, idx, labels, 3, k=5, feats=feats, class_quota=None)
    assert torch.equal(r.result.labels, direct.labels) and torch.equal(r.graph_idx, idx)
    assert r.result.labels.device.type == device.type and r.k_max == 10
    assert torch.equal(r.given, labels >= 0) and torch.equal(r.new, (direct.labels >= 0) & (labels < 0))
    # already-normalised rows are used bit for bit with normalize=False
    r2 = refresh(feats, labels, 3, k_max=10, backend="torch", normalize=False, k=5, class_quota=None)
    assert torch.equal(r2.graph_sims, sims)


def test_refresh_clamps_the_graph_to_the_sample_count_and_checks_k():
    x, _, given = blobs(n=3)
    r = refresh(torch.from_numpy(x), torch.from_numpy(given), 3, k_max=50, backend="torch")
    assert r.k_max == 8 and r.graph_idx.shape == (9, 8) and r.result.chosen_k <= 8
    with pytest.raises(ValueError, match="k=60 is larger than k_max=50"):
        refresh(torch.from_numpy(x), torch.from_numpy(given), 3, k_max=50, k=60)
    with pytest.raises(ValueError, match="option 'level_quantile'"):
        refresh(torch.from_numpy(x), torch.from_numpy(given), 3, level_quantile=2.0)


def test_relabel_runs_the_same_refresh():
    x, y, given = blobs()
    res = relabel(x, given, y, k_max=10, backend="torch", k=5)
    r = refresh(torch.from_numpy(x), torch.from_numpy(given), 3, k_max=10, backend="torch", k=5)
    assert np.array_equal(res.labels, r.result.labels.numpy()) and res.chosen_k == r.result.chosen_k


def test_remove_takes_samples_out_of_the_pool():
    pool = LabelPool(5)
    pool.assign(torch.arange(4), torch.tensor([1, 2, 3, 4]), torch.full((4,), 0.5), torch.ones(4, dtype=torch.long),
                torch.zeros(4, dtype=torch.bool))
    pool.remove(torch.tensor([1, 3]))
    assert pool.labels.tolist() == [1, -1, 3, -1, -1] and pool.level.tolist() == [1, -1, 1, -1, -1]
    assert pool.agreement.tolist() == [0.5, 0.0, 0.5, 0.0, 0.0] and pool.size == 2
