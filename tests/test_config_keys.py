"""The one key table (hdl.config_keys) and everything generated from it."""
import os
import re

import pytest
import torch

from hdl import config_keys
from hdl.config_keys import KEYS, markdown_table
from hdl.labeling import DEFAULT_OPTIONS, OPTION_TABLE

ROOT = os.path.join(os.path.dirname(__file__), "..")
KEYS_DOC = os.path.join("docs", "training.md")  # where the generated key tables live
EXPOSED = [n for n, o in OPTION_TABLE.items() if o.exposed]


def test_docs_key_table_is_the_generated_one():
    text = open(os.path.join(ROOT, KEYS_DOC)).read()
    block = re.search(r"<!-- keys:start -->\n(.*?)\n<!-- keys:end -->", text, re.S)
    assert block is not None, f"{KEYS_DOC} has no <!-- keys:start --> ... <!-- keys:end --> block"
    assert block.group(1) == markdown_table(), f"{KEYS_DOC} key table is stale: run python -m hdl.config_keys"
    block = re.search(r"<!-- usb-ranges:start -->\n(.*?)\n<!-- usb-ranges:end -->", text, re.S)
    assert block is not None and block.group(1) == config_keys.usb_ranges_table(), \
        f"{KEYS_DOC} table of USB's key ranges is stale: run python -m hdl.config_keys"


def test_every_exposed_labeling_option_is_a_key_and_a_flag():
    labeling = config_keys.keys(["labeling"])
    assert sorted(k.option for k in labeling.values()) == sorted(EXPOSED + list(config_keys.GRAPH_OPTIONS))
    for name in EXPOSED:
        key = next(k for k in labeling.values() if k.option == name)
        assert key.default == DEFAULT_OPTIONS[name]
        assert key.flag == "--" + name.replace("_", "-")
    assert KEYS["hdl_vote_min_agreement"].option == "min_agreement"  # hdl_min_agreement is the training filter


def test_a_new_labeling_option_needs_one_declaration(monkeypatch):
    """An option added to OPTION_TABLE (with its hdl_label default) becomes a key and a flag."""
    from hdl import labeling

    monkeypatch.setitem(labeling.OPTION_TABLE, "new_rule", labeling.Option(lambda v: v in ("a", "b"), "'a' or 'b'",
                                                                          "a new rule"))
    monkeypatch.setitem(labeling.DEFAULT_OPTIONS, "new_rule", "a")
    keys = config_keys._declared()
    assert keys["hdl_new_rule"].default == "a" and keys["hdl_new_rule"].flag == "--new-rule"
    with pytest.raises(ValueError, match="hdl_new_rule: expected 'a' or 'b', got 'c'"):
        keys["hdl_new_rule"].validate("c")


def test_usb_arguments_and_help_come_from_the_table(capsys):
    pytest.importorskip("semilearn")
    import hdl.algorithms  # noqa: F401
    from semilearn import get_config

    from hdl.algorithms.run.cli import train_main
    from hdl.algorithms.usb.hdl_wrapper import hdl_arguments

    assert [a.name for a in hdl_arguments()] == [f"--{n}" for n in KEYS]
    args = get_config({"algorithm": "hdl_freematch", "dataset": "digits", "num_classes": 10, "num_labels": 40})
    for name, key in KEYS.items():
        assert getattr(args, name) == key.default, name
    assert train_main(["--help-keys"]) == 0
    out = capsys.readouterr().out
    for name in KEYS:
        assert f"  {name} (default " in out


def test_relabel_flags_come_from_the_table(capsys):
    from hdl.relabel_cli import main

    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    for key in config_keys.keys(["labeling"]).values():
        assert key.flag in out


def test_training_passes_every_labeling_option_to_the_labeler(tmp_path, monkeypatch):
    pytest.importorskip("semilearn")
    import hdl.algorithms  # noqa: F401
    import hdl.refresh
    from hdl.algorithms.run import runner
    from tests.test_hdl_wrapper import make_args

    calls = []
    real = hdl.refresh.hdl_label

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)
    monkeypatch.setattr(hdl.refresh, "hdl_label", spy)
    over = dict(hdl_weighting="uniform", hdl_level_quantile=0.25, hdl_vote_min_agreement=0.1, hdl_max_rounds=4,
                hdl_class_prior="uniform", hdl_fallback="prototype", hdl_k=7, hdl_k_max=20, hdl_min_votes=2)
    args = make_args("fixmatch", tmp_path, "opts", algorithm="hdl_fixmatch", num_train_iter=3, hdl_warmup_iter=3,
                     **over)
    a = runner.build_algorithm(args, tb=False)
    torch.set_num_threads(1)
    a.train()
    assert len(calls) == 1
    got = calls[0]
    want = {**DEFAULT_OPTIONS, "weighting": "uniform", "level_quantile": 0.25, "min_agreement": 0.1,
            "max_rounds": 4, "class_prior": "uniform", "fallback": "prototype", "k": 7, "min_votes": 2}
    for name in EXPOSED:
        assert got[name] == want[name], name
    assert a.refresh_log[0]["hdl/k"] == 7.0


def test_usb_ranges_are_checked_when_a_config_is_resolved():
    """Every range of the table is enforced by resolve_config (a value just outside it is refused
    with the table's words), and the shipped digits configs lie inside every range."""
    import pytest

    pytest.importorskip("semilearn")
    from hdl.algorithms.run.config import load_yaml, resolve_config

    outside = {"num_train_iter": 0, "epoch": 0, "num_eval_iter": 0, "num_log_iter": 0, "batch_size": 0,
               "eval_batch_size": 0, "uratio": 0, "num_classes": 0, "num_labels": 0, "img_size": -1,
               "num_workers": -1, "num_warmup_iter": -1, "lr": 0.0, "momentum": 1.0, "weight_decay": -0.1,
               "layer_decay": 0.0, "clip_grad": -1, "ema_m": 1.0, "crop_ratio": 0.0, "ulb_loss_ratio": -1.0,
               "T": 0.0, "p_cutoff": 1.5, "ema_p": 1.0, "ent_loss_ratio": -1.0, "unsup_warm_up": 2.0,
               "mixup_alpha": 0.0, "kl_loss_ratio": -0.5, "rot_loss_ratio": -0.5, "lb_imb_ratio": 0,
               "ulb_imb_ratio": 0, "ulb_num_labels": 0}
    assert set(outside) == set(config_keys.USB_RANGES)
    owner = {"ema_p": "freematch", "ent_loss_ratio": "freematch", "unsup_warm_up": "mixmatch",
             "mixup_alpha": "mixmatch", "kl_loss_ratio": "remixmatch", "rot_loss_ratio": "remixmatch"}
    configs = os.path.join(ROOT, "configs", "digits")
    for name, value in outside.items():
        alg = owner.get(name, "fixmatch")
        cfg = load_yaml(os.path.join(configs, f"{alg}.yaml"))
        resolve_config(cfg, [alg])  # the shipped config is inside every range
        cfg[name] = value
        with pytest.raises(ValueError) as e:
            resolve_config(cfg, [alg])
        assert str(e.value) == f"{name}: expected {config_keys.USB_RANGES[name].allowed}, got {value!r}", name


def test_a_saved_run_config_without_a_later_key_reads_its_saved_value():
    """hdl_blend_prior came after runs were saved: a saved config without it is rebuilt with
    'none' (what those runs did), whatever the default; a config that names it keeps its value."""
    assert KEYS["hdl_blend_prior"].saved == "none"
    old = {"algorithm": "hdl_fixmatch", "hdl_inject": "blend"}
    base = {"algorithm": "fixmatch", "seed": 0}  # a base algorithm's run: no HDL key is added
    assert config_keys.saved_config_defaults(base) == base
    assert config_keys.saved_config_defaults(old)["hdl_blend_prior"] == "none"
    assert "hdl_blend_prior" not in old  # not modified in place
    assert config_keys.saved_config_defaults({"hdl_blend_prior": "balanced"})["hdl_blend_prior"] == "balanced"
    # keys without a saved value are left to the defaults of the resolver
    assert "hdl_blend_weight" not in config_keys.saved_config_defaults(old)


def test_load_run_rebuilds_a_run_saved_before_hdl_blend_prior_as_it_ran(tmp_path):
    """A run whose saved config.yaml predates hdl_blend_prior and hdl_loss_prior loads with 'none' for
    both (the rules it ran with), one saved between the two keys with its blend prior and no loss
    prior, not with today's defaults ('auto': for FixMatch the adjusted loss and the unadjusted
    blend)."""
    import yaml

    from hdl.algorithms.run import runner
    from tests.test_hdl_wrapper import make_args

    assert KEYS["hdl_blend_prior"].default == "auto" and KEYS["hdl_loss_prior"].default == "auto"
    args = make_args("fixmatch", tmp_path, "oldrun", algorithm="hdl_fixmatch", num_train_iter=2, num_eval_iter=2,
                     hdl_warmup_iter=2)
    runner.train(args, progress=False)
    run_dir = os.path.join(str(tmp_path), "oldrun")

    def priors():
        h = runner.load_run(run_dir, "latest", "cpu").hdl
        return h.blend_prior, h.loss_prior

    assert priors() == ("none", "adjusted")
    path = os.path.join(run_dir, "config.yaml")
    with open(path) as f:
        cfg = yaml.safe_load(f)
    cfg["hdl_blend_prior"] = "balanced"  # saved by the code that had the blend prior and no loss prior
    del cfg["hdl_loss_prior"]
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    assert priors() == ("balanced", "none")
    del cfg["hdl_blend_prior"]
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    assert priors() == ("none", "none")


def test_removed_keys_and_values_are_refused_with_the_version():
    """A removed key at the value that behaves as today (its old default) is dropped; any other value
    of it, and a removed value of a key that stays, is refused in one line naming key, value and
    version."""
    saved = {"hdl_adaptive_rule": "heldout", "hdl_delta": 0.2, "hdl_k_cap": "smallest_class",
             "hdl_blend_votes": "calibrated", "hdl_blend_model": "ema", "seed": 1}
    assert config_keys.without_removed(saved) == {"hdl_blend_model": "ema", "seed": 1}
    assert "hdl_delta" in saved  # not modified in place
    with pytest.raises(ValueError) as e:
        config_keys.without_removed({"hdl_blend_model": "ema_graph"})
    assert str(e.value) == ("hdl_blend_model: 'ema_graph' was removed in 0.2.0 (below the default 'ema' on all 12 "
                            "runs of results/inject_rule/fmnist_lt100_ema_graph_none; allowed: 'ema', 'train')")
    for key, value in [("hdl_adaptive_rule", "agreement"), ("hdl_adaptive_rule", "loo"), ("hdl_delta", 0.3),
                       ("hdl_k_cap", "none"), ("hdl_blend_votes", "raw")]:
        with pytest.raises(ValueError) as e:
            config_keys.without_removed({key: value, "seed": 1})
        msg = str(e.value)
        assert msg.startswith(f"{key}: {value!r} was removed in 0.2.0 (the key is gone; ") and "\n" not in msg
    # a saved run rebuilt as it ran: the blend keys are dropped where hdl_inject never read them, and
    # bank with the old default 'ema' blended the training model's head
    run = {"algorithm": "hdl_fixmatch", "hdl_inject": "all", "hdl_blend_weight": 0.7, "hdl_blend_prior": "none"}
    assert config_keys.saved_config_defaults(run) == {"algorithm": "hdl_fixmatch", "hdl_inject": "all",
                                                      "hdl_loss_prior": "none"}
    bank = config_keys.saved_config_defaults({"hdl_embed": "bank", "hdl_blend_model": "ema", "hdl_loss_prior": "none"})
    assert bank["hdl_blend_model"] == "train"
    for key, gone in config_keys.REMOVED.items():  # a removed key is no key; a removed value is not allowed
        if gone.values is None:
            assert key not in KEYS
        else:
            assert not any(KEYS[key].check(v) for v in gone.values)


def test_combinations_the_blend_does_not_read_are_refused(tmp_path):
    pytest.importorskip("semilearn")
    from types import SimpleNamespace

    from hdl.algorithms.run.config import load_yaml, resolve_config
    from hdl.algorithms.usb.hdl_wrapper import HDLSettings

    cfg = load_yaml(os.path.join(ROOT, "configs", "digits", "hdl_fixmatch.yaml"))
    refused = [
        (dict(hdl_inject="all", hdl_blend_weight=0.7), "hdl_blend_weight: 0.7 is read only with hdl_inject: blend, "
         "got hdl_inject: 'all'; leave hdl_blend_weight at its default 0.5 or set hdl_inject: blend"),
        (dict(hdl_inject="calibrated", hdl_blend_prior="none"), "hdl_blend_prior: 'none' is read only with "
         "hdl_inject: blend, got hdl_inject: 'calibrated'; leave hdl_blend_prior at its default 'auto' or set "
         "hdl_inject: blend"),
        (dict(hdl_embed="bank"), "hdl_blend_model: 'ema' needs hdl_embed: ema_pass, got hdl_embed: 'bank'; with "
         "hdl_embed: bank set hdl_blend_model: train"),
        (dict(hdl_k_cap="none"), "hdl_k_cap: 'none' was removed in 0.2.0 (the key is gone; the adaptive k is always "
         "capped at the smallest class, measured ahead of no cap in results/labeling_suite)"),
    ]
    for over, message in refused:
        with pytest.raises(ValueError) as e:
            resolve_config({**cfg, **over}, ["hdl_fixmatch"])
        assert str(e.value) == message
    with pytest.raises(ValueError, match="hdl_blend_model: 'ema' needs hdl_embed: ema_pass"):
        HDLSettings.from_args(SimpleNamespace(hdl_embed="bank"))
    for fine in (dict(hdl_embed="bank", hdl_blend_model="train"), dict(hdl_embed="bank", hdl_inject="all"),
                 dict(hdl_inject="all", hdl_blend_weight=0.5), dict(hdl_k_cap="smallest_class")):
        args = resolve_config({**cfg, **fine}, ["hdl_fixmatch"])
        assert not hasattr(args, "hdl_k_cap")
        HDLSettings.from_args(args)


def test_a_saved_run_with_a_removed_value_fails_in_one_line(tmp_path, capsys):
    """load_run, hdl-relabel-run and resume read a run's saved config: removed keys at their old
    defaults load (the run is unchanged), a removed value fails naming key, value and version; a
    saved run of hdl_embed bank with the old default hdl_blend_model ema loads as 'train', what it
    blended."""
    import yaml

    from hdl.algorithms.run import relabel_run, runner
    from tests.test_hdl_wrapper import make_args

    args = make_args("fixmatch", tmp_path, "run", algorithm="hdl_fixmatch", num_train_iter=2, num_eval_iter=2,
                     hdl_warmup_iter=2, hdl_embed="bank", hdl_blend_model="train")
    runner.train(args, progress=False)
    run_dir = os.path.join(str(tmp_path), "run")
    path = os.path.join(run_dir, "config.yaml")
    with open(path) as f:
        cfg = yaml.safe_load(f)
    old = {**cfg, "hdl_adaptive_rule": "heldout", "hdl_delta": 0.2, "hdl_k_cap": "smallest_class",
           "hdl_blend_votes": "calibrated", "hdl_blend_model": "ema"}  # as 0.1.0 saved it
    with open(path, "w") as f:
        yaml.safe_dump(old, f)
    assert runner.load_run(run_dir, "latest", "cpu").hdl.blend_model == "train"
    with open(path, "w") as f:
        yaml.safe_dump({**old, "hdl_blend_votes": "raw"}, f)
    message = "hdl_blend_votes: 'raw' was removed in 0.2.0 (the key is gone; the blend always uses the calibrated votes)"
    with pytest.raises(ValueError) as e:
        runner.load_run(run_dir, "latest", "cpu")
    assert str(e.value) == message
    assert relabel_run.main(["--run", run_dir, "--checkpoint", "latest", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == f"hdl-relabel-run: error: {message}"
    resume = make_args("fixmatch", tmp_path, "run", algorithm="hdl_fixmatch", num_train_iter=4, num_eval_iter=2,
                       hdl_warmup_iter=2, hdl_embed="bank", hdl_blend_model="train", resume=True)
    with pytest.raises(ValueError) as e:
        runner.train(resume, progress=False)
    assert str(e.value) == f"resume: the run's saved config {path}: {message}"
