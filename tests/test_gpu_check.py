"""The CPU-runnable parts of the GPU check (scripts/gpu_check.sh, scripts/gpu_check.py): the whole
script in its quick form on the CPU, and a training part that fails when HDL's step reads a value
back to the host."""
import json
import os
import re
import subprocess
import sys

import pytest

pytest.importorskip("semilearn")

ROOT = os.path.join(os.path.dirname(__file__), "..")


@pytest.mark.slow
def test_gpu_check_quick_on_the_cpu(tmp_path):
    env = dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path), OMP_NUM_THREADS="1")
    env.pop("HDL_WHEELS", None)
    p = subprocess.run(["bash", os.path.join(ROOT, "scripts", "gpu_check.sh"), "--device", "cpu", "--quick"],
                       capture_output=True, text=True, env=env, timeout=300)
    out = p.stdout
    assert p.returncode == 0, out + p.stderr
    assert "PASS: env:" in out
    assert "SKIPPED: faiss has no GPU" in out or "PASS: faiss-gpu vs torch" in out
    assert re.search(r"^SUMMARY: \d+ passed, 0 failed, \d+ skipped", out, re.M)
    assert re.search(r"^PASS: refresh 2000 x 128 on cpu, backend torch, index exact: [\d.]+ s", out, re.M)
    line = next(l for l in out.splitlines() if l.startswith("PASS: train hdl_fixmatch"))
    # the printed pool accuracy (from the pool object) is the one the run's refresh record logged
    printed = float(re.search(r"pool_acc=([\d.]+)", line).group(1))
    with open(tmp_path / "gpu_check" / "runs" / "hdl_fixmatch" / "hdl_refresh.jsonl") as f:
        last = [json.loads(r) for r in f if r.strip()][-1]
    assert last["it"] == 6 and printed == pytest.approx(last["hdl/pool_acc"], abs=1e-4)
    assert int(re.search(r"(\d+) per-step blocks checked", line).group(1)) > 6
    assert (tmp_path / "gpu_check" / "report.txt").read_text().count("PASS: ") == out.count("PASS: ")


def test_the_training_part_fails_when_a_step_reads_back(tmp_path, monkeypatch, capsys):
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    from hdl.algorithms.usb.hdl_wrapper import HDLMixin

    inner = HDLMixin._update_bank

    def with_a_read(self, feat, idx_lb, idx_ulb, keep=None):
        float(self.bank.counts.sum())  # a host read in HDL's per-step code
        return inner(self, feat, idx_lb, idx_ulb, keep)
    monkeypatch.setattr(HDLMixin, "_update_bank", with_a_read)
    rc = gpu_check.main(["train", "--device", "cpu", "--quick", "--algorithms", "hdl_fixmatch", "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert rc == 1 and out.startswith("FAIL: train hdl_fixmatch on cpu: HostSyncError: Tensor.__float__")


def test_stand_ins_for_modules_semilearn_imports_but_the_gpu_machine_lacks(monkeypatch):
    sys.path.insert(0, os.path.join(ROOT, "scripts"))
    try:
        import gpu_check
    finally:
        sys.path.pop(0)
    name = "hdl_absent_module_for_this_test"
    monkeypatch.delitem(sys.modules, name, raising=False)
    assert gpu_check.stand_in_for_unused_imports((name, "json")) == [name]  # json is installed: left alone
    mod = __import__(name)
    with pytest.raises(AttributeError, match="not installed here .*stand-in"):
        mod.init()
    sys.modules.pop(name)
