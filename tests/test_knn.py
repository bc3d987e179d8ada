import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hdl import knn
from hdl.knn import knn_graph, knn_search

HAS_FAISS = knn._import_faiss() is not None
needs_faiss = pytest.mark.skipif(not HAS_FAISS, reason="faiss not installed")


def unit(n, d, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(n, d, generator=g), dim=1)


def test_hand_checkable_1d(device):
    # points on the unit circle at angles 0, 30, 90, 180 degrees
    ang = torch.tensor([0.0, 30.0, 90.0, 180.0]) * np.pi / 180
    x = torch.stack([torch.cos(ang), torch.sin(ang)], dim=1).to(device)
    sims, idx = knn_search(x[:1], x, k=4, backend="torch")
    assert idx.device.type == device.type and sims.device.type == device.type  # results stay on the input's device
    assert idx.tolist() == [[0, 1, 2, 3]]
    assert torch.allclose(sims.cpu(), torch.tensor([[1.0, np.cos(np.pi / 6), 0.0, -1.0]], dtype=torch.float32),
                          atol=1e-6)
    sims, idx = knn_graph(x, k=2, backend="torch")
    assert idx[0].tolist() == [1, 2] and idx[3].tolist() == [2, 1]
    assert sims.dtype == torch.float32 and idx.dtype == torch.int64


@pytest.mark.parametrize("backend", ["torch", pytest.param("faiss", marks=needs_faiss)])
def test_k_larger_than_base_gives_sentinels(backend):
    x = unit(3, 4)
    sims, idx = knn_search(x, x, k=5, backend=backend)
    assert idx.shape == (3, 5)
    assert (idx[:, 3:] == -1).all() and torch.isinf(sims[:, 3:]).all() and (sims[:, 3:] < 0).all()
    sims, idx = knn_graph(x, k=5, backend=backend)
    assert (idx[:, 2:] == -1).all() and (idx[:, :2] >= 0).all()
    assert all(i not in idx[i].tolist() for i in range(3))


@pytest.mark.parametrize("backend", ["torch", pytest.param("faiss", marks=needs_faiss)])
def test_exclude_self_with_duplicates(backend, device):
    if backend == "faiss" and device.type != "cpu":
        pytest.skip("the faiss backend searches CPU tensors")
    x = unit(4, 3).to(device)
    x = torch.cat([x, x[:1], x[:1]])  # rows 0, 4, 5 are identical
    sims, idx = knn_graph(x, k=3, backend=backend)
    for i in range(6):
        assert i not in idx[i].tolist()
    assert set(idx[0, :2].tolist()) == {4, 5}
    assert set(idx[4, :2].tolist()) == {0, 5}
    assert torch.allclose(sims[0, :2].cpu(), torch.ones(2), atol=1e-6)


def test_single_point_self_search():
    sims, idx = knn_graph(unit(1, 3), k=2, backend="torch")
    assert idx.tolist() == [[-1, -1]] and torch.isinf(sims).all()


@needs_faiss
def test_torch_faiss_parity():
    x = unit(500, 16, seed=1)
    q = unit(37, 16, seed=2)
    for exclude in (False, True):
        qq = x if exclude else q
        s_t, i_t = knn_search(qq, x, k=10, backend="torch", exclude_self=exclude, block_size=64)
        s_f, i_f = knn_search(qq, x, k=10, backend="faiss", exclude_self=exclude)
        assert torch.allclose(s_t, s_f, atol=1e-5)
        # indices agree except where neighbouring scores tie
        differ = i_t != i_f
        assert ((s_t[differ] - s_f[differ]).abs() < 1e-5).all()
        assert differ.float().mean() < 0.01
        assert (s_t[:, :-1] >= s_t[:, 1:]).all()


def test_numpy_input_and_blocking():
    x = unit(50, 8)
    s1, i1 = knn_search(x.numpy(), x.numpy(), k=5, backend="torch", block_size=7)
    s2, i2 = knn_search(x, x, k=5, backend="torch")
    assert torch.equal(i1, i2) and torch.allclose(s1, s2)


def test_nan_rows_are_counted():
    x = unit(10, 4)
    x[2, 0] = float("nan")
    x[7, 1] = float("inf")
    with pytest.raises(ValueError, match="2 row"):
        knn_search(x, x, k=3, backend="torch")


def test_bad_arguments():
    x = unit(5, 4)
    with pytest.raises(ValueError, match="k must be"):
        knn_search(x, x, k=0)
    with pytest.raises(ValueError, match="backend"):
        knn_search(x, x, k=2, backend="annoy")
    with pytest.raises(ValueError, match="same dim"):
        knn_search(x, unit(5, 3), k=2)
    with pytest.raises(ValueError, match="exclude_self"):
        knn_search(x[:2], x, k=2, exclude_self=True)
    with pytest.raises(TypeError, match="floating"):
        knn_search(torch.ones(3, 2, dtype=torch.int64), x[:, :2], k=1)


def test_missing_faiss(monkeypatch):
    monkeypatch.setattr(knn, "_import_faiss", lambda: None)
    x = unit(6, 3)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        knn_search(x, x, k=2, backend="faiss")
    with pytest.warns(UserWarning, match="pip install faiss-cpu"):
        assert knn.resolve_backend("auto", torch.device("cpu")) == "torch"
    with pytest.warns(UserWarning):
        _, idx = knn_search(x, x, k=2, backend="auto")
    assert idx.shape == (6, 2)


def test_auto_backend_and_single_log_line(monkeypatch, caplog):
    monkeypatch.setattr(knn, "_logged_backends", set())
    with caplog.at_level(logging.INFO, logger="hdl"):
        x = unit(6, 3)
        knn_search(x, x, k=2)
        knn_search(x, x, k=2)
    lines = [r for r in caplog.records if r.name == "hdl" and "kNN backend" in r.getMessage()]
    assert len(lines) == 1
    expected = "faiss" if HAS_FAISS else "torch"
    assert f"kNN backend: {expected}" in lines[0].getMessage()
    if knn.faiss_num_gpus() == 0:
        with pytest.raises(ImportError, match="faiss-gpu"):
            knn_search(x, x, k=2, backend="faiss-gpu")


REAL_FAISS = knn._import_faiss()


def fake_gpu_faiss(broken: bool):
    """A faiss module whose 'GPU' index is the real CPU flat index, or raises like a faiss-gpu wheel
    built for another CUDA runtime."""
    import types

    real = REAL_FAISS

    def resources():
        if broken:
            raise RuntimeError("Error in virtual void faiss::gpu::StandardGpuResourcesImpl::initializeForDevice(int) "
                               "CUDA error 35 CUDA driver version is insufficient for CUDA runtime version")
        return object()

    class Config:
        device = 0

    return types.SimpleNamespace(get_num_gpus=lambda: 1, StandardGpuResources=resources, GpuIndexFlatConfig=Config,
                                 GpuIndexFlatIP=lambda res, dim, cfg: real.IndexFlatIP(dim))


@needs_faiss
def test_auto_falls_back_to_torch_on_the_gpu_when_faiss_gpu_fails(monkeypatch, caplog):
    """faiss reports a GPU but its index fails (CUDA runtime mismatch): one warning naming the
    cause, then torch on the bank's GPU; never an exception.  No real GPU needed: the device is an
    argument."""
    fake = fake_gpu_faiss(broken=True)
    monkeypatch.setattr(knn, "_import_faiss", lambda: fake)
    monkeypatch.setattr(knn, "_logged_backends", set())
    monkeypatch.setattr(knn, "_gpu_checked", {})
    monkeypatch.setattr(knn, "_gpu_resources", {})
    cuda = torch.device("cuda", 0)
    with caplog.at_level(logging.INFO, logger="hdl"):
        with pytest.warns(UserWarning) as record:
            assert knn.resolve_backend("auto", cuda) == "torch"
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the second resolution warns no more
            assert knn.resolve_backend("auto", cuda) == "torch"
    msgs = [str(w.message) for w in record if "faiss-gpu" in str(w.message)]
    assert len(msgs) == 1
    assert "CUDA driver version is insufficient" in msgs[0] and "torch backend on the GPU" in msgs[0]
    assert "CUDA 12 runtime" in msgs[0]
    lines = [r.getMessage() for r in caplog.records if "kNN backend" in r.getMessage()]
    assert lines == ["kNN backend: torch (requested 'auto', input device cuda:0)"]
    # an explicit faiss-gpu is not replaced: it fails with the cause and the way out
    x = unit(6, 3)
    with pytest.raises(RuntimeError, match="backend='faiss-gpu' failed on cpu .*CUDA driver version"):
        knn_search(x, x, k=2, backend="faiss-gpu")


@needs_faiss
def test_auto_picks_a_working_faiss_gpu_and_it_agrees_with_torch(monkeypatch):
    fake = fake_gpu_faiss(broken=False)
    monkeypatch.setattr(knn, "_import_faiss", lambda: fake)
    monkeypatch.setattr(knn, "_logged_backends", set())
    monkeypatch.setattr(knn, "_gpu_checked", {})
    monkeypatch.setattr(knn, "_gpu_resources", {})
    assert knn.resolve_backend("auto", torch.device("cuda")) == "faiss-gpu"
    assert knn.faiss_gpu_problem(torch.device("cuda")) is None
    x = unit(40, 8, seed=4)
    s_gpu, i_gpu = knn_graph(x, k=5, backend="faiss-gpu")  # through faiss.contrib.torch_utils, tensors in and out
    s_t, i_t = knn_graph(x, k=5, backend="torch")
    assert torch.equal(i_gpu, i_t) and torch.allclose(s_gpu, s_t, atol=1e-5)


def test_no_gpu_in_faiss_keeps_a_cuda_bank_on_torch(monkeypatch):
    monkeypatch.setattr(knn, "faiss_num_gpus", lambda: 0)
    monkeypatch.setattr(knn, "_logged_backends", set())
    assert knn.resolve_backend("auto", torch.device("cuda")) == "torch"
    monkeypatch.setattr(knn, "_gpu_checked", {})
    assert "faiss has no GPU" in knn.faiss_gpu_problem(torch.device("cuda")) or knn._import_faiss() is None
