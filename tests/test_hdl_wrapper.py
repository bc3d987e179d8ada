"""HDL wrapped around USB's four base algorithms: registration, exact equivalence before warm-up,
refresh, target injection, checkpoint and resume."""
import os
import warnings

import pytest
import torch

pytest.importorskip("semilearn")

import hdl.algorithms  # noqa: E402,F401  (registers the hdl_* algorithms)
from hdl.algorithms.run import runner  # noqa: E402
from hdl.algorithms.run.config import load_yaml, resolve_config  # noqa: E402
from semilearn.algorithms import name2alg  # noqa: E402
from semilearn.core.hooks import Hook  # noqa: E402

from hdl.algorithms.usb.seam import Targets  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "digits")
BASES = ("fixmatch", "freematch", "mixmatch", "remixmatch")


def make_args(base, tmp_path, name, **over):
    cfg = load_yaml(os.path.join(CONFIGS, f"{base}.yaml"))
    cfg.update(dict(num_train_iter=20, num_eval_iter=1000, num_log_iter=1000, batch_size=8, uratio=1,
                    net="cnn_tiny", eval_batch_size=512, save_dir=str(tmp_path), save_name=name, device="cpu",
                    num_val=5, seed=7))
    cfg.update(over)
    return resolve_config(cfg, list(name2alg.keys()))


class LossRecorder(Hook):
    def __init__(self):
        self.losses = []

    def after_train_step(self, algorithm):
        self.losses.append({k: v for k, v in algorithm.log_dict.items() if k.startswith("train/") and "time" not in k})


def run_losses(args):
    torch.set_num_threads(1)
    a = runner.build_algorithm(args, tb=False)
    rec = LossRecorder()
    a.register_hook(rec, "LossRecorder", "LOWEST")
    a.train()
    return rec.losses, a


def test_registered_with_usb_and_get_config():
    from semilearn import get_config

    for base in BASES:
        assert f"hdl_{base}" in name2alg
    args = get_config({"algorithm": "hdl_fixmatch", "dataset": "digits", "num_classes": 10, "num_labels": 40})
    assert args.p_cutoff == 0.95  # the base algorithm's own argument
    assert args.hdl_k == "adaptive" and args.hdl_refresh_every == 200  # HDL's


@pytest.mark.parametrize("base", BASES)
def test_exactly_the_base_losses_before_warmup_and_when_disabled(base, tmp_path):
    ref, _ = run_losses(make_args(base, tmp_path, "base", algorithm=base))
    off, _ = run_losses(make_args(base, tmp_path, "off", algorithm=f"hdl_{base}", hdl_enable=False))
    early, a = run_losses(make_args(base, tmp_path, "early", algorithm=f"hdl_{base}", hdl_warmup_iter=1000))
    assert len(ref) == 20
    assert ref == off
    early_bank, b = run_losses(make_args(base, tmp_path, "early_bank", algorithm=f"hdl_{base}", hdl_warmup_iter=1000,
                                         hdl_embed="bank"))
    assert ref == early
    assert ref == early_bank
    assert b.bank.num_filled > 0  # the bank was fed from the base's own features meanwhile
    assert a.bank.num_filled == 0  # ema_pass: the refresh embeds everything, the steps write no bank
    assert (a.hdl_state.diagnostics.raw_feat.abs().sum(dim=1) > 0).any()  # ...but keep the features for the logit diagnostics


@pytest.mark.parametrize("base", BASES)
def test_refresh_checkpoint_resume(base, tmp_path):
    args = make_args(base, tmp_path, "run", algorithm=f"hdl_{base}", num_train_iter=6, num_eval_iter=3,
                     hdl_warmup_iter=3, hdl_refresh_every=3, hdl_embed="ema_pass")
    a = runner.build_algorithm(args, tb=False)
    a.train()
    assert len(a.refresh_log) == 2
    first = a.refresh_log[0]
    n_ulb = len(set(a.split_info.ulb_idx.tolist()) - set(a.split_info.lb_idx.tolist()))
    assert first["hdl/pool_size"] >= 0.5 * n_ulb
    assert 0.0 <= first["hdl/pool_acc"] <= 1.0
    assert os.path.exists(os.path.join(str(tmp_path), "run", "hdl_refresh.jsonl"))
    # the pool never relabels ground truth
    assert (a.pool.labels[torch.as_tensor(a.split_info.lb_idx)] == -1).all()

    ckpt = os.path.join(str(tmp_path), "run", "latest_model.pth")
    b = runner.build_algorithm(make_args(base, tmp_path, "run", algorithm=f"hdl_{base}", num_train_iter=6,
                                         hdl_embed="ema_pass", resume=True), tb=False)
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["hdl"]
    assert saved["version"] == 2 and saved["pool"]["version"] == 1
    assert (saved["pool"]["labels"] >= 0).sum() >= 0.5 * n_ulb
    b.load_model(ckpt)
    assert torch.equal(b.pool.labels, saved["pool"]["labels"])
    assert torch.equal(b.pool.agreement, saved["pool"]["agreement"])
    assert torch.equal(b.pool.level, saved["pool"]["level"]) and (b.pool.level[b.pool.labels >= 0] >= 1).all()
    assert torch.equal(b.bank.features(), saved["bank"]["feats"])
    # the best-validation checkpoint (iteration 3) already holds the first refresh's pool
    best = torch.load(os.path.join(str(tmp_path), "run", "model_best.pth"), map_location="cpu", weights_only=False)
    assert (best["hdl"]["pool"]["labels"] >= 0).sum() >= 0.5 * n_ulb


def test_target_injection_replaces_only_hdl_labeled_rows(tmp_path):
    a = runner.build_algorithm(make_args("fixmatch", tmp_path, "inj", algorithm="hdl_fixmatch"), tb=False)
    has = torch.tensor([True, False, True])
    lab = torch.tensor([4, 0, 7])
    a.seam.begin(Targets.one_hot(has, lab, torch.tensor([0.5, 1.0, 0.25]), 10))
    probs = torch.tensor([[0.991] + [0.001] * 9] * 3)
    mask = a.call_hook("masking", "MaskingHook", logits_x_ulb=probs, softmax_x_ulb=False)
    assert mask.tolist() == [0.5, 1.0, 0.25]  # HDL rows get their weight, the other keeps the base mask
    pl = a.call_hook("gen_ulb_targets", "PseudoLabelingHook", logits=probs, use_hard_label=True, T=0.5, softmax=False)
    assert pl.tolist() == [4, 0, 7]
    soft = a.call_hook("gen_ulb_targets", "PseudoLabelingHook", logits=probs, use_hard_label=False, T=1.0, softmax=False)
    assert soft[0].argmax() == 4 and soft[0].max() == 1.0 and torch.allclose(soft[1], probs[1])
    assert a.seam.end() == 2
    a.seam.begin(Targets.one_hot(has, lab, torch.ones(3), 10))
    low = torch.full((3, 10), 0.1)
    mask = a.call_hook("masking", "MaskingHook", logits_x_ulb=low, softmax_x_ulb=False)
    assert mask.tolist() == [1.0, 0.0, 1.0]
    a.seam.abort()


def test_bad_hdl_settings(tmp_path):
    for over, msg in (({"hdl_use": "both"}, "hdl_use: expected one of"),
                      ({"hdl_k": "many"}, "hdl_k: expected 'adaptive' or an int"),
                      ({"hdl_embed": "clip"}, "hdl_embed: expected one of"),
                      ({"hdl_class_prior": "balanced"}, "hdl_class_prior: expected one of"),
                      ({"hdl_k_max": 0}, "hdl_k_max: expected an int >= 1, got 0"),
                      ({"hdl_k": 60}, "hdl_k: expected 1 <= hdl_k <= hdl_k_max=50, got 60"),
                      ({"hdl_level_quantile": 1.5}, "hdl_level_quantile: expected a float in"),
                      ({"hdl_class_quota": -1.0}, "hdl_class_quota: expected None or a float > 0")):
        with pytest.raises(ValueError, match=msg):  # the config check, or the settings read at construction
            runner.build_algorithm(make_args("fixmatch", tmp_path, "bad", algorithm="hdl_fixmatch", **over), tb=False)
