"""Semantic supervised losses (S-AL, HACE, PMI) inside the hdl_* algorithms, and severity metrics."""
import json
import os

import pytest
import torch

pytest.importorskip("semilearn")

import hdl.algorithms  # noqa: E402,F401  (registers the hdl_* algorithms)
from hdl.algorithms.run import runner  # noqa: E402
from hdl.algorithms.usb.semantic_loss import (  # noqa: E402
    HEAD_NAME,
    SupervisedLossTap,
    pmi_embedding_from_graph,
    sal_target_fn,
)
from hdl.sal import sal_similarity_from_hierarchy, sal_targets  # noqa: E402
from hdl.hierarchy import Hierarchy  # noqa: E402
from semilearn.core.criterions import CELoss  # noqa: E402
from semilearn.core.utils import EMA  # noqa: E402

from tests.test_hdl_wrapper import make_args, run_losses  # noqa: E402

DIGITS = [str(c) for c in range(10)]


@pytest.fixture
def two_level(tmp_path):
    path = tmp_path / "digits_two_level.json"
    path.write_text(json.dumps({"root": {"low": DIGITS[:5], "high": DIGITS[5:]}}))
    return str(path)


def args_for(base, tmp_path, name, **over):
    kw = dict(algorithm=f"hdl_{base}", num_train_iter=4, hdl_warmup_iter=2, hdl_refresh_every=2)
    kw.update(over)
    return make_args(base, tmp_path, name, **kw)


# ---------------------------------------------------------------- pure pieces
def test_sal_targets_of_mixed_labels_are_the_mixup_of_sal_targets():
    h = Hierarchy.from_nested({"r": {"a": ["0", "1"], "2": None}})
    q = sal_targets(sal_similarity_from_hierarchy(h), 0.4).float()  # 0,1 siblings; 2 alone
    fn = sal_target_fn(q)
    logits = torch.zeros(2, 3)
    lam = 0.7
    mixed = torch.tensor([[lam, 1 - lam, 0.0], [lam, 0.0, 1 - lam]])
    out = fn(mixed, logits)
    assert torch.allclose(out[0], lam * q[0] + (1 - lam) * q[1])
    assert torch.allclose(out[1], lam * q[0] + (1 - lam) * q[2])
    # hand check: h(0,1)=1, L=2 -> s01 = 0.5, s02 = 0; q_0 = (1, .5, 0)/1.5; target = .4 e0 + .6 q_0
    assert torch.allclose(fn(torch.tensor([0]), logits[:1])[0], torch.tensor([0.8, 0.2, 0.0]))


def test_tap_changes_only_the_first_call_and_checks_its_rows():
    q = torch.tensor([[0.5, 0.5], [0.0, 1.0]])
    tap = SupervisedLossTap(CELoss(), sal_target_fn(q))
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0]])
    y = torch.tensor([0, 1])
    plain = CELoss()(logits, y, reduction="mean")
    assert torch.equal(tap(logits, y, reduction="mean"), plain)  # not armed: unchanged
    tap.arm(2)
    with pytest.raises(RuntimeError, match="has 1 rows, expected the labeled batch's 2"):
        tap(logits[:1], y[:1], reduction="mean")  # the supervised role with the wrong batch size
    assert tap.disarm() is None
    tap.arm(2)
    first = tap(logits, y, reduction="mean")
    assert torch.equal(tap(logits, y, reduction="mean"), plain)  # only the first one
    cap = tap.disarm()
    assert cap is not None and torch.equal(cap.loss, first) and torch.equal(cap.targets, q[y])
    assert tap.disarm() is None


def test_pmi_embedding_is_aligned_to_the_previous_one():
    nb = torch.tensor([[1, 2], [0, 2], [0, 1], [4, 5], [3, 5], [3, 4]])
    y = torch.tensor([0, 0, 1, 2, 2, 2])
    e = pmi_embedding_from_graph(nb, y, 3)
    assert e.shape == (3, 3)
    rot, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)))
    again = pmi_embedding_from_graph(nb, y, 3, previous=e @ rot)
    assert torch.allclose(again, e @ rot, atol=1e-5)  # same Gram matrix, rotated onto the previous


# ---------------------------------------------------------------- training
@pytest.mark.slow
@pytest.mark.parametrize("base", ["fixmatch", "mixmatch"])
def test_none_and_identity_sal_are_bitwise_the_base(base, tmp_path):
    ref, _ = run_losses(make_args(base, tmp_path, "base", algorithm=base, num_train_iter=5))
    none, _ = run_losses(args_for(base, tmp_path, "none", num_train_iter=5, hdl_warmup_iter=1000, semantic_loss="none"))
    flat, a = run_losses(args_for(base, tmp_path, "flat", num_train_iter=5, hdl_warmup_iter=1000,
                                  semantic_loss="sal", semantic_tree="flat"))
    assert ref == none == flat
    assert a.ce_loss.__class__ is CELoss  # Q is the identity: nothing wrapped


def test_flat_hace_is_cross_entropy(tmp_path):
    ref, _ = run_losses(make_args("fixmatch", tmp_path, "base", algorithm="fixmatch", num_train_iter=1))
    hace, a = run_losses(args_for("fixmatch", tmp_path, "hace", num_train_iter=1, semantic_loss="hace",
                                  semantic_tree="flat"))
    assert getattr(a.model, HEAD_NAME).fc is None  # no internal nodes
    assert hace[0]["train/sup_loss"] == pytest.approx(ref[0]["train/sup_loss"], abs=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("base,mode", [("fixmatch", "sal"), ("fixmatch", "hace"), ("fixmatch", "pmi"),
                                       ("mixmatch", "sal"), ("remixmatch", "pmi")])
def test_semantic_losses_train(base, mode, tmp_path, two_level):
    ref, _ = run_losses(make_args(base, tmp_path, "base", algorithm=base, num_train_iter=1))
    args = args_for(base, tmp_path, mode, semantic_loss=mode, semantic_tree=two_level)
    losses, a = run_losses(args)
    assert len(losses) == 4
    assert all(torch.isfinite(torch.tensor(v)) for step in losses for v in step.values())
    assert losses[0]["train/sup_loss"] != pytest.approx(ref[0]["train/sup_loss"], abs=1e-6)
    if mode in ("hace", "pmi"):
        head = getattr(a.model, HEAD_NAME)
        in_opt = {id(p) for g in a.optimizer.param_groups for p in g["params"]}
        assert all(id(p) in in_opt for p in head.parameters())
        before = getattr(runner.build_algorithm(args, tb=False).model, HEAD_NAME).fc.weight  # same seed
        assert not torch.equal(before, head.fc.weight)  # the head was trained
        assert getattr(a.ema_model, HEAD_NAME) is not head
    if mode == "hace":
        assert getattr(a.model, HEAD_NAME).fc.out_features == 2  # internal nodes 'low', 'high'
    if mode == "pmi":
        assert [r["it"] for r in a.pmi_log] == [2, 4]
        assert "train/pmi_loss" in losses[-1]


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["hace", "pmi"])
def test_checkpoint_resume_restores_the_head(mode, tmp_path, two_level):
    args = args_for("fixmatch", tmp_path, "run", semantic_loss=mode, semantic_tree=two_level, num_eval_iter=2)
    a = runner.build_algorithm(args, tb=False)
    a.train()
    ckpt = os.path.join(str(tmp_path), "run", "latest_model.pth")
    b = runner.build_algorithm(args_for("fixmatch", tmp_path, "run", semantic_loss=mode, semantic_tree=two_level,
                                        resume=True), tb=False)
    fresh = {k: v.clone() for k, v in getattr(b.model, HEAD_NAME).state_dict().items()}
    b.load_model(ckpt)
    saved = torch.load(ckpt, map_location="cpu", weights_only=False)
    for key, model in (("model", b.model), ("ema_model", b.ema_model)):
        sa = {k[len(HEAD_NAME) + 1:]: v for k, v in saved[key].items() if k.startswith(HEAD_NAME + ".")}
        sb = getattr(model, HEAD_NAME).state_dict()
        assert sa and sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(fresh[k], getattr(b.model, HEAD_NAME).state_dict()[k]) for k in fresh)
    if mode == "pmi":
        assert not torch.equal(b.model.semantic_head.embedding, torch.eye(10))  # rebuilt at it 2 and 4
    head_ids = {id(p) for p in getattr(b.model, HEAD_NAME).parameters()}
    state = b.optimizer.state_dict()["state"]
    flat = [p for g in b.optimizer.param_groups for p in g["params"]]
    assert any(id(p) in head_ids and i in state for i, p in enumerate(flat))  # momentum restored


def test_severity_metrics_in_evaluation_and_results(tmp_path, two_level):
    res = runner.train(args_for("fixmatch", tmp_path, "flat", semantic_loss="none", num_train_iter=2), progress=False)
    keys = [k for k in res["metrics"] if "/sev/" in k]
    assert "best_test/sev/l0/top1_mistake_dist" in keys and "final_test/sev/l0/top5_error" in keys
    assert not any("/l1/" in k for k in keys)  # flat digits tree: one level
    m = res["metrics"]
    assert m["final_test/sev/l0/top1_error"] == pytest.approx(1 - m["final_test/top-1-acc"])
    # flat tree: every mistake has distance 1
    assert m["final_test/sev/l0/top1_mistake_dist"] in (0.0, 1.0)

    a = runner.build_algorithm(args_for("fixmatch", tmp_path, "two", semantic_tree=two_level), tb=False)
    a.ema = EMA(a.model, a.ema_m)
    a.ema.register()
    out = a.evaluate("eval")
    for lev in (0, 1):
        for k in (1, 5):
            for kind in ("error", "mistake_dist", "dist"):
                v = out[f"eval/sev/l{lev}/top{k}_{kind}"]
                assert isinstance(v, float) and v == v
    assert 1.0 <= out["eval/sev/l0/top1_mistake_dist"] <= 2.0 or out["eval/sev/l0/top1_error"] == 0.0
    assert out["eval/sev/l1/top1_error"] <= out["eval/sev/l0/top1_error"]


@pytest.mark.parametrize("over,msg", [
    (dict(semantic_loss="focal"), "semantic_loss: expected one of"),
    (dict(semantic_loss="sal", sal_beta=1.5), "sal_beta: expected a number in"),
    (dict(semantic_loss="hace", hace_d=0.0), "hace_d: expected a number in"),
    (dict(semantic_loss="pmi", pmi_weight=0.0), "pmi_weight: expected a number"),
    (dict(semantic_tree="imagenet"), "semantic_tree: expected"),
    (dict(semantic_tree="/no/such/tree.yaml"), "semantic_tree: no tree file"),
    (dict(semantic_loss="hace", semantic_source="glove"), "semantic_source: 'glove'"),
    (dict(semantic_source="word2vec"), "semantic_source: expected one of"),
])
def test_bad_semantic_settings(over, msg, tmp_path):
    with pytest.raises(ValueError, match=msg):
        runner.build_algorithm(args_for("fixmatch", tmp_path, "bad", **over), tb=False)


def test_hace_refused_with_mixup_bases(tmp_path):
    with pytest.raises(ValueError, match="'hace' is not available with mixmatch.*use semantic_loss 'sal'"):
        runner.build_algorithm(args_for("mixmatch", tmp_path, "bad", semantic_loss="hace"), tb=False)


def test_tree_must_match_the_classes(tmp_path):
    path = tmp_path / "wrong.json"
    path.write_text(json.dumps({"root": ["a", "b"]}))
    with pytest.raises(ValueError, match="semantic_tree"):
        runner.build_algorithm(args_for("fixmatch", tmp_path, "bad", semantic_tree=str(path)), tb=False)
