import pytest
import torch

from hdl.bank import EmbeddingBank


def test_update_normalises_detaches_and_counts(device):
    bank = EmbeddingBank(5, 2, device=device)
    x = torch.tensor([[3.0, 4.0], [0.0, 2.0]], requires_grad=True, device=device)
    bank.update(torch.tensor([1, 3], device=device), x * 1)
    assert bank.features().device.type == device.type
    assert torch.allclose(bank.features()[1].cpu(), torch.tensor([0.6, 0.8]))
    assert torch.allclose(bank.features()[3].cpu(), torch.tensor([0.0, 1.0]))
    assert not bank.features().requires_grad
    assert bank.filled.tolist() == [False, True, False, True, False] and bank.num_filled == 2
    assert bank.features()[0].abs().sum() == 0


def test_duplicate_indices_last_wins(device):
    bank = EmbeddingBank(3, 2, device=device)
    bank.update(torch.tensor([2, 0, 2]), torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, -5.0]]))
    assert torch.allclose(bank.features()[2].cpu(), torch.tensor([0.0, -1.0]))
    assert bank.counts.tolist() == [1, 0, 2]


def test_state_round_trip_and_checks(device):
    bank = EmbeddingBank(4, 3, device=device)
    g = torch.Generator().manual_seed(0)
    bank.update(torch.tensor([0, 2]), torch.randn(2, 3, generator=g))
    state = bank.state_dict()
    other = EmbeddingBank(4, 3, device=device)
    other.load_state_dict(state)
    assert torch.equal(other.features(), bank.features()) and torch.equal(other.counts, bank.counts)
    state["feats"][0, 0] = 99.0  # a copy: the bank is unchanged
    assert bank.features()[0, 0] != 99.0
    with pytest.raises(ValueError, match=r"\(5, 3\)"):
        EmbeddingBank(5, 3).load_state_dict(bank.state_dict())
    with pytest.raises(ValueError, match="missing"):
        other.load_state_dict({"feats": state["feats"]})


def test_bad_updates():
    bank = EmbeddingBank(3, 2)
    with pytest.raises(ValueError, match=r"\[0, 3\)"):
        bank.update(torch.tensor([3]), torch.ones(1, 2))
    with pytest.raises(ValueError, match="shape"):
        bank.update(torch.tensor([0]), torch.ones(1, 3))
    with pytest.raises(TypeError, match="idx"):
        bank.update(torch.tensor([0.0]), torch.ones(1, 2))
    with pytest.raises(ValueError, match="NaN"):
        bank.update(torch.tensor([0]), torch.tensor([[float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="num_samples"):
        EmbeddingBank(0, 2)
    assert EmbeddingBank(2, 2, device="cpu").features().device.type == "cpu"
