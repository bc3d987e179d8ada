"""USB's four base algorithms through the device layer, on CPU: train, evaluate, save, resume."""
import json
import os
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("semilearn")

from hdl.algorithms.run.config import load_yaml, resolve_config  # noqa: E402
from hdl.algorithms.usb.registry import SUPPORTED_BASES  # noqa: E402
from hdl.algorithms.run import runner  # noqa: E402
from semilearn.core.hooks import Hook  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "digits")


def tiny_args(alg, tmp_path, **over):
    cfg = load_yaml(os.path.join(CONFIGS, f"{alg}.yaml"))
    cfg.update(dict(num_train_iter=6, num_eval_iter=3, num_log_iter=3, batch_size=8, uratio=1, net="cnn_tiny",
                    eval_batch_size=512, save_dir=str(tmp_path), device="cpu", num_val=5, seed=3))
    cfg.update(over)
    return resolve_config(cfg, SUPPORTED_BASES)


class StopAt(Hook):
    """Simulates a crash at the start of iteration ``it``, keeping a snapshot of the saved state."""

    def __init__(self, it):
        self.stop_it = it

    def before_train_step(self, algorithm):
        if algorithm.it == self.stop_it:
            raise KeyboardInterrupt


def flatten(d, prefix=""):
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)) and k == "param_groups":
            for i, g in enumerate(v):
                out.update(flatten({kk: vv for kk, vv in g.items() if kk != "params"}, f"{key}.{i}."))
        elif isinstance(v, (list, tuple)) and any(torch.is_tensor(x) for x in v):  # e.g. DASO's pseudo-label lists
            out.update(flatten({str(i): x for i, x in enumerate(v)}, key + "."))
        else:
            out[key] = v
    return out


def assert_same_state(a, b):
    fa, fb = flatten(a), flatten(b)
    assert set(fa) == set(fb), set(fa) ^ set(fb)
    for k in fa:
        va, vb = fa[k], fb[k]
        if torch.is_tensor(va):
            assert torch.equal(va.cpu(), vb.cpu()), k
        elif k not in ("settings.resume", "wall_seconds"):
            assert va == vb, (k, va, vb)


@pytest.mark.parametrize("alg", SUPPORTED_BASES)
def test_train_evaluate_save_resume(alg, tmp_path, device):
    args = tiny_args(alg, tmp_path, device=str(device))
    a = runner.build_algorithm(args, tb=False)
    assert a.device == device
    assert all(p.device.type == device.type for p in a.model.parameters())
    a.register_hook(StopAt(4), "StopAt", "HIGHEST")
    with pytest.raises(KeyboardInterrupt):
        a.train()
    run_dir = os.path.join(str(tmp_path), args.save_name)
    ckpt_path = os.path.join(run_dir, "latest_model.pth")
    assert os.path.exists(ckpt_path)
    assert not [f for f in os.listdir(run_dir) if f.startswith(".")], "temporary checkpoint left behind"
    saved = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    assert saved["it"] == 3 and saved["epoch"] == 0  # 3 iterations done, inside epoch 0

    # a fresh process-like rebuild resumes exactly
    args2 = tiny_args(alg, tmp_path, resume=True, device=str(device))
    b = runner.build_algorithm(args2, tb=False)
    b.load_model(ckpt_path)
    assert b.it == 3 and b.start_epoch == 0
    state = b.get_save_dict()
    state["it"] = b.it  # get_save_dict outside a step records completed iterations
    assert_same_state(saved, state)
    # the split was reused, not redrawn
    np.testing.assert_array_equal(a.split_info.lb_idx, b.split_info.lb_idx)

    b.train()
    assert b.it == args.num_train_iter  # continues inside the epoch and stops exactly
    res = b.results_dict
    # the run ends holding the best checkpoint: evaluated again it gives the reported accuracy
    logits, y, _ = b.predict("test")
    assert res["best_test/top-1-acc"] == pytest.approx(float((logits.argmax(1) == y).mean()))
    assert "final_test/balanced_acc" in res
    final = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    assert final["it"] == args.num_train_iter


def test_hook_state_restored_on_device(tmp_path, device):
    """FreeMatch's thresholding state survives a save/load round trip tensor by tensor."""
    args = tiny_args("freematch", tmp_path, num_train_iter=3, device=str(device))
    a = runner.build_algorithm(args, tb=False)
    a.train()
    hook = a.hooks_dict["MaskingHook"]
    assert not torch.allclose(hook.p_model, torch.full_like(hook.p_model, 0.1))  # it learned something
    b = runner.build_algorithm(tiny_args("freematch", tmp_path, num_train_iter=3, resume=True, device=str(device)),
                               tb=False)
    b.load_model(os.path.join(str(tmp_path), args.save_name, "latest_model.pth"))
    for name in ("p_model", "label_hist", "time_p"):
        got = getattr(b.hooks_dict["MaskingHook"], name)
        assert got.device == b.device
        assert torch.equal(got, getattr(hook, name)), name


def test_hdl_train_and_eval_commands(tmp_path, capsys):
    from hdl.algorithms.run.cli import eval_main, train_main

    cfg = os.path.join(CONFIGS, "fixmatch.yaml")
    rc = train_main(["--config", cfg, "--no-progress", "--num_train_iter", "4", "--num_eval_iter", "2",
                     "--batch_size", "8", "--uratio", "1", "--net", "cnn_tiny", "--save_dir", str(tmp_path),
                     "--save_name", "run", "--device", "cpu"])
    assert rc == 0
    run_dir = tmp_path / "run"
    res = json.loads((run_dir / "results.json").read_text())
    assert res["iterations"] == 4 and res["num_val"] == 10 and res["selection_on_test_set"] is False
    assert (run_dir / "config.yaml").exists() and (run_dir / "splits.npz").exists()
    assert any(p.name.startswith("events") for p in (run_dir / "tensorboard").iterdir())
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["iterations"] == 4

    rc = eval_main(["--run", str(run_dir), "--split", "test"])
    assert rc == 0
    lines = (run_dir / "predictions_test_best.csv").read_text().strip().splitlines()
    assert len(lines) == 1 + 500  # header + digits test set
    # the summary's test accuracy at the best checkpoint is what hdl-eval's predictions score
    rows = [r.split(",") for r in lines[1:]]
    assert res["test_acc_at_best_val"] == pytest.approx(np.mean([r[1] == r[2] for r in rows]))
    assert lines[0].startswith("index,label,prediction,confidence,p0")

    # a second run into the same directory without resume/overwrite is refused
    rc = train_main(["--config", cfg, "--no-progress", "--save_dir", str(tmp_path), "--save_name", "run",
                     "--overwrite", "False", "--num_train_iter", "2"])
    assert rc == 2
    assert "already holds a run" in capsys.readouterr().err


@pytest.mark.parametrize(
    "over, message",
    [
        ({"algorithm": "nosuchmatch"}, "algorithm: expected one of"),
        ({"dataset": "mnist3d"}, "dataset: expected one of"),
        ({"lr": "fast"}, "lr: expected float"),
        ({"num_train_iter": 0}, "num_train_iter: expected an integer >= 1"),
        ({"p_cutof": 0.9}, "did you mean 'p_cutoff'"),
        ({"device": "tpu"}, "device: expected"),
        ({"ema_m": 1.5}, "ema_m: expected a number in [0, 1)"),
        ({"ulb_loss_ratio": -1}, "ulb_loss_ratio: expected a number >= 0, got -1.0"),
        ({"T": 0}, "T: expected a number > 0, got 0.0"),
        ({"optim": "Adam"}, "optim: expected one of ['SGD', 'AdamW']"),
    ],
)
def test_config_errors(over, message, tmp_path):
    cfg = load_yaml(os.path.join(CONFIGS, "fixmatch.yaml"))
    cfg.update(over)
    with pytest.raises(ValueError) as e:
        resolve_config(cfg, SUPPORTED_BASES)
    assert message in str(e.value)


def test_usb_published_keys_accepted_with_warning(tmp_path):
    cfg = load_yaml(os.path.join(CONFIGS, "fixmatch.yaml"))
    cfg.update({"clip": 0.0, "dist_url": "tcp://127.0.0.1:10001", "gpu": "None", "multiprocessing_distributed": True,
                "use_wandb": True})
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ns = resolve_config(cfg, SUPPORTED_BASES)
    msgs = [str(x.message) for x in w]
    for key in ("clip", "dist_url", "gpu", "multiprocessing_distributed", "use_wandb"):
        assert sum(f"'{key}'" in m for m in msgs) == 1, key
    assert ns.multiprocessing_distributed is False and ns.use_wandb is False


def test_missing_config_file_and_data_dir(tmp_path):
    from hdl.algorithms.run.cli import train_main

    assert train_main(["--config", str(tmp_path / "nope.yaml")]) == 2
    args = tiny_args("fixmatch", tmp_path, dataset="fashion_mnist", data_dir=str(tmp_path / "missing"), num_classes=10)
    with pytest.raises((ValueError, FileNotFoundError)) as e:
        runner.build_algorithm(args, tb=False)
    assert "missing" in str(e.value)


def test_amp_on_cpu_is_refused(tmp_path):
    args = tiny_args("fixmatch", tmp_path, amp=True)
    with pytest.raises(ValueError, match="amp: True needs a CUDA device"):
        runner.build_algorithm(args, tb=False)


def test_every_shipped_config_resolves():
    import glob

    import hdl.algorithms  # noqa: F401
    from semilearn.algorithms import name2alg

    files = sorted(glob.glob(os.path.join(CONFIGS, "..", "**", "*.yaml"), recursive=True))
    files = [f for f in files if os.sep + "bench" + os.sep not in f]  # grids, tested in test_bench.py
    assert len(files) >= 8 + 8 + 48
    for f in files:
        ns = resolve_config(load_yaml(f), list(name2alg.keys()))
        assert ns.algorithm.replace("hdl_", "") in SUPPORTED_BASES, f


@pytest.mark.slow
@pytest.mark.parametrize("alg", ["fixmatch", "hdl_fixmatch"])
def test_usb_protocol_cifar10_config_runs_on_generated_standin(alg, tmp_path):
    """The GPU-scale CIFAR-10 config (WRN-28-2) runs two iterations on a stand-in in the published format."""
    import hdl.algorithms  # noqa: F401
    from semilearn.algorithms import name2alg
    from tests.fakedata import write_cifar10

    write_cifar10(tmp_path / "data", n_per_batch=40, n_test=10)
    cfg = load_yaml(os.path.join(CONFIGS, "..", "classic_cv", alg, f"{alg}_cifar10_40_0.yaml"))
    cfg.update(dict(data_dir=str(tmp_path / "data"), num_train_iter=2, epoch=1, num_eval_iter=1, num_log_iter=1,
                    batch_size=4, uratio=1, eval_batch_size=16, num_workers=0, save_dir=str(tmp_path / "runs"),
                    device="cpu", resume=False))
    if alg.startswith("hdl_"):
        cfg.update(hdl_warmup_iter=1, hdl_refresh_every=1)
    args = resolve_config(cfg, list(name2alg.keys()))
    a = runner.build_algorithm(args, tb=False)
    a.train()
    assert a.it == 2
    assert "best_test/top-1-acc" in a.results_dict
    if alg.startswith("hdl_"):
        assert len(a.refresh_log) == 2


def test_user_npz_grey_images_bind_the_network_channels(tmp_path):
    """A user's .npz (channels unknown until loaded) is read once; the project net gets 1 channel,
    a USB net (RGB only) is refused with the reason."""
    from unittest import mock

    import hdl.algorithms.usb.datasets as ds
    from tests.fakedata import write_npz

    path = tmp_path / "grey.npz"
    write_npz(path, n_train=60, n_test=12, shape=(8, 8, 1), num_classes=3)
    over = dict(dataset="npz", data_dir=str(path), num_classes=3, num_labels=6, num_val=2, img_size=8,
                num_train_iter=2, num_eval_iter=1)
    with mock.patch.object(ds, "load_dataset", wraps=ds.load_dataset) as spy:
        a = runner.build_algorithm(tiny_args("fixmatch", tmp_path, **over), tb=False)
    assert spy.call_count == 1
    assert a.model.stages[0][0][0].in_channels == 1
    a.train()
    assert a.it == 2
    with pytest.raises(ValueError, match="expects RGB images but this dataset has 1 channel"):
        runner.build_algorithm(tiny_args("fixmatch", tmp_path, net="wrn_28_2", **over), tb=False)


def test_channel_stats_match_numpy():
    from hdl.algorithms.usb.datasets import channel_stats

    x = np.random.default_rng(0).integers(0, 256, (50, 5, 4, 3), dtype=np.uint8)
    mean, std = channel_stats(x, chunk=7)
    ref = x.astype(np.float64) / 255.0
    np.testing.assert_allclose(mean, ref.mean(axis=(0, 1, 2)), rtol=1e-12)
    np.testing.assert_allclose(std, ref.std(axis=(0, 1, 2)), rtol=1e-9)


def test_image_folder_with_mixed_sizes_trains_at_img_size(tmp_path):
    """hdl-train resizes an image folder's images of different sizes to img_size on load."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 3)):
        for c, name in enumerate(("cat", "dog")):
            folder = tmp_path / "imgs" / split / name
            folder.mkdir(parents=True)
            for i in range(n):
                h, w = (10 + i % 3, 9 + 2 * (i % 2))  # sizes differ within and across classes
                arr = rng.integers(0, 256, (h, w, 3), dtype=np.uint8) // (1 + c)
                Image.fromarray(arr).save(folder / f"{i:02d}.png")
    over = dict(dataset="imagefolder", data_dir=str(tmp_path / "imgs"), num_classes=2, num_labels=4, num_val=0,
                img_size=8, num_train_iter=2, num_eval_iter=2)
    res = runner.train(tiny_args("fixmatch", tmp_path, **over), progress=False)
    assert res["iterations"] == 2 and 0 <= res["test_acc_final"] <= 1
    with pytest.raises(ValueError, match="set img_size in the hdl-train config"):
        runner.train(tiny_args("fixmatch", tmp_path, save_name="keep", **dict(over, img_size=0)), progress=False)
