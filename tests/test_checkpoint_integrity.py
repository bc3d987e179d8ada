"""Checkpoint integrity and the run directory's housekeeping: checksums verified before loading, the
previous checkpoint as fallback (with a message naming both files), one line when none is usable,
temp files of interrupted writes removed, refresh records cut back to the restored iteration,
``overwrite`` clearing the old run, ``wall_seconds`` summed over segments, resume validation."""
import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("semilearn")

import hdl.algorithms  # noqa: E402,F401
from hdl.algorithms.run import runner  # noqa: E402
from hdl.algorithms.run.cli import eval_main, train_main  # noqa: E402
from hdl.algorithms.run.config import load_yaml, resolve_config  # noqa: E402
from hdl.algorithms.usb.checkpoint_io import (CheckpointError, choose_resume_checkpoint, load_checkpoint,  # noqa: E402
                                              remove_stale_temps, save_checkpoint, verify_checkpoint)
from semilearn.algorithms import name2alg  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "digits")


def args_for(tmp_path, name="run", **over):
    cfg = load_yaml(os.path.join(CONFIGS, "hdl_fixmatch.yaml"))
    cfg.update(dict(num_train_iter=4, num_eval_iter=2, num_log_iter=1000, batch_size=8, uratio=1, net="cnn_tiny",
                    eval_batch_size=512, save_dir=str(tmp_path), save_name=name, device="cpu", num_val=5, seed=2,
                    hdl_warmup_iter=2, hdl_refresh_every=2, hdl_embed="bank", hdl_blend_model="train",
                    overwrite=False))
    cfg.update(over)
    return resolve_config(cfg, list(name2alg.keys()))


def train(tmp_path, **over):
    torch.set_num_threads(1)
    return runner.train(args_for(tmp_path, **over), progress=False)


# ----------------------------------------------------------------------------- the file layer
def damage(path, how):
    size = os.path.getsize(path)
    with open(path, "r+b") as f:
        if how == "zeros":  # 8 KB of zeros inside the stored weights
            f.seek(size // 2)
            f.write(b"\0" * 8192)
        elif how == "random":
            f.seek(size // 3)
            f.write(np.random.default_rng(0).bytes(4096))
        elif how == "truncated":
            f.truncate(size // 2)
        elif how == "empty":
            f.truncate(0)


@pytest.mark.parametrize("how,reason", [("zeros", "checksum mismatch"), ("random", "checksum mismatch"),
                                        ("truncated", "bytes, expected"), ("empty", "0 bytes, expected")])
def test_damaged_file_is_caught_before_loading(tmp_path, how, reason):
    path = os.path.join(str(tmp_path), "latest_model.pth")
    save_checkpoint({"model": {"w": torch.arange(20000.0)}}, path)
    assert verify_checkpoint(path) is None
    assert torch.equal(load_checkpoint(path)["model"]["w"], torch.arange(20000.0))
    damage(path, how)
    assert reason in verify_checkpoint(path)
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is damaged: .*{reason}"):
        load_checkpoint(path)


def test_checkpoint_without_checksum_still_loads_and_a_broken_one_is_named(tmp_path):
    path = os.path.join(str(tmp_path), "old.pth")
    torch.save({"model": {}}, path)  # written before checksums
    assert verify_checkpoint(path) is None and load_checkpoint(path) == {"model": {}}
    with open(path, "wb") as f:
        f.write(b"not a checkpoint")
    with pytest.raises(CheckpointError, match=f"checkpoint {path} is damaged or not a checkpoint"):
        load_checkpoint(path)


def test_previous_checkpoint_is_kept_and_temp_files_are_removed(tmp_path):
    d = str(tmp_path)
    latest = os.path.join(d, "latest_model.pth")
    save_checkpoint({"model": {}, "it": 1}, latest, keep_previous=True)
    save_checkpoint({"model": {}, "it": 2}, latest, keep_previous=True)
    assert load_checkpoint(latest)["it"] == 2
    assert load_checkpoint(os.path.join(d, "previous_model.pth"))["it"] == 1
    for name in (".latest_model.pth.abc123.tmp", ".latest_model.pth.sha256.x.tmp", ".tmp.k2j3", ".model_best.pth.q9"):
        open(os.path.join(d, name), "wb").close()
    open(os.path.join(d, ".keepme"), "wb").close()
    assert sorted(remove_stale_temps(d)) == sorted([".latest_model.pth.abc123.tmp", ".latest_model.pth.sha256.x.tmp",
                                                    ".tmp.k2j3", ".model_best.pth.q9"])
    assert os.path.exists(os.path.join(d, ".keepme"))


def test_failed_write_leaves_no_temp_file_and_names_the_path(tmp_path):
    class Unpicklable:
        def __reduce__(self):
            raise OSError(28, "No space left on device")

    path = os.path.join(str(tmp_path), "latest_model.pth")
    with pytest.raises(OSError, match=f"cannot write checkpoint {path}: No space left on device"):
        save_checkpoint({"model": Unpicklable()}, path)
    assert os.listdir(str(tmp_path)) == []


def test_choose_resume_checkpoint_messages(tmp_path):
    d = str(tmp_path)
    with pytest.raises(CheckpointError, match=r"resume: no checkpoint in .* \(no latest_model.pth\); check save_dir"):
        choose_resume_checkpoint(d)
    latest = os.path.join(d, "latest_model.pth")
    w = torch.arange(20000.0)
    save_checkpoint({"model": {"w": w}, "it": 1}, latest, keep_previous=True)
    save_checkpoint({"model": {"w": w}, "it": 2}, latest, keep_previous=True)
    assert choose_resume_checkpoint(d) == (latest, [])
    damage(latest, "zeros")
    path, notes = choose_resume_checkpoint(d)
    prev = os.path.join(d, "previous_model.pth")
    assert path == prev
    assert len(notes) == 1 and notes[0].startswith(f"resume: {latest} is damaged (checksum mismatch (sha256 ")
    assert notes[0].endswith(f"; resuming from the previous checkpoint {prev}")
    damage(prev, "truncated")
    with pytest.raises(CheckpointError, match="resume: no usable checkpoint in .*: latest_model.pth checksum mismatch"
                                              ".*; previous_model.pth .* bytes, expected"):
        choose_resume_checkpoint(d)


# ----------------------------------------------------------------------------- through hdl-train
def test_damaged_latest_checkpoint_resumes_from_the_previous_one(tmp_path, caplog):
    train(tmp_path)
    run_dir = os.path.join(str(tmp_path), "run")
    latest, prev = os.path.join(run_dir, "latest_model.pth"), os.path.join(run_dir, "previous_model.pth")
    damage(latest, "zeros")
    with caplog.at_level("WARNING", logger="hdl"):
        res = train(tmp_path, resume=True, num_train_iter=6)
    msgs = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any(latest in m and "is damaged" in m and prev in m for m in msgs), msgs
    assert res["iterations"] == 6
    assert res["resume_changes"] == {"num_train_iter": [4, 6]}
    # both damaged: one line, nothing rewritten
    damage(latest, "zeros")
    damage(prev, "random")
    before = {f: os.path.getmtime(os.path.join(run_dir, f)) for f in os.listdir(run_dir)}
    with pytest.raises(ValueError, match="resume: no usable checkpoint in"):
        train(tmp_path, resume=True, num_train_iter=8)
    assert before == {f: os.path.getmtime(os.path.join(run_dir, f)) for f in os.listdir(run_dir)}


def test_resume_cuts_refresh_records_and_sums_wall_seconds(tmp_path):
    first = train(tmp_path)
    run_dir = os.path.join(str(tmp_path), "run")
    rec = os.path.join(run_dir, "hdl_refresh.jsonl")
    with open(rec) as f:
        assert [json.loads(line)["it"] for line in f] == [2, 4]
    # as if a kill came after the refresh of 6 and before its checkpoint: a record the resume redoes
    with open(rec, "a") as f:
        f.write(json.dumps({"it": 6, "hdl/pool_size": 1.0}) + "\n" + '{"it": 8, "hdl/po')
    ckpt_wall = torch.load(os.path.join(run_dir, "latest_model.pth"), weights_only=False)["wall_seconds"]
    assert 0 < ckpt_wall <= first["wall_seconds"]
    second = train(tmp_path, resume=True, num_train_iter=6)
    with open(rec) as f:
        records = [json.loads(line) for line in f]
    assert [r["it"] for r in records] == [2, 4, 6] and records[2]["hdl/pool_size"] != 1.0
    with open(os.path.join(run_dir, "log.txt")) as f:
        assert "(2 refresh record(s) after it dropped)" in f.read()
    # the second segment's figure includes the first one's training time
    assert second["wall_seconds"] > ckpt_wall


@pytest.mark.slow
def test_resume_removes_tensorboard_events_after_the_restored_iteration(tmp_path):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from torch.utils.tensorboard import SummaryWriter

    train(tmp_path)  # 4 iterations, checkpoint at 4
    run_dir = os.path.join(str(tmp_path), "run")
    tb = os.path.join(run_dir, "tensorboard")
    # as if a kill came after iteration 5 was logged: a file with one event before and one after
    w = SummaryWriter(tb, filename_suffix=".killed")
    w.add_scalar("eval/top-1-acc", 0.25, 3)
    w.add_scalar("eval/top-1-acc", 123.0, 5)
    w.close()
    killed = next(p for p in (os.path.join(tb, n) for n in os.listdir(tb)) if p.endswith(".killed"))
    train(tmp_path, resume=True, num_train_iter=6)

    from tensorboard.util import tensor_util

    def value(v):
        return float(v.simple_value) if v.HasField("simple_value") else float(tensor_util.make_ndarray(v.tensor))

    def scalars(path):
        return [(v.tag, e.step, round(value(v), 4)) for e in EventFileLoader(path).Load()
                if e.HasField("summary") for v in e.summary.value]

    assert scalars(killed) == [("eval/top-1-acc", 3, 0.25)]  # rewritten in place, the later event gone
    every = [s for n in os.listdir(tb) for s in scalars(os.path.join(tb, n))]
    assert not [s for s in every if s[2] == 123.0]
    steps = [s[1] for s in every if s[0] == "eval/top-1-acc"]
    assert sorted(steps) == [2, 3, 4, 6]  # the resumed segment logged 6 once; 2 and 4 from the first
    with open(os.path.join(run_dir, "log.txt")) as f:
        assert "(1 TensorBoard event(s) after it removed)" in f.read()


def test_overwrite_clears_the_old_run(tmp_path):
    train(tmp_path, use_tensorboard=True)
    run_dir = os.path.join(str(tmp_path), "run")
    open(os.path.join(run_dir, "notes.md"), "w").close()  # not the run's: kept
    open(os.path.join(run_dir, "predictions_test_best.csv"), "w").close()
    events = os.listdir(os.path.join(run_dir, "tensorboard"))
    assert events
    with pytest.raises(ValueError, match="already holds a run; pass --overwrite True to replace it or --resume True"):
        train(tmp_path)
    train(tmp_path, overwrite=True, num_train_iter=2)
    with open(os.path.join(run_dir, "log.txt")) as f:
        assert f.read().count("resumed from") == 0
    with open(os.path.join(run_dir, "hdl_refresh.jsonl")) as f:
        assert [json.loads(line)["it"] for line in f] == [2]  # the old run's records are gone
    assert not set(events) & set(os.listdir(os.path.join(run_dir, "tensorboard")))
    assert os.path.exists(os.path.join(run_dir, "notes.md"))
    assert not os.path.exists(os.path.join(run_dir, "predictions_test_best.csv"))
    with open(os.path.join(run_dir, "log.txt")) as f:
        assert f.read().count("dataset digits:") == 1  # one run's log, not two


# ----------------------------------------------------------------------------- resume validation
@pytest.mark.parametrize("over,message", [
    (dict(net="cnn_small"), "net: saved 'cnn_tiny', requested 'cnn_small'"),
    (dict(num_labels=80), "num_labels: saved 40, requested 80"),
    (dict(seed=3, dataset="digits"), "seed: saved 2, requested 3"),
])
def test_resume_refuses_keys_that_change_what_the_checkpoint_means(tmp_path, over, message):
    train(tmp_path)
    run_dir = os.path.join(str(tmp_path), "run")
    with open(os.path.join(run_dir, "config.yaml")) as f:
        saved = f.read()
    with pytest.raises(ValueError, match="resume: .* was trained with another config \\(" + message):
        train(tmp_path, resume=True, **over)
    with open(os.path.join(run_dir, "config.yaml")) as f:
        assert f.read() == saved  # nothing was rewritten


def test_resume_with_a_mistyped_run_name_is_an_error(tmp_path, capsys):
    cfg = os.path.join(str(tmp_path), "c.yaml")
    with open(cfg, "w") as f:
        f.write(f"algorithm: fixmatch\ndataset: digits\nnum_classes: 10\nnum_labels: 40\nsave_dir: {tmp_path}\n"
                "save_name: no_such_run\nresume: true\ndevice: cpu\n")
    assert train_main(["--config", cfg, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"hdl-train: error: resume: no checkpoint in {tmp_path}/no_such_run (no latest_model.pth); "
                   "check save_dir and save_name, or set resume: False to start a new run"]


def test_hdl_eval_on_a_damaged_best_checkpoint_is_one_line(tmp_path, capsys):
    train(tmp_path)
    run_dir = os.path.join(str(tmp_path), "run")
    best = os.path.join(run_dir, "model_best.pth")
    damage(best, "zeros")
    assert eval_main(["--run", run_dir]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"hdl-eval: error: checkpoint {best} is damaged: checksum mismatch")


def test_full_disk_during_training_is_one_line(tmp_path, capsys, monkeypatch):
    from hdl.algorithms.usb import checkpoint_io

    def full(obj, f):
        f.write(b"x" * 100)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(checkpoint_io.torch, "save", full)
    cfg = os.path.join(str(tmp_path), "c.yaml")
    with open(cfg, "w") as f:
        f.write(f"algorithm: fixmatch\ndataset: digits\nnum_classes: 10\nnum_labels: 40\nsave_dir: {tmp_path}\n"
                "save_name: full\nnet: cnn_tiny\nnum_train_iter: 2\nnum_eval_iter: 2\nbatch_size: 8\nuratio: 1\n"
                "device: cpu\nimg_size: 8\ncrop_ratio: 0.875\n")
    assert train_main(["--config", cfg, "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    ckpt = os.path.join(str(tmp_path), "full", "latest_model.pth")
    assert err == [f"hdl-train: error: cannot write checkpoint {ckpt}: No space left on device"]
    assert not [f for f in os.listdir(os.path.dirname(ckpt)) if f.startswith(".") or f.endswith(".pth")]


def test_damaged_or_foreign_splits_file_is_one_line_on_resume(tmp_path):
    from hdl.data import Splits

    train(tmp_path)
    path = os.path.join(str(tmp_path), "run", "splits.npz")
    good = Splits.load(path)
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    with pytest.raises(ValueError, match=f"splits file {path} is damaged or not an .npz: BadZipFile"):
        train(tmp_path, resume=True, num_train_iter=6)
    Splits(good.lb_idx, np.append(good.ulb_idx, 5000), good.val_idx).save(path)
    with pytest.raises(ValueError, match=f"splits file {path}: ulb_idx holds indices in \\[0, 5000\\] but data set "
                                         "'digits' has 1297 training images"):
        train(tmp_path, resume=True, num_train_iter=6)
    assert not [f for f in os.listdir(os.path.dirname(path)) if f.endswith(".tmp")]


@pytest.mark.slow
def test_a_checkpoint_of_another_network_is_one_line(tmp_path):
    train(tmp_path, name="tiny", num_train_iter=2)
    path = os.path.join(str(tmp_path), "tiny", "latest_model.pth")
    b = runner.build_algorithm(args_for(tmp_path, "small", net="cnn_small"), tb=False)
    with pytest.raises(ValueError) as err:
        b.load_model(path)
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith(f"checkpoint {path}: its model does not fit the network built here (")
    assert "size mismatch" in msg or "Missing key" in msg or "Unexpected key" in msg
