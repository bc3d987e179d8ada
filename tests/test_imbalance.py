"""USB's imbalance algorithms (abc, daso, debiaspl) over the device layer and the HDL wrappers:
every supported pair trains on a long-tailed digits split, evaluates, saves and resumes with its
extra state; the rest are refused with the reason."""
import os
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("semilearn")

import hdl.algorithms  # noqa: E402,F401  (registers the hdl_* algorithms)
from hdl.algorithms.run import runner  # noqa: E402
from hdl.algorithms.usb import imbalance  # noqa: E402
from hdl.algorithms.run.config import load_yaml, resolve_config  # noqa: E402
from hdl.algorithms.usb.device import DeviceMixin  # noqa: E402
from hdl.data.splits import make_imbalance_counts  # noqa: E402
from semilearn.algorithms import name2alg  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "digits")
# long-tailed digits: labeled 15 (head) .. 3 (tail), unlabeled 60 .. 12, 5 validation images per class
LONG_TAIL = dict(num_labels=15, lb_imb_ratio=5, ulb_num_labels=60, ulb_imb_ratio=5, num_val=5)
COMBOS = [(imb, alg) for imb, bases in imbalance.SUPPORTED.items() for base in bases
          for alg in (base, f"hdl_{base}")]


def make_args(base, tmp_path, name, **over):
    cfg = load_yaml(os.path.join(CONFIGS, f"{base}.yaml"))
    cfg.update(dict(num_train_iter=4, epoch=2, num_eval_iter=2, num_log_iter=1000, batch_size=8, uratio=1,
                    net="cnn_tiny", eval_batch_size=512, save_dir=str(tmp_path), save_name=name,
                    device="cpu", seed=7, **LONG_TAIL))
    cfg.update(over)
    return resolve_config(cfg, list(name2alg.keys()))


def combo_args(imb, alg, tmp_path, **over):
    base = alg[4:] if alg.startswith("hdl_") else alg
    extra = {"daso_num_pretrain_iter": 2} if imb == "daso" else {}  # reach DASO's own pseudo-labels
    if alg.startswith("hdl_"):
        extra.update(hdl_warmup_iter=2, hdl_refresh_every=2)
    extra.update(over)
    return make_args(base, tmp_path, "run", algorithm=alg, imb_algorithm=imb, **extra)


@pytest.fixture
def spy_device_layer(monkeypatch):
    """Count calls of the device layer's process_batch / evaluate / load_model."""
    calls = {"process_batch": 0, "evaluate": 0, "load_model": 0}
    for name in calls:
        orig = getattr(DeviceMixin, name)

        def spy(self, *a, _orig=orig, _name=name, **k):
            calls[_name] += 1
            return _orig(self, *a, **k)

        monkeypatch.setattr(DeviceMixin, name, spy)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("imb,alg", COMBOS)
def test_train_evaluate_save_resume(imb, alg, tmp_path, spy_device_layer):
    torch.set_num_threads(1)
    a = runner.build_algorithm(combo_args(imb, alg, tmp_path), tb=False)
    assert isinstance(a, DeviceMixin) and type(a).imb_name == imb
    a.train()
    assert a.it == 4
    # the device layer did the work behind the imbalance algorithm's overrides
    assert spy_device_layer["process_batch"] == 4
    assert spy_device_layer["evaluate"] >= 2 and spy_device_layer["load_model"] >= 1
    res = a.evaluate("test")
    logits, y, _ = a.predict("test")  # the reported accuracy is that of the predictions
    assert res["test/top-1-acc"] == pytest.approx(float((logits.argmax(1) == y).mean()))
    if imb == "abc":  # ABC reports its balanced auxiliary classifier
        logits, y, _ = a.predict("test", "logits_aux")
        assert res["test/top-1-acc"] == pytest.approx(float((logits.argmax(1) == y).mean()))
        assert np.array_equal(a.predict("test")[0], logits)  # predict's default head is the same
        assert not np.allclose(a.predict("test", "logits")[0], logits)
    if alg.startswith("hdl_"):  # idx_lb / idx_ulb reached the HDL step through USB's batch filter
        assert a.bank.num_filled > 0 and len(a.refresh_log) == 2
        assert (a.pool.labels >= 0).any()

    ckpt = os.path.join(str(tmp_path), "run", "latest_model.pth")
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)  # iteration 4 (``a`` now holds the best)
    b = runner.build_algorithm(combo_args(imb, alg, tmp_path, resume=True, num_train_iter=6, epoch=3), tb=False)
    b.load_model(ckpt)
    assert b.it == 4
    for key, value in saved["model"].items():
        assert torch.equal(b.model.state_dict()[key], value), key
    if imb == "abc":
        assert any(k.startswith("aux_classifier") for k in saved["model"])
    if imb == "daso":
        assert torch.equal(b.queue.prototypes, saved["queue_prototypes"]) and saved["queue_prototypes"].abs().sum() > 0
        bank = saved["imb_state"]["daso_queue_bank"]
        assert sorted(b.queue.bank) == sorted(bank) and len(bank) >= 5
        for c in bank:
            assert torch.equal(b.queue.bank[c], bank[c])
        assert b.hooks_dict["PseudoLabelingHook"].pseudo_label_dist == saved["pl_dist"]
        # past DASO's pre-training: the similarities the next step's pseudo-labels blend in
        assert torch.equal(b.probs_sim, saved["imb_state"]["daso_probs_sim"])
    if imb == "debiaspl":
        p_hat = saved["imb_state"]["debiaspl_p_hat"]
        assert not torch.allclose(p_hat, torch.full_like(p_hat, 0.1))
        assert torch.equal(b.p_hat, p_hat)
    if alg.startswith("hdl_"):
        assert torch.equal(b.pool.labels, saved["hdl"]["pool"]["labels"]) and (b.pool.labels >= 0).any()
    b.train()  # one more epoch of 2 iterations
    assert b.it == 6


def test_long_tailed_split_sizes(tmp_path):
    a = runner.build_algorithm(combo_args("abc", "fixmatch", tmp_path), tb=False)
    info = a.split_info
    lb = np.bincount(info.train_y[info.lb_idx], minlength=10)
    assert lb.tolist() == make_imbalance_counts(15, 10, 5) == [15, 12, 10, 8, 7, 6, 5, 4, 3, 3]
    ulb_only = np.setdiff1d(info.ulb_idx, info.lb_idx)
    assert np.bincount(info.train_y[ulb_only], minlength=10).tolist() == make_imbalance_counts(60, 10, 5)
    assert make_imbalance_counts(60, 10, 5) == [60, 50, 41, 35, 29, 24, 20, 17, 14, 12]
    assert len(info.splits.val_idx) == 50
    # ABC's Bernoulli mask keeps the tail class always and the head class with 3/15
    assert a.lb_class_dist[0].item() == pytest.approx(3 / 15) and a.lb_class_dist[-1].item() == 1.0


def test_method_order_keeps_the_device_layer():
    from semilearn.core.algorithmbase import AlgorithmBase

    cls = imbalance.imbalance_algorithm("abc", name2alg["hdl_remixmatch"])
    mro = cls.__mro__
    assert mro.index(name2alg["hdl_remixmatch"]) < mro.index(DeviceMixin) < mro.index(AlgorithmBase)
    for method in ("process_batch", "evaluate", "load_model", "get_save_dict", "set_hooks"):
        owner = next(c for c in mro if method in vars(c))
        assert mro.index(owner) < mro.index(AlgorithmBase), (method, owner)
    assert imbalance.imbalance_algorithm("abc", name2alg["hdl_remixmatch"]) is cls  # cached


@pytest.mark.parametrize("imb,alg,msg", [
    ("adsh", "fixmatch", "hard-codes|asserts"),
    ("crest", "hdl_fixmatch", "hard-codes CUDA calls"),
    ("cossl", "fixmatch", "hard-codes CUDA calls"),
    ("nosuch", "fixmatch", "not one of USB's imbalance algorithms"),
    ("debiaspl", "hdl_mixmatch", "asserts that its base is not mixmatch"),
    ("daso", "freematch", "compute_prob"),
    ("debiaspl", "freematch", "never updates"),
])
def test_unsupported_combinations_are_refused(imb, alg, msg, tmp_path):
    base = alg[4:] if alg.startswith("hdl_") else alg
    with pytest.raises(ValueError, match=msg) as err:
        make_args(base, tmp_path, "bad", algorithm=alg, imb_algorithm=imb)
    assert "imb_algorithm" in str(err.value) and "supported: abc (with" in str(err.value)
    assert repr(imb) in str(err.value)
    # the class factory refuses too (args built without the config check)
    if imb in imbalance.SUPPORTED:
        with pytest.raises(ValueError, match=msg):
            imbalance.imbalance_algorithm(imb, runner.algorithm_class(make_args(base, tmp_path, "ok", algorithm=alg)))


def test_imbalance_keys_need_imb_algorithm(tmp_path):
    with pytest.raises(ValueError, match="abc_p_cutoff"):
        make_args("fixmatch", tmp_path, "x", abc_p_cutoff=0.9)
    args = make_args("fixmatch", tmp_path, "x", imb_algorithm="abc", abc_p_cutoff=0.9)
    assert args.abc_p_cutoff == 0.9 and args.abc_loss_ratio == 1.0
    with pytest.raises(ValueError, match="imb_algorithm: expected a name"):
        make_args("fixmatch", tmp_path, "x", imb_algorithm=3)


def test_hdl_train_and_eval_of_an_imbalance_run(tmp_path):
    torch.set_num_threads(1)
    args = combo_args("abc", "hdl_fixmatch", tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = runner.train(args, progress=False)
        metrics, out = runner.evaluate_run(os.path.join(str(tmp_path), "run"), "test", "best")
    assert res["iterations"] == 4
    assert metrics["test/top-1-acc"] == pytest.approx(res["test_acc_at_best_val"])
    # the per-sample predictions come from the head the metrics report (ABC's auxiliary one)
    rows = np.loadtxt(out, delimiter=",", skiprows=1)
    assert float((rows[:, 1] == rows[:, 2]).mean()) == pytest.approx(metrics["test/top-1-acc"])
