"""A real ``hdl-train`` process killed with SIGKILL (fault injection, ``HDL_FAULT``: mid-step,
inside a refresh, inside a checkpoint write) and resumed with ``--resume True`` ends bit for bit
where the uninterrupted run ends: final checkpoint (weights, EMA, optimizer, scheduler, hook state,
bank, pool, random states), results.json and the per-refresh records."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch
import yaml

pytest.importorskip("semilearn")

from hdl.algorithms.usb.faults import parse  # noqa: E402

CONFIG = dict(algorithm="hdl_fixmatch", dataset="digits", num_classes=10, num_labels=40, num_val=5, img_size=8,
              crop_ratio=0.875, net="cnn_tiny", num_train_iter=16, epoch=2, num_eval_iter=4, num_log_iter=1000,
              batch_size=8, uratio=1, eval_batch_size=512, num_workers=0, seed=5, device="cpu", optim="SGD",
              lr=0.03, momentum=0.9, weight_decay=0.0005, ema_m=0.99, use_tensorboard=False,
              hdl_warmup_iter=4, hdl_refresh_every=4, hdl_embed="ema_pass", overwrite=False)


def hdl_train(tmp_path, name, fault=None, resume=False):
    cfg = dict(CONFIG, save_dir=str(tmp_path), save_name=name, resume=resume)
    path = os.path.join(str(tmp_path), f"{name}.yaml")
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env.pop("HDL_FAULT", None)
    if fault:
        env["HDL_FAULT"] = fault
    return subprocess.run([sys.executable, "-m", "hdl.algorithms.run.cli", "--config", path, "--no-progress"],
                          env=env, capture_output=True, text=True, timeout=600)


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        elif isinstance(v, (list, tuple)) and k == "param_groups":
            for i, g in enumerate(v):
                out.update(flatten({kk: vv for kk, vv in g.items() if kk != "params"}, f"{prefix}{k}.{i}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_state(run_dir):
    """Final checkpoint (flattened, without wall time and run names), results and refresh records."""
    ckpt = flatten(torch.load(os.path.join(run_dir, "latest_model.pth"), map_location="cpu", weights_only=False))
    ckpt = {k: v for k, v in ckpt.items() if k != "wall_seconds" and not k.startswith("settings.")}
    with open(os.path.join(run_dir, "results.json")) as f:
        res = json.load(f)
    for k in ("wall_seconds", "settings", "resume_changes"):
        res.pop(k)
    with open(os.path.join(run_dir, "hdl_refresh.jsonl")) as f:
        records = [json.loads(line) for line in f]
    for r in records:
        r.pop("hdl/refresh_sec")
    return ckpt, res, records


def assert_same_run(a, b):
    (ca, ra, la), (cb, rb, lb) = a, b
    assert set(ca) == set(cb), set(ca) ^ set(cb)
    for k in ca:
        if torch.is_tensor(ca[k]):
            assert torch.equal(ca[k], cb[k]), k
        else:
            assert json.dumps(ca[k]) == json.dumps(cb[k]), (k, ca[k], cb[k])
    assert json.dumps(ra, sort_keys=True) == json.dumps(rb, sort_keys=True)
    assert json.dumps(la) == json.dumps(lb)


# (HDL_FAULT, what the killed run left: the iteration of its last checkpoint)
KILLS = [
    ("step:7", 4),                # mid-step at iteration 7 (index 6); last checkpoint at 4
    ("refresh:2", 4),             # inside the refresh of iteration 8, before the pool is replaced
    ("checkpoint_rotate:1", 4),   # writing the checkpoint of 8: latest moved to previous, new one not in place
]


def test_fault_spec_is_checked():
    assert parse("step:7,refresh:1") == {"step": 7, "refresh": 1}
    with pytest.raises(ValueError, match="HDL_FAULT: expected POINT:N"):
        parse("stpe:1")


@pytest.mark.slow
def test_sigkill_then_resume_is_bit_identical(tmp_path):
    ref = hdl_train(tmp_path, "ref")
    assert ref.returncode == 0, ref.stderr[-2000:]
    expected = run_state(os.path.join(str(tmp_path), "ref"))
    assert [r["it"] for r in expected[2]] == [4, 8, 12, 16]
    for fault, last_ckpt in KILLS:
        name = "kill_" + fault.replace(":", "_")
        run_dir = os.path.join(str(tmp_path), name)
        killed = hdl_train(tmp_path, name, fault=fault)
        assert killed.returncode == -signal.SIGKILL, (fault, killed.returncode, killed.stderr[-2000:])
        assert not os.path.exists(os.path.join(run_dir, "results.json"))
        resumed = hdl_train(tmp_path, name, resume=True)
        assert resumed.returncode == 0, (fault, resumed.stderr[-2000:])
        with open(os.path.join(run_dir, "log.txt")) as f:
            log = f.read()
        assert f"at iteration {last_ckpt}" in log, fault
        if fault.startswith("checkpoint_rotate"):
            # the kill left no latest_model.pth: the resume fell back to the previous one and said so
            assert "latest_model.pth is missing" in resumed.stderr and "previous_model.pth" in resumed.stderr
        # nothing half-written is left behind
        assert not [f for f in os.listdir(run_dir) if f.startswith(".")], os.listdir(run_dir)
        assert_same_run(run_state(run_dir), expected)
        with open(os.path.join(run_dir, "results.json")) as f:
            wall = json.load(f)["wall_seconds"]
        assert wall > 0
