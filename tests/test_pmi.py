import math

import pytest
import torch

from hdl.pmi import cooccurrence_from_knn, pmi_decode, pmi_embeddings, pmi_loss, pmi_targets, ppmi


def test_cooccurrence_from_knn_hand_computed():
    labels = torch.tensor([0, 1, 0, -1])
    neighbors = torch.tensor([[1, 2], [0, -1], [0, 3], [0, 1]])
    # labeled pairs: (0,1) (0,0) from sample 0, (1,0) from sample 1, (0,0) from sample 2
    m = cooccurrence_from_knn(neighbors, labels, 2, symmetric=False)
    torch.testing.assert_close(m, torch.tensor([[2.0, 1.0], [1.0, 0.0]], dtype=torch.float64))
    m3 = cooccurrence_from_knn(torch.tensor([[1], [2], [0]]), torch.tensor([0, 1, 2]), 3)
    torch.testing.assert_close(m3, (torch.ones(3, 3) - torch.eye(3)).double() / 2)


def test_ppmi_hand_computed():
    counts = torch.tensor([[2.0, 0.0], [0.0, 2.0]])
    torch.testing.assert_close(ppmi(counts, smoothing=0.0), math.log(2) * torch.eye(2, dtype=torch.float64))
    # smoothing 1: p = [[3, 1], [1, 3]] / 8, p_i = 1/2: diag log(1.5), off-diagonal log(0.5) -> 0
    torch.testing.assert_close(ppmi(counts), math.log(1.5) * torch.eye(2, dtype=torch.float64))
    full = ppmi(counts, positive=False)
    assert full[0, 1].item() == pytest.approx(math.log(0.5))
    with pytest.raises(ValueError, match="-inf"):
        ppmi(counts, smoothing=0.0, positive=False)


def test_embeddings_reproduce_positive_part():
    torch.manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(6, 6, dtype=torch.float64))
    lam = torch.tensor([3.0, 2.0, 1.0, 0.0, -1.0, -2.0], dtype=torch.float64)
    m = u @ torch.diag(lam) @ u.T
    e = pmi_embeddings(m)
    assert e.shape == (6, 3)
    torch.testing.assert_close(e @ e.T, u @ torch.diag(lam.clamp_min(0)) @ u.T)
    e2 = pmi_embeddings(m, dim=2)
    torch.testing.assert_close(e2 @ e2.T, u[:, :2] @ torch.diag(lam[:2]) @ u[:, :2].T)
    assert (e.abs().argmax(0) == e.argmax(0)).all()  # sign convention


def test_embeddings_of_psd_ppmi_are_exact():
    counts = torch.tensor([[50.0, 10, 0], [10, 40, 5], [0, 5, 30]])
    p = ppmi(counts)
    e = pmi_embeddings(p)
    vals = torch.linalg.eigvalsh(p)
    if (vals > 0).all():
        torch.testing.assert_close(e @ e.T, p)
    torch.testing.assert_close(e @ e.T, _positive_part(p))


def _positive_part(a):
    v, u = torch.linalg.eigh(a)
    return u @ torch.diag(v.clamp_min(0)) @ u.T


def test_targets_loss_and_decode():
    e = torch.tensor([[2.0, 0.0], [0.0, 3.0], [1.0, 1.0]], dtype=torch.float64)
    t = pmi_targets(torch.tensor([0, 1, 2]), e)
    torch.testing.assert_close(t.norm(dim=1), torch.ones(3, dtype=torch.float64))
    torch.testing.assert_close(t[0], torch.tensor([1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(pmi_targets(torch.tensor([[1.0, 1.0, 0.0]], dtype=torch.float64), e),
                               torch.tensor([[2.0, 3.0]], dtype=torch.float64) / math.sqrt(13))
    assert pmi_decode(t, e)[0].tolist() == [0, 1, 2]
    assert pmi_loss(t, t).item() == pytest.approx(0.0, abs=1e-12)
    assert pmi_loss(t[:1], t[1:2]).item() == pytest.approx(1.0)
    assert pmi_loss(-t, t, reduction="none").tolist() == pytest.approx([2.0, 2.0, 2.0])
    pred = torch.zeros(0, 2, requires_grad=True)
    empty = pmi_loss(pred, t[:0])
    empty.backward()
    assert empty.item() == 0.0


def test_pipeline_from_knn_graph_decodes_each_class():
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    neighbors = torch.tensor([[1, 2], [0, -1], [3, 0], [2, -1], [5, 3], [4, -1]])
    e = pmi_embeddings(ppmi(cooccurrence_from_knn(neighbors, labels, 3)))
    assert pmi_decode(pmi_targets(torch.arange(3), e), e)[0].tolist() == [0, 1, 2]


def test_validation():
    with pytest.raises(ValueError, match="symmetric"):
        pmi_embeddings(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="positive eigenvalue"):
        pmi_embeddings(-torch.eye(2))
    with pytest.raises(ValueError, match="labels must lie"):
        cooccurrence_from_knn(torch.tensor([[0]]), torch.tensor([3]), 2)
    with pytest.raises(ValueError, match="non-negative"):
        ppmi(-torch.eye(2))
    with pytest.raises(ValueError, match="dim"):
        pmi_embeddings(torch.eye(2), dim=0)
