"""Approximate kNN graphs (hdl.ann): IVF and HNSW against exact search, recall measured right."""
import numpy as np
import pytest
import torch

from hdl import ann
from hdl.knn import knn_graph

faiss = pytest.importorskip("faiss")


def blobs(n=3000, d=16, seed=0):
    g = np.random.default_rng(seed)
    centers = g.normal(0, 1, (20, d))
    x = centers[g.integers(0, 20, n)] + g.normal(0, 0.5, (n, d))
    return torch.nn.functional.normalize(torch.tensor(x, dtype=torch.float32), dim=1)


def test_recall_of_a_known_graph():
    x = blobs(200)
    sims, idx = knn_graph(x, 5, backend="torch")
    rows = torch.arange(0, 200, 7)
    assert ann.graph_recall(x, idx, rows, backend="torch") == 1.0
    wrong = idx.clone()
    wrong[:, 3:] = -1  # two of five neighbours missing on every row
    assert ann.graph_recall(x, wrong, rows, backend="torch") == pytest.approx(0.6)


def test_ivf_probing_every_cell_is_exact_and_its_recall_is_measured(device):
    x = blobs().to(device)
    nlist, _ = ann.ivf_defaults(len(x))
    sims, idx, info = ann.build_graph(x, 10, index="ivf", backend="torch", nprobe=nlist, recall_queries=300)
    assert info.index == "ivf" and info.params == {"nlist": nlist, "nprobe": nlist}
    assert info.recall == 1.0 and info.recall_queries == 300 and idx.device.type == device.type
    ref_sims, ref_idx = knn_graph(x, 10, backend="torch")
    assert torch.allclose(sims.cpu(), ref_sims.cpu(), atol=1e-5)  # same similarities (indices may swap on ties)
    assert (idx != torch.arange(len(x), device=idx.device).unsqueeze(1)).all()  # self excluded


def test_ivf_with_few_probes_and_hnsw_are_approximate_but_close():
    x = blobs()
    _, idx, info = ann.build_graph(x, 10, index="ivf", nprobe=1, recall_queries=500)
    assert info.recall < 1.0  # one cell of many: some neighbours are elsewhere
    rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:500]
    assert info.recall == pytest.approx(ann.graph_recall(x, idx, rows))  # the logged recall is the measured one
    _, _, h = ann.build_graph(x, 10, index="hnsw", recall_queries=500)
    assert h.index == "hnsw" and h.recall > 0.95 and h.params["ef_search"] >= 22


def test_auto_is_exact_up_to_the_documented_size(monkeypatch):
    x = blobs(500)
    _, _, info = ann.build_graph(x, 5)
    assert info.index == "exact" and info.recall is None
    monkeypatch.setattr(ann, "EXACT_MAX_ROWS", 100)
    _, _, info = ann.build_graph(x, 5, recall_queries=50)
    assert info.index == "ivf" and info.params["nlist"] == min(round(4 * 500 ** 0.5), 500 // 39)


def test_defaults_and_errors():
    assert ann.ivf_defaults(1_000_000) == (4000, 250)
    assert ann.ivf_defaults(100) == (2, 1)  # at most n // 39 cells
    with pytest.raises(ValueError, match="index must be one of"):
        ann.build_graph(blobs(50), 3, index="lsh")
    _, idx, _ = ann.build_graph(blobs(50), 60, index="hnsw", recall_queries=0)
    assert (idx[:, 49:] == -1).all()  # k beyond the rows: sentinels


def test_cells_probing_every_cell_is_exact_and_few_cells_are_not(device, monkeypatch):
    """index="cells": with every cell probed each row is searched against all rows, so the graph
    is the exact one (similarities equal; indices may swap on ties), on the rows' device, also when
    a cell's queries are split over several matrix-product blocks; with one cell probed rows near a
    cell's border lose neighbours, and the logged recall is the measured one."""
    x = blobs().to(device)
    nlist, nprobe = ann.cells_defaults(len(x))
    assert (nlist, nprobe) == (55, 1) and ann.cells_defaults(1_000_000) == (1000, 16)
    monkeypatch.setattr(ann, "CELLS_BLOCK_ENTRIES", 5000)  # blocks of 1-2 query rows
    sims, idx, info = ann.build_graph(x, 10, index="cells", backend="torch", nprobe=nlist, recall_queries=300)
    assert info.index == "cells" and info.params == {"nlist": nlist, "nprobe": nlist} and info.recall == 1.0
    assert idx.device.type == device.type and sims.device.type == device.type
    ref_sims, ref_idx = knn_graph(x, 10, backend="torch")
    assert torch.allclose(sims.cpu(), ref_sims.cpu(), atol=1e-5)
    assert (idx != torch.arange(len(x), device=idx.device).unsqueeze(1)).all()
    assert (idx.cpu() == ref_idx.cpu()).float().mean() > 0.999
    monkeypatch.undo()
    _, idx1, info1 = ann.build_graph(x.cpu(), 10, index="cells", nprobe=1, recall_queries=500)
    rows = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))[:500]
    assert info1.recall < 1.0 and info1.recall == pytest.approx(ann.graph_recall(x.cpu(), idx1, rows))
    # a tiny set: fewer candidates than k in a cell leaves -1 / -inf sentinels, never the row itself
    s2, i2 = ann.cells_graph(blobs(80), 60, 2, 1)
    assert ((i2 == -1) == torch.isinf(s2)).all() and (i2 != torch.arange(80).unsqueeze(1)).all()


def test_cells_faiss_and_torch_blocks_give_the_same_graph(monkeypatch):
    """The CPU path (faiss.knn per block) and the torch path (matmul + topk, used on other
    devices) search the same candidates: the same similarities, and the same neighbours but for
    exact ties."""
    x = blobs(2000)
    a_s, a_i = ann.cells_graph(x, 10, 30, 3)
    monkeypatch.setattr(ann, "CELLS_FAISS_ON_CPU", False)
    b_s, b_i = ann.cells_graph(x, 10, 30, 3)
    assert torch.allclose(a_s, b_s, atol=1e-5) and (a_i == b_i).float().mean() > 0.999
