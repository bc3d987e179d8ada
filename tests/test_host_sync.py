"""HDL's own per-step code reads no tensor value on the host (no device->host synchronisation on
CUDA).  On the CPU nothing synchronises, so the check here makes every host read of a tensor
(``item``, ``bool``, ``int``, ``float``, ``tolist``, ...) raise inside HDL's per-step blocks
(:func:`hdl.algorithms.usb.host_sync.per_step`); ``scripts/gpu_check.py`` runs the same blocks
under ``torch.cuda.set_sync_debug_mode("error")``."""
import os

import pytest
import torch

pytest.importorskip("semilearn")

import hdl.algorithms  # noqa: E402,F401
from hdl.algorithms.run import runner  # noqa: E402
from hdl.algorithms.run.config import load_yaml, resolve_config  # noqa: E402
from hdl.algorithms.usb import host_sync  # noqa: E402
from hdl.algorithms.usb.host_sync import HostSyncError, checking, forbid_host_reads, no_host_sync  # noqa: E402
from semilearn.algorithms import name2alg  # noqa: E402
from semilearn.core.hooks import Hook  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "digits")
BASES = ("fixmatch", "freematch", "mixmatch", "remixmatch")


def make_args(base, tmp_path, name, **over):
    cfg = load_yaml(os.path.join(CONFIGS, f"{base}.yaml"))
    cfg.update(dict(algorithm=f"hdl_{base}", num_train_iter=6, num_eval_iter=1000, num_log_iter=1000, batch_size=8,
                    uratio=1, net="cnn_tiny", eval_batch_size=512, save_dir=str(tmp_path), save_name=name,
                    device="cpu", num_val=5, seed=7, hdl_warmup_iter=3, hdl_refresh_every=100, hdl_embed="ema_pass"))
    cfg.update(over)
    return resolve_config(cfg, list(name2alg.keys()))


class Counter:
    """Counts the per-step blocks entered, under the check."""

    def __init__(self, check):
        self.check, self.blocks = check, 0

    def __call__(self):
        self.blocks += 1
        return self.check()


class Injected(Hook):
    def __init__(self):
        self.rows = []

    def after_train_step(self, algorithm):
        if "hdl/injected_rows" in algorithm.log_dict:
            self.rows.append(float(algorithm.log_dict["hdl/injected_rows"]))


def train_checked(args):
    torch.set_num_threads(1)
    a = runner.build_algorithm(args, tb=False)
    inj = Injected()
    a.register_hook(inj, "Injected", "LOWEST")
    counter = Counter(forbid_host_reads)
    with checking(counter):
        a.train()
    return a, inj.rows, counter.blocks


@pytest.mark.parametrize("base", BASES)
def test_per_step_code_reads_nothing_on_the_host(base, tmp_path):
    a, injected, blocks = train_checked(make_args(base, tmp_path, "sync"))
    assert len(injected) == 3 and sum(injected) > 0  # HDL was active in the last 3 steps and injected rows
    # per step the bank/diagnostics update; once active also the targets and each role of the seam
    assert blocks >= 6 + 3 * 2


def test_bank_mode_writes_the_bank_without_host_reads(tmp_path):
    a, injected, _ = train_checked(make_args("fixmatch", tmp_path, "bank", hdl_embed="bank", hdl_blend_model="train"))
    assert len(injected) == 3  # active after the refresh of iteration 3 (few rows: the bank holds 6 batches)
    # every sample of the 6 batches is in the bank, and nothing else
    assert 0 < a.bank.num_filled <= 6 * (8 + 8) and int(a.bank.counts.sum()) == 6 * (8 + 8)


def test_pool_mode_reads_only_the_mixed_row_count(tmp_path):
    """Pool mode reads the number of mixed rows (outside the checked blocks); the rest is checked."""
    a, injected, _ = train_checked(make_args("fixmatch", tmp_path, "pool", hdl_use="pool"))
    assert injected == [0.0, 0.0, 0.0]


def test_the_check_fails_when_a_host_read_is_added(tmp_path, monkeypatch):
    """The test above can fail: a host read put back into the target building (the former
    ``if not has.any(): return None``) raises under the check."""
    from hdl.algorithms.usb.hdl_wrapper import HDLMixin

    inner = HDLMixin._batch_targets

    def with_a_sync(self, idx_ulb):
        t = inner(self, idx_ulb)
        return t if t.rows.any() else None
    monkeypatch.setattr(HDLMixin, "_batch_targets", with_a_sync)
    with pytest.raises(HostSyncError, match="__bool__"):
        train_checked(make_args("fixmatch", tmp_path, "mutant"))


def test_forbid_host_reads_refuses_each_read_and_restores():
    t = torch.tensor([1.5])
    with forbid_host_reads():
        for read in (t.item, t.tolist, t.numpy, lambda: bool(t), lambda: int(t), lambda: float(t),
                     lambda: [0, 1][torch.tensor(1)], lambda: f"{t[0]:.2f}"):
            with pytest.raises(HostSyncError):
                read()
        u = t * 2  # device work is allowed
    assert u.item() == 3.0 and bool(t) and int(t) == 1 and float(t) == 1.5 and [0, 1][torch.tensor(1)] == 1


def test_no_check_outside_checking_and_no_host_sync_is_a_no_op_on_the_cpu():
    with host_sync.per_step():
        assert torch.tensor(1).item() == 1
    with checking(lambda: no_host_sync("cpu")):
        with host_sync.per_step():
            assert torch.tensor(2).item() == 2
    assert host_sync._check is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_no_host_sync_raises_on_a_cuda_sync():
    x = torch.ones(3, device="cuda")
    with no_host_sync("cuda"):
        y = x * 2
        with pytest.raises(RuntimeError):
            y.sum().item()
    assert torch.cuda.get_sync_debug_mode() == 0
