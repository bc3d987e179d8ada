"""HDL wrapped around USB's four base algorithms: registration, exact equivalence before warm-up,
refresh, target injection, checkpoint and resume."""
import math
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


def make_args(base, tmp_path, name, device="cpu", **over):
    cfg = load_yaml(os.path.join(CONFIGS, f"{base}.yaml"))
    cfg.update(dict(num_train_iter=20, num_eval_iter=1000, num_log_iter=1000, batch_size=8, uratio=1,
                    net="cnn_tiny", eval_batch_size=512, save_dir=str(tmp_path), save_name=name, device=str(device),
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


@pytest.mark.slow
@pytest.mark.parametrize("base", BASES)
def test_exactly_the_base_losses_before_warmup_and_when_disabled(base, tmp_path, device):
    ref, _ = run_losses(make_args(base, tmp_path, "base", device, algorithm=base))
    off, _ = run_losses(make_args(base, tmp_path, "off", device, algorithm=f"hdl_{base}", hdl_enable=False))
    early, a = run_losses(make_args(base, tmp_path, "early", device, algorithm=f"hdl_{base}", hdl_warmup_iter=1000))
    assert len(ref) == 20
    assert ref == off
    early_bank, b = run_losses(make_args(base, tmp_path, "early_bank", device, algorithm=f"hdl_{base}",
                                         hdl_warmup_iter=1000, hdl_embed="bank", hdl_blend_model="train"))
    assert ref == early
    assert ref == early_bank
    assert b.bank.num_filled > 0  # the bank was fed from the base's own features meanwhile
    assert a.bank.num_filled == 0  # ema_pass: the refresh embeds everything, the steps write no bank
    assert (a.hdl_state.diagnostics.raw_feat.abs().sum(dim=1) > 0).any()  # ...but keep the features for the logit diagnostics


@pytest.mark.slow
@pytest.mark.parametrize("base", BASES)
def test_refresh_checkpoint_resume(base, tmp_path, device):
    args = make_args(base, tmp_path, "run", device, algorithm=f"hdl_{base}", num_train_iter=6, num_eval_iter=3,
                     hdl_warmup_iter=3, hdl_refresh_every=3, hdl_embed="ema_pass")
    a = runner.build_algorithm(args, tb=False)
    a.train()
    assert len(a.refresh_log) == 2
    first = a.refresh_log[0]
    n_ulb = len(set(a.split_info.ulb_idx.tolist()) - set(a.split_info.lb_idx.tolist()))
    assert first["hdl/pool_size"] >= 0.5 * n_ulb
    assert os.path.exists(os.path.join(str(tmp_path), "run", "hdl_refresh.jsonl"))
    # the pool never relabels ground truth
    assert (a.pool.labels[torch.as_tensor(a.split_info.lb_idx)] == -1).all()

    ckpt = os.path.join(str(tmp_path), "run", "latest_model.pth")
    b = runner.build_algorithm(make_args(base, tmp_path, "run", device, algorithm=f"hdl_{base}", num_train_iter=6,
                                         hdl_embed="ema_pass", resume=True), tb=False)
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["hdl"]
    assert saved["version"] == 2 and saved["pool"]["version"] == 1
    # the logged pool accuracy of the last refresh is the saved pool's agreement with the true labels
    pool = saved["pool"]["labels"]
    pooled = pool >= 0
    assert a.refresh_log[-1]["hdl/pool_acc"] == pytest.approx(float((pool[pooled] == a._train_y.cpu()[pooled]).float().mean()))
    assert a.refresh_log[-1]["hdl/pool_size"] == float(pooled.sum())
    # with hdl_min_agreement 0 every pool label is injected
    assert a.refresh_log[-1]["hdl/injected_acc"] == a.refresh_log[-1]["hdl/pool_acc"]
    assert a.refresh_log[-1]["hdl/injected_coverage"] == a.refresh_log[-1]["hdl/pool_coverage"]
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
                      ({"hdl_class_quota": -1.0}, "hdl_class_quota: expected None or a float > 0"),
                      ({"hdl_bank_dtype": "bfloat16"},
                       r"^hdl_bank_dtype: expected one of \['float32', 'float16'\], got 'bfloat16'$")):
        with pytest.raises(ValueError, match=msg):  # the config check, or the settings read at construction
            runner.build_algorithm(make_args("fixmatch", tmp_path, "bad", algorithm="hdl_fixmatch", **over), tb=False)


# ---------------------------------------------------------------------- the target seam
class StepLog(Hook):
    """Keeps every step's log_dict entries of HDL."""

    def __init__(self):
        self.steps = []

    def after_train_step(self, algorithm):
        self.steps.append({k: v for k, v in algorithm.log_dict.items() if k.startswith("hdl/")})


def spy_targets(a):
    """Records (unlabeled batch indices, targets) of every step with HDL targets."""
    seen = []
    inner = a._batch_targets

    def spy(idx_ulb):
        t = inner(idx_ulb)
        seen.append((idx_ulb.clone(), t))
        return t
    a._batch_targets = spy
    return seen


def test_seam_raises_on_a_row_mismatch_and_on_a_role_never_called(tmp_path):
    a = runner.build_algorithm(make_args("fixmatch", tmp_path, "seam", algorithm="hdl_fixmatch"), tb=False)
    t = Targets.one_hot(torch.tensor([True, False, True]), torch.tensor([1, 0, 2]), torch.ones(3), 10)
    a.seam.begin(t)
    with pytest.raises(RuntimeError, match="role 'masking' of fixmatch returned \\(4,\\), expected 3 rows"):
        a.call_hook("masking", "MaskingHook", logits_x_ulb=torch.full((4, 10), 0.1), softmax_x_ulb=False)
    a.seam.begin(t)
    a.call_hook("masking", "MaskingHook", logits_x_ulb=torch.full((3, 10), 0.1), softmax_x_ulb=False)
    with pytest.raises(RuntimeError, match="\\['gen_ulb_targets'\\] of fixmatch were not called"):
        a.seam.end()
    assert not a.seam.active  # closed even when it raised
    mm = runner.build_algorithm(make_args("mixmatch", tmp_path, "seam_mm", algorithm="hdl_mixmatch"), tb=False)
    mm.seam.begin(t)
    with pytest.raises(RuntimeError, match="'compute_prob' of mixmatch returned \\(2, 10\\), expected 3 rows"):
        mm.compute_prob(torch.zeros(2, 10))
    mm.seam.abort()


@pytest.mark.parametrize("base", BASES)
def test_injected_rows_are_logged_and_are_the_pool_rows_of_the_batch(base, tmp_path, device):
    args = make_args(base, tmp_path, "inj_log", device, algorithm=f"hdl_{base}", num_train_iter=8,
                     hdl_warmup_iter=3, hdl_refresh_every=100)
    a = runner.build_algorithm(args, tb=False)
    seen = spy_targets(a)
    log = StepLog()
    a.register_hook(log, "StepLog", "LOWEST")
    a.train()
    assert all("hdl/injected_rows" not in s for s in log.steps[:3])  # nothing before the first refresh
    after = log.steps[3:]
    assert len(after) == 5 and len(seen) == 5
    for (idx, t), step in zip(seen, after):
        lab, _ = a.pool.lookup(a._ulb_global[idx.to(a.device)])
        lab = lab.cpu()
        assert float(step["hdl/injected_rows"]) == float((lab >= 0).sum())  # min_agreement 0: every pool row
        assert float(step["hdl/batch_share"]) == pytest.approx(float((lab >= 0).float().mean()))
        if t is not None:
            assert torch.equal(t.dist.argmax(1)[t.rows].cpu(), lab[lab >= 0])
    # the bank, the pool and the targets live on the training device
    assert a.bank.features().device.type == device.type and a.pool.labels.device.type == device.type
    assert sum(float(s["hdl/injected_rows"]) for s in after) > 0


def test_remixmatch_and_mixmatch_roles_get_the_pool_targets(tmp_path):
    import copy

    has = torch.tensor([True, False, True, False])
    lab = torch.tensor([3, 0, 9, 0])
    t = Targets.one_hot(has, lab, torch.ones(4), 10)
    probs = torch.softmax(torch.randn(4, 10, generator=torch.Generator().manual_seed(0)), dim=1)

    rm = runner.build_algorithm(make_args("remixmatch", tmp_path, "rm", algorithm="hdl_remixmatch"), tb=False)
    twin = copy.deepcopy(rm.hooks_dict["DistAlignHook"].wrapped)  # the base hook, same state
    expected = twin.dist_align(rm, probs_x_ulb=probs.clone())
    rm.seam.begin(t)
    got = rm.call_hook("dist_align", "DistAlignHook", probs_x_ulb=probs.clone())
    assert rm.seam.end() == 2
    assert torch.equal(got[has], torch.nn.functional.one_hot(lab[has], 10).float())
    assert torch.equal(got[~has], expected[~has])  # the other rows: the base's distribution alignment
    # the base hook's own state learned from the model's probabilities, as without HDL
    assert torch.equal(rm.hooks_dict["DistAlignHook"].p_model, twin.p_model)

    mm = runner.build_algorithm(make_args("mixmatch", tmp_path, "mm", algorithm="hdl_mixmatch"), tb=False)
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    mm.seam.begin(t)
    p1, p2 = mm.compute_prob(logits), mm.compute_prob(logits + 1.0)  # both unlabeled views
    assert mm.seam.end() == 2
    for p in (p1, p2):
        assert torch.equal(p[has], torch.nn.functional.one_hot(lab[has], 10).float())
    assert torch.allclose(p1[~has], torch.softmax(logits[~has], dim=1))
    assert torch.equal(mm.compute_prob(logits), torch.softmax(logits, dim=1))  # no targets: untouched


def test_pool_mode_mixes_pool_rows_into_the_labeled_batch(tmp_path, device):
    args = make_args("fixmatch", tmp_path, "poolmode", device, algorithm="hdl_fixmatch", num_train_iter=8,
                     hdl_warmup_iter=3, hdl_refresh_every=100, hdl_use="pool", hdl_gt_ratio=0.5)
    a = runner.build_algorithm(args, tb=False)
    seen = spy_targets(a)
    batches = []
    inner = a._mix_pool_into_labeled

    def spy(kw, x_ulb_w, targets):
        out, keep = inner(kw, x_ulb_w, targets)
        batches.append((kw["y_lb"].clone(), out["y_lb"].clone(), keep))
        return out, keep
    a._mix_pool_into_labeled = spy
    log = StepLog()
    a.register_hook(log, "StepLog", "LOWEST")
    a.train()
    assert len(batches) == 5
    b = args.batch_size
    n_gt = math.ceil(0.5 * b)
    for (idx, _), (y_before, y_after, keep), step in zip(seen, batches, log.steps[3:]):
        lab, _ = a.pool.lookup(a._ulb_global[idx.to(a.device)])
        lab = lab.cpu()
        want = lab[lab >= 0][: b - n_gt]  # the first pool rows of the unlabeled batch, up to the cap
        assert keep == b - len(want)
        assert torch.equal(y_after[:keep], y_before[:keep])  # ground truth kept in front
        assert torch.equal(y_after[keep:].cpu(), want)
        assert float(step["hdl/batch_share"]) == pytest.approx(len(want) / b)
        assert float(step["hdl/injected_rows"]) == 0.0  # the unlabeled loss stays the base's


@pytest.mark.parametrize("weight_by_agreement", [False, True])
def test_min_agreement_and_weight_by_agreement(tmp_path, weight_by_agreement):
    a = runner.build_algorithm(make_args("fixmatch", tmp_path, "agr", algorithm="hdl_fixmatch", hdl_min_agreement=0.5,
                                         hdl_weight_by_agreement=weight_by_agreement), tb=False)
    ulb = a._ulb_global[:4]
    a.pool.assign(ulb, torch.tensor([2, 5, 7, -1]), torch.tensor([0.9, 0.4, 0.5, 0.0]), torch.tensor([1, 2, 3, -1]),
                  torch.zeros(4, dtype=torch.bool))
    t = a._batch_targets(torch.arange(4))
    t = type(t)(t.rows.cpu(), t.dist.cpu(), t.weight.cpu())
    assert t.rows.tolist() == [True, False, True, False]  # 0.4 < hdl_min_agreement; the last has no label
    assert t.dist.argmax(1)[t.rows].tolist() == [2, 7]
    want = [0.9, 0.5] if weight_by_agreement else [1.0, 1.0]
    assert torch.allclose(t.weight[t.rows], torch.tensor(want))
    a.seam.begin(t)
    mask = a.call_hook("masking", "MaskingHook", logits_x_ulb=torch.full((4, 10), 0.1), softmax_x_ulb=False)
    a.seam.abort()
    assert torch.allclose(mask, torch.tensor([want[0], 0.0, want[1], 0.0]))


def test_injected_figures_count_only_labels_passing_min_agreement(tmp_path):
    # hdl_inject all: the agreements are the vote shares (the blend's, after 3 iterations, are the
    # near-flat scores of an untrained model and all below 0.9)
    args = make_args("fixmatch", tmp_path, "injfig", algorithm="hdl_fixmatch", num_train_iter=3, hdl_warmup_iter=3,
                     hdl_min_agreement=0.9, hdl_inject="all")
    a = runner.build_algorithm(args, tb=False)
    a.train()
    stats = a.refresh_log[0]
    ulb = set(a.split_info.ulb_idx.tolist()) - set(a.split_info.lb_idx.tolist())
    used = (a.pool.labels >= 0) & (a.pool.agreement >= 0.9)
    assert stats["hdl/injected_coverage"] == pytest.approx(float(used.sum()) / len(ulb))
    assert 0 < used.sum() < (a.pool.labels >= 0).sum()  # the filter removes some labels here
    assert stats["hdl/injected_acc"] == pytest.approx(float((a.pool.labels[used] == a._train_y[used]).float().mean()))
    # class-balanced, computed another way: the mean over the true classes of the per-class share right
    got, truth = a.pool.labels[used].tolist(), a._train_y[used].tolist()
    recalls = [sum(g == c for g, t in zip(got, truth) if t == c) / truth.count(c) for c in sorted(set(truth))]
    assert stats["hdl/injected_balanced_acc"] == pytest.approx(sum(recalls) / len(recalls))
    assert "hdl/logit_balanced_acc_equal_injected" in stats


def test_checkpoints_before_the_pool_object_load(tmp_path):
    """A checkpoint whose 'hdl' entry has the earlier flat layout loads into the pool object."""
    a = runner.build_algorithm(make_args("fixmatch", tmp_path, "legacy", algorithm="hdl_fixmatch"), tb=False)
    n, d = a.bank.num_samples, a.bank.dim
    labels = torch.full((n,), -1, dtype=torch.long)
    labels[a._ulb_global[:5]] = torch.tensor([1, 2, 3, 4, 5])
    flat = {"bank": a.bank.state_dict(), "pool_label": labels, "pool_agreement": (labels >= 0).float() * 0.5,
            "raw_feat": torch.ones(n, d), "logit_pred": torch.zeros(n, dtype=torch.long), "logit_conf": torch.zeros(n)}
    a.hdl_state.load_state_dict(flat)
    assert torch.equal(a.pool.labels, labels) and a.pool.size == 5
    assert a.pool.level[labels >= 0].tolist() == [1] * 5 and (a.pool.level[labels < 0] == -1).all()
    assert torch.equal(a.hdl_state.diagnostics.raw_feat, torch.ones(n, d))
    del flat["pool_agreement"]
    with pytest.raises(ValueError, match="'pool_agreement' is missing"):
        a.hdl_state.load_state_dict(flat)


@pytest.mark.slow
def test_an_approximate_graph_logs_its_recall(tmp_path):
    pytest.importorskip("faiss")
    args = make_args("fixmatch", tmp_path, "ann", algorithm="hdl_fixmatch", num_train_iter=3, hdl_warmup_iter=3,
                     hdl_index="ivf")
    a = runner.build_algorithm(args, tb=False)
    a.train()
    stats = a.refresh_log[0]
    assert 0.5 < stats["hdl/graph_recall"] <= 1.0  # measured on sampled rows against exact search
    exact = runner.build_algorithm(make_args("fixmatch", tmp_path, "exact", algorithm="hdl_fixmatch",
                                             num_train_iter=3, hdl_warmup_iter=3), tb=False)
    exact.train()
    assert "hdl/graph_recall" not in exact.refresh_log[0]


def test_confident_injection_drops_the_labels_the_model_contradicts_more_confidently(tmp_path):
    a = runner.build_algorithm(make_args("fixmatch", tmp_path, "conf", algorithm="hdl_fixmatch",
                                         hdl_inject="confident"), tb=False)
    assert a.hdl.inject == "confident"
    ulb = a._ulb_global[:4]
    a.pool.assign(ulb, torch.tensor([1, 1, 1, 1]), torch.full((4,), 0.8), torch.ones(4, dtype=torch.long),
                  torch.zeros(4, dtype=torch.bool))
    # a classifier head that reads the class scores straight from the features: sample 0 agrees with
    # the pool (class 1), samples 1 and 2 say class 3 with softmax confidence 0.9 and 0.6, sample 3
    # was never seen by a train step (zero features)
    diag = a.hdl_state.diagnostics
    scores = torch.zeros(4, diag.raw_feat.shape[1])
    scores[0, 1] = 5.0
    p = lambda q: math.log(q * 9 / (1 - q))  # noqa: E731  (one class at q, nine at (1 - q) / 9)
    scores[1, 3], scores[2, 3] = p(0.9), p(0.6)
    diag.raw_feat[ulb] = scores
    a.model.classifier = torch.nn.Linear(diag.raw_feat.shape[1], 10, bias=False)
    with torch.no_grad():
        a.model.classifier.weight.zero_()
        a.model.classifier.weight[:, :10] = torch.eye(10)
    calibrated = torch.tensor([0.7, 0.7, 0.7, 0.7])  # the labels' calibrated confidence
    kept, dropped = a._drop_less_reliable(ulb, calibrated)
    # dropped: sample 1 only (contradicted at 0.9 > 0.7); sample 2 is contradicted at 0.6 < 0.7
    assert dropped == 1 and kept.tolist() == ulb[[0, 2, 3]].tolist()
    assert a.pool.labels[ulb].tolist() == [1, -1, 1, 1] and a.pool.level[ulb].tolist() == [1, -1, 1, 1]
    assert diag.logit_conf[ulb[1]].item() == pytest.approx(0.9, abs=1e-5)


def test_float16_bank_trains_saves_and_loads_into_either_dtype(tmp_path):
    args = make_args("fixmatch", tmp_path, "f16", algorithm="hdl_fixmatch", num_train_iter=4, num_eval_iter=4,
                     hdl_warmup_iter=4, hdl_bank_dtype="float16")
    a = runner.build_algorithm(args, tb=False)
    a.train()
    assert a.bank.features().dtype == torch.float16 and a.refresh_log[0]["hdl/pool_size"] > 0
    ckpt = os.path.join(str(tmp_path), "f16", "latest_model.pth")
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)["hdl"]
    assert saved["version"] == 2 and saved["bank"]["feats"].dtype == torch.float16
    for dtype in ("float32", "float16"):
        b = runner.build_algorithm(make_args("fixmatch", tmp_path, "f16", algorithm="hdl_fixmatch", num_train_iter=4,
                                             hdl_bank_dtype=dtype, resume=True), tb=False)
        b.load_model(ckpt)
        assert b.bank.features().dtype == getattr(torch, dtype)
        assert torch.equal(b.bank.features().float(), a.bank.features().float())
        assert torch.equal(b.pool.labels, a.pool.labels)


def test_calibrated_injection_drops_the_labels_below_the_models_threshold(tmp_path):
    a = runner.build_algorithm(make_args("fixmatch", tmp_path, "cal", algorithm="hdl_fixmatch",
                                         hdl_inject="calibrated"), tb=False)
    assert a.p_cutoff == 0.95
    ulb = a._ulb_global[:4]
    a.pool.assign(ulb, torch.tensor([1, 2, 3, 4]), torch.full((4,), 0.8), torch.ones(4, dtype=torch.long),
                  torch.zeros(4, dtype=torch.bool))
    kept, dropped = a._drop_less_reliable(ulb, torch.tensor([0.99, 0.95, 0.94, 0.5]))
    assert dropped == 2 and kept.tolist() == ulb[:2].tolist()
    assert a.pool.labels[ulb].tolist() == [1, 2, -1, -1]


@pytest.mark.parametrize("calibrated", [False, True])
def test_blend_injection_on_paper(tmp_path, calibrated):
    from types import SimpleNamespace

    a = runner.build_algorithm(make_args("fixmatch", tmp_path, "blend", algorithm="hdl_fixmatch",
                                         hdl_inject="blend", hdl_blend_weight=0.5, hdl_blend_model="train",
                                         hdl_blend_prior="none"),
                               tb=False)
    assert a.hdl.inject == "blend" and a.hdl.blend_weight == 0.5 and a.hdl.blend_model == "train"
    # refresh rows: row 0 a given label (class 0), rows 1-3 HDL-labeled 1, 1, 2
    ids = torch.cat([a._lb_global[:1], a._ulb_global[:3]])
    hdl_labels = torch.tensor([0, 1, 1, 2])
    given = torch.tensor([True, False, False, False])
    pool_ids = a.pool.assign(ids, hdl_labels, torch.full((4,), 0.7), torch.ones(4, dtype=torch.long), given)
    r = SimpleNamespace(new=~given, graph_sims=torch.tensor([[.9, .5], [.8, .6], [.7, .2], [.5, .4]]),
                        graph_idx=torch.tensor([[1, 2], [0, 2], [1, 0], [2, 1]]),
                        result=SimpleNamespace(labels=hdl_labels, chosen_k=1,
                                               confidence=torch.tensor([1.0, 0.3, 0.9, 0.9]) if calibrated else None))
    # the model: class 0 at 0.9 on row 1, class 1 at 0.8 on row 2 (the nine other classes share the
    # rest); row 3 was never seen by a train step (zero features) and keeps HDL's label
    diag = a.hdl_state.diagnostics
    scores = torch.zeros(3, diag.raw_feat.shape[1])
    p = lambda q: math.log(q * 9 / (1 - q))  # noqa: E731
    scores[0, 0], scores[1, 1] = p(0.9), p(0.8)
    diag.raw_feat[pool_ids[:2]] = scores[:2]
    a.model.classifier = torch.nn.Linear(diag.raw_feat.shape[1], 10, bias=False)
    with torch.no_grad():
        a.model.classifier.weight.zero_()
        a.model.classifier.weight[:, :10] = torch.eye(10)
    changed = a._blend_with_model(pool_ids, r)
    # without a calibrated confidence (a labeling at a fixed k) the vote shares are blended:
    # row 1: neighbourhood votes (k = 1) class 0: .8 (row 0), class 1: 1 (itself) -> (4/9, 5/9);
    #   blend .5 * 4/9 + .5 * .9 = .6722 for class 0 against .5 * 5/9 + .5 * .1/9 = .2833 -> class 0
    # row 2: votes class 1: 1 + .7 (row 1's HDL label) -> (0, 1); .5 * 1 + .5 * .8 = .9 -> class 1
    # calibrated (the labeler's confidence .3 on row 1's label 1, .9 on row 2's): row 1's distribution
    #   becomes (.7, .3) (the rest to class 0, the only other voted class) -> .5 * .7 + .45 = .8 for class 0;
    #   row 2's (.1 / 9 on each other class, .9 on class 1) -> .5 * .9 + .5 * .8 = .85 for class 1
    assert changed == 1
    assert a.pool.labels[pool_ids].tolist() == [0, 1, 2]
    expect = [.8, .85] if calibrated else [.5 * 4 / 9 + .45, .9]
    assert a.pool.agreement[pool_ids][:2].tolist() == pytest.approx(expect, abs=1e-5)
    assert a.pool.agreement[pool_ids][2].item() == pytest.approx(0.7)


def test_blend_injection_at_weight_0_takes_the_models_labels(tmp_path):
    args = make_args("fixmatch", tmp_path, "blendrun", algorithm="hdl_fixmatch", num_train_iter=4, num_eval_iter=4,
                     hdl_warmup_iter=4, hdl_inject="blend", hdl_blend_weight=0.0, hdl_blend_model="train",
                     hdl_blend_prior="none")
    a = runner.build_algorithm(args, tb=False)
    a.train()
    rec = a.refresh_log[0]
    pool_ids = torch.nonzero(a.pool.labels >= 0).flatten()
    diag = a.hdl_state.diagnostics
    seen = pool_ids[diag.raw_feat[pool_ids].abs().sum(dim=1) > 0]
    assert len(seen) > 0 and rec["hdl/pool_size"] == len(pool_ids)
    # weight 0: every label a train step has seen is the classifier head's prediction, its agreement
    # the head's confidence (the head is unchanged since the refresh: it ran after the last step)
    diag._predict(a.model, a.device, seen)
    assert torch.equal(a.pool.labels[seen], diag.logit_pred[seen])
    assert torch.allclose(a.pool.agreement[seen], diag.logit_conf[seen], atol=1e-6)
    assert rec["hdl/blend_changed"] >= 1


@pytest.mark.slow
def test_blend_with_the_ema_model_at_weight_0_takes_the_ema_heads_labels(tmp_path):
    from hdl.algorithms.usb.embedding import embed_training_set

    args = make_args("fixmatch", tmp_path, "blendema", algorithm="hdl_fixmatch", num_train_iter=4, num_eval_iter=4,
                     hdl_warmup_iter=4, hdl_inject="blend", hdl_blend_weight=0.0, hdl_blend_prior="none")
    a = runner.build_algorithm(args, tb=False)
    assert a.hdl.blend_model == "ema" and a.hdl.embed == "ema_pass"  # the defaults
    a.train()
    rec = a.refresh_log[0]
    pool_ids = torch.nonzero(a.pool.labels >= 0).flatten()
    is_lb = torch.zeros_like(a.pool.labels, dtype=torch.bool)
    is_lb[a._lb_global] = True
    pool_ids = pool_ids[~is_lb[pool_ids]]
    assert len(pool_ids) > 0 and rec["hdl/pool_size"] == len(pool_ids)
    # computed another way: embed the training set again with the EMA model (unchanged since the
    # refresh, after the last step) and apply its head to the unnormalised features; at weight 0
    # every pool label (seen by a train step or not) is that head's argmax, its agreement the probability
    index, feats = embed_training_set(a)
    pos = torch.full_like(a.pool.labels, -1)
    pos[torch.as_tensor(index)] = torch.arange(len(index))
    with torch.no_grad():
        probs = torch.softmax(a.ema_model(feats[pos[pool_ids]], only_fc=True), dim=-1)
    conf, pred = probs.max(dim=1)
    assert torch.equal(a.pool.labels[pool_ids], pred)
    assert torch.allclose(a.pool.agreement[pool_ids], conf, atol=1e-5)
    assert rec["hdl/blend_changed"] >= 1


@pytest.mark.slow
def test_blend_with_the_balanced_ema_model_at_weight_0(tmp_path):
    """hdl_blend_prior balanced (hdl_loss_prior none), weight 0: every pool label is the argmax of the EMA head's
    probabilities divided by their mean over the pool (computed here another way: the EMA model
    applied again to a fresh embedding of the training set)."""
    from hdl.algorithms.usb.embedding import embed_training_set

    args = make_args("fixmatch", tmp_path, "blendbal", algorithm="hdl_fixmatch", num_train_iter=4, num_eval_iter=4,
                     hdl_warmup_iter=4, hdl_inject="blend", hdl_blend_weight=0.0, hdl_blend_prior="balanced",
                     hdl_loss_prior="none")
    a = runner.build_algorithm(args, tb=False)
    assert a.hdl.blend_prior == "balanced"
    a.train()
    pool_ids = torch.nonzero(a.pool.labels >= 0).flatten()
    is_lb = torch.zeros_like(a.pool.labels, dtype=torch.bool)
    is_lb[a._lb_global] = True
    pool_ids = pool_ids[~is_lb[pool_ids]]
    index, feats = embed_training_set(a)
    pos = torch.full_like(a.pool.labels, -1)
    pos[torch.as_tensor(index)] = torch.arange(len(index))
    with torch.no_grad():
        probs = torch.softmax(a.ema_model(feats[pos[pool_ids]], only_fc=True), dim=-1)
    adjusted = probs / probs.mean(dim=0)
    adjusted = adjusted / adjusted.sum(dim=1, keepdim=True)
    conf, pred = adjusted.max(dim=1)
    assert torch.equal(a.pool.labels[pool_ids], pred)
    assert torch.allclose(a.pool.agreement[pool_ids], conf, atol=1e-5)


def test_prior_adjusted_loss_on_paper():
    """The wrapped consistency loss adds the shift to the logits (none: the inner loss as it is)."""
    from semilearn.core.criterions import ConsistencyLoss

    from hdl.algorithms.usb.logit_adjust import PriorAdjustedLoss

    shift = [None]
    loss = PriorAdjustedLoss(ConsistencyLoss(), lambda: shift[0])
    logits = torch.zeros(1, 2)
    target = torch.tensor([1])
    assert loss(logits, target, "ce").item() == pytest.approx(math.log(2))
    shift[0] = torch.tensor([0.75, 0.25]).log()
    # softmax(0 + log(.75, .25)) = (.75, .25): cross-entropy on class 1 is -log .25
    assert loss(logits, target, "ce").item() == pytest.approx(-math.log(0.25))
    # mse on the adjusted probabilities: ((.75 - 0)^2 + (.25 - 1)^2) / 2
    soft = torch.tensor([[0.0, 1.0]])
    assert loss(logits, soft, name="mse").item() == pytest.approx(0.5625)
    mask = torch.tensor([0.5])
    assert loss(logits, target, "ce", mask=mask).item() == pytest.approx(-0.5 * math.log(0.25))


@pytest.mark.slow
@pytest.mark.parametrize("base", BASES)
def test_loss_prior_shifts_the_unlabeled_losses_only_on_steps_with_targets(base, tmp_path):
    """hdl_loss_prior adjusted: before the first refresh the losses are the base's exactly; on every
    later step each consistency-loss call sees the log prior of the injected pool labels (counted
    here from the pool), and the steps outside stay unshifted."""
    over = dict(algorithm=f"hdl_{base}", num_train_iter=8, num_eval_iter=1000, hdl_warmup_iter=4,
                hdl_refresh_every=4, hdl_embed="ema_pass", hdl_blend_prior="none")
    ref, _ = run_losses(make_args(base, tmp_path, "ref", **over))
    args = make_args(base, tmp_path, "adj", hdl_loss_prior="adjusted", **over)
    a = runner.build_algorithm(args, tb=False)
    inner = a.consistency_loss.inner
    seen = []

    class Spy(torch.nn.Module):
        def forward(self, logits, targets, name="ce", mask=None):
            seen.append((a.it, None if a._loss_shift is None else a._loss_shift.clone()))
            return inner(logits, targets, name, mask)

    a.consistency_loss.inner = Spy()
    priors, pools = {}, {}

    def consumer(alg, ev):  # runs before the refresh sets the new prior: sees the one in force
        priors[alg.it + 1] = alg._loss_log_prior
        used = (alg.pool.labels >= 0) & (alg.pool.agreement >= alg.hdl.min_agreement)
        pools[alg.it + 1] = alg.pool.labels[used].clone()

    a.register_refresh_consumer("prior", consumer)
    rec = LossRecorder()
    a.register_hook(rec, "LossRecorder", "LOWEST")
    torch.set_num_threads(1)
    a.train()
    assert rec.losses[:4] == ref[:4]  # the first refresh is after step 4: nothing shifted before
    assert sorted(priors) == [4, 8] and priors[4] is None  # no prior in force at the first refresh

    def log_prior(labels):
        counts = torch.bincount(labels, minlength=a.num_classes).float() + 1
        return (counts / counts.sum()).log()

    assert torch.allclose(priors[8], log_prior(pools[4]))  # steps 5-8 trained with the first pool's prior
    assert torch.allclose(a._loss_log_prior, log_prior(pools[8]))
    early = [s for it, s in seen if it < 4]
    late = [s for it, s in seen if it >= 4]
    assert early and all(s is None for s in early)
    assert late and all(s is not None for s in late)
    assert a._loss_shift is None  # reset after every step


def ema_head_logits(a, ids):
    """The EMA model's head on a fresh embedding (evaluation transform) of training samples ``ids``."""
    from hdl.algorithms.usb.embedding import embed_training_set

    index, feats = embed_training_set(a)
    pos = torch.full_like(a.pool.labels, -1)
    pos[torch.as_tensor(index)] = torch.arange(len(index))
    with torch.no_grad():
        return a.ema_model(feats[pos[ids]], only_fc=True)


@pytest.mark.slow
def test_blend_with_the_loss_prior_takes_the_model_as_the_loss_trained_it(tmp_path):
    """hdl_loss_prior adjusted, blend weight 0, prior none: at the second refresh every pool label
    is the argmax of the EMA head's probabilities times the prior in force since the first refresh
    (the EMA model applied again to a fresh embedding)."""
    args = make_args("fixmatch", tmp_path, "blendloss", algorithm="hdl_fixmatch", num_train_iter=8,
                     num_eval_iter=1000, hdl_warmup_iter=4, hdl_refresh_every=4, hdl_inject="blend",
                     hdl_blend_weight=0.0, hdl_blend_prior="none", hdl_loss_prior="adjusted")
    a = runner.build_algorithm(args, tb=False)
    priors = []
    a.register_refresh_consumer("prior", lambda alg, ev: priors.append(alg._loss_log_prior))
    torch.set_num_threads(1)
    a.train()
    assert priors[0] is None and priors[1] is not None
    pool_ids = torch.nonzero(a.pool.labels >= 0).flatten()
    conf, pred = torch.softmax(ema_head_logits(a, pool_ids) + priors[1], dim=-1).max(dim=1)
    assert torch.equal(a.pool.labels[pool_ids], pred)
    assert torch.allclose(a.pool.agreement[pool_ids], conf, atol=1e-5)
    # and the labels differ from the unadjusted head's somewhere (the prior is not uniform)
    assert not torch.allclose(priors[1].exp(), torch.full_like(priors[1], 1 / a.num_classes), atol=1e-3)


@pytest.mark.parametrize("base,use,loss,blend", [
    ("fixmatch", "target", "adjusted", "none"), ("freematch", "target", "adjusted", "none"),
    ("remixmatch", "target", "adjusted", "none"), ("mixmatch", "target", "none", "balanced"),
    ("fixmatch", "pool", "none", "balanced")])
def test_auto_priors_resolve_by_the_bases_unlabeled_loss(base, use, loss, blend, tmp_path):
    """hdl_loss_prior / hdl_blend_prior auto: logit adjustment where the base's unlabeled loss is a
    cross-entropy in target mode, with the blend unadjusted; balanced blend labels otherwise; an
    explicit value is kept."""
    a = runner.build_algorithm(make_args(base, tmp_path, f"auto_{base}_{use}", algorithm=f"hdl_{base}", hdl_use=use,
                                         hdl_loss_prior="auto", hdl_blend_prior="auto"), tb=False)
    assert (a.hdl.loss_prior, a.hdl.blend_prior) == (loss, blend)
    from hdl.algorithms.usb.logit_adjust import PriorAdjustedLoss
    assert isinstance(a.consistency_loss, PriorAdjustedLoss) == (loss == "adjusted")
    b = runner.build_algorithm(make_args(base, tmp_path, f"expl_{base}_{use}", algorithm=f"hdl_{base}", hdl_use=use,
                                         hdl_loss_prior="none", hdl_blend_prior="none"), tb=False)
    assert (b.hdl.loss_prior, b.hdl.blend_prior) == ("none", "none")


@pytest.mark.slow
def test_until_prior_blends_the_balanced_model_until_a_loss_prior_is_in_force(tmp_path):
    """hdl_blend_prior until_prior with the adjusted loss, weight 0: at the first refresh (no prior
    in force) the pool labels are the argmax of the EMA head's probabilities divided by their mean
    over the pool; at the second, of the EMA head's probabilities times the prior in force."""
    args = make_args("fixmatch", tmp_path, "untilprior", algorithm="hdl_fixmatch", num_train_iter=8,
                     num_eval_iter=1000, hdl_warmup_iter=4, hdl_refresh_every=4, hdl_blend_weight=0.0,
                     hdl_blend_prior="until_prior", hdl_loss_prior="adjusted")
    a = runner.build_algorithm(args, tb=False)
    checked = []

    def consumer(alg, ev):
        pool_ids = torch.nonzero(alg.pool.labels >= 0).flatten()
        logits = ema_head_logits(alg, pool_ids)
        probs = torch.softmax(logits, dim=-1)
        if alg._loss_log_prior is None:
            want = probs / probs.mean(dim=0)
        else:
            want = torch.softmax(logits + alg._loss_log_prior, dim=-1)
        assert torch.equal(alg.pool.labels[pool_ids], want.argmax(dim=1)), alg.it
        checked.append(alg._loss_log_prior is None)

    a.register_refresh_consumer("check", consumer)
    torch.set_num_threads(1)
    a.train()
    assert checked == [True, False]
