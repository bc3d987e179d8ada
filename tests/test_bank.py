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


def test_unchecked_update_equals_the_checked_one_and_reads_nothing_on_the_host(device):
    pytest.importorskip("semilearn")
    from hdl.algorithms.usb.host_sync import forbid_host_reads

    g = torch.Generator().manual_seed(1)
    idx = torch.tensor([4, 1, 4, 0, 1, 4], device=device)
    x = torch.randn(6, 3, generator=g).to(device)
    checked, unchecked = EmbeddingBank(6, 3, device=device), EmbeddingBank(6, 3, device=device)
    checked.update(idx, x)
    with forbid_host_reads():
        unchecked.update(idx, x, check=False)
    assert torch.equal(checked.features(), unchecked.features()) and torch.equal(checked.counts, unchecked.counts)
    assert torch.allclose(checked.features()[4], torch.nn.functional.normalize(x[5], dim=0))  # the last one
    assert checked.counts.tolist() == [1, 2, 0, 0, 3, 0]
    with pytest.raises(ValueError, match="shape"):  # types and shapes are checked either way
        unchecked.update(idx, x[:, :2], check=False)


def test_float16_bank_halves_memory_and_round_trips(device):
    g = torch.Generator().manual_seed(2)
    x = torch.randn(4, 8, generator=g).to(device)
    b32 = EmbeddingBank(4, 8, device=device)
    b16 = EmbeddingBank(4, 8, device=device, dtype=torch.float16)
    for b in (b32, b16):
        b.update(torch.arange(4, device=device), x)
    assert b16.features().dtype == torch.float16 and b16.features().element_size() == 2
    assert b32.features().element_size() == 4
    assert b16.features().nbytes * 2 == b32.features().nbytes
    # the float16 rows are the float32 ones rounded
    assert torch.equal(b16.features(), b32.features().half())
    state = b16.state_dict()
    assert state["feats"].dtype == torch.float16  # saved in the dtype it holds
    again = EmbeddingBank(4, 8, device=device, dtype=torch.float16)
    again.load_state_dict(state)
    assert torch.equal(again.features(), b16.features()) and torch.equal(again.counts, b16.counts)
    cast = EmbeddingBank(4, 8, device=device, dtype=torch.float16)
    cast.load_state_dict(b32.state_dict())  # a float32 state into a float16 bank: cast
    assert cast.features().dtype == torch.float16 and torch.equal(cast.features(), b16.features())
    up = EmbeddingBank(4, 8, device=device)
    up.load_state_dict(state)  # and back: float16 values, exactly, in float32
    assert up.features().dtype == torch.float32 and torch.equal(up.features(), b16.features().float())
    with pytest.raises(ValueError, match="dtype must be one of"):
        EmbeddingBank(4, 8, dtype=torch.bfloat16)


def test_labels_from_a_float16_bank_equal_the_float32_ones():
    """Three well-separated clusters of 40 points, 2 given labels each: the same HDL labels."""
    from hdl.refresh import refresh

    g = torch.Generator().manual_seed(3)
    centres = torch.nn.functional.normalize(torch.randn(3, 16, generator=g), dim=1) * 4
    x = torch.cat([c + 0.3 * torch.randn(40, 16, generator=g) for c in centres])
    labels = torch.full((120,), -1, dtype=torch.long)
    labels[[0, 1, 40, 41, 80, 81]] = torch.tensor([0, 0, 1, 1, 2, 2])
    out = {}
    for dtype in (torch.float32, torch.float16):
        bank = EmbeddingBank(120, 16, dtype=dtype)
        bank.update(torch.arange(120), x)
        out[dtype] = refresh(bank.features(), labels, 3, normalize=False, backend="torch").result.labels
    assert torch.equal(out[torch.float16], out[torch.float32])
    assert out[torch.float32].tolist() == [0] * 40 + [1] * 40 + [2] * 40
