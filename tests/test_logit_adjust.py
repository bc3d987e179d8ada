"""la_prior model: a plain base's unlabeled losses adjusted by the EMA model's predicted unlabeled
class shares (the ablation of HDL's loss adjustment without HDL's labels)."""
import os

import pytest
import torch

pytest.importorskip("semilearn")

import hdl.algorithms  # noqa: E402,F401  (registers the hdl_* algorithms)
from hdl.algorithms.run import runner  # noqa: E402
from hdl.algorithms.run.config import load_yaml, resolve_config  # noqa: E402
from semilearn.algorithms import name2alg  # noqa: E402

from tests.test_hdl_wrapper import LossRecorder, make_args, run_losses  # noqa: E402

BASES = ("fixmatch", "freematch", "mixmatch", "remixmatch")
CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "digits")


def log_shares(labels, num_classes):
    counts = torch.bincount(labels, minlength=num_classes).float() + 1
    return (counts / counts.sum()).log()


@pytest.mark.slow
@pytest.mark.parametrize("base", BASES)
def test_la_shifts_every_unlabeled_loss_after_the_first_estimate(base, tmp_path):
    """Before the first estimate the losses are the base's exactly; every later consistency-loss
    call sees the log shares of the EMA model's argmax over the unlabeled set, counted here from a
    separate forward pass of the EMA model over the unlabeled images."""
    over = dict(algorithm=base, num_train_iter=8, num_eval_iter=1000)
    ref, _ = run_losses(make_args(base, tmp_path, "ref", **over))
    args = make_args(base, tmp_path, "la", la_prior="model", la_warmup_iter=4, la_refresh_every=4, **over)
    a = runner.build_algorithm(args, tb=False)
    inner = a.consistency_loss.inner
    seen, estimates = [], {}

    class Spy(torch.nn.Module):
        def forward(self, logits, targets, name="ce", mask=None):
            seen.append((a.it, None if a.la_log_prior is None else a.la_log_prior.clone()))
            return inner(logits, targets, name, mask)

    a.consistency_loss.inner = Spy()
    estimate = a.estimate_prior

    def spy_estimate():
        out = estimate()
        # the EMA model's predictions on the unlabeled images, computed another way: its full
        # forward pass (backbone and head) on the evaluation view of each unlabeled sample
        data = a.dataset_dict["embed"]
        pos = {int(g): i for i, g in enumerate(a.split_info.embed_idx)}
        x = torch.stack([torch.as_tensor(data[pos[int(g)]]["x_lb"]) for g in a.split_info.ulb_idx])
        a.ema_model.eval()
        with torch.no_grad():
            pred = a.ema_model(x)["logits"].argmax(dim=1)
        a.ema_model.train()
        estimates[a.it + 1] = (a.la_log_prior.clone(), log_shares(pred, a.num_classes))
        return out

    a.estimate_prior = spy_estimate
    rec = LossRecorder()
    a.register_hook(rec, "LossRecorder", "LOWEST")
    torch.set_num_threads(1)
    a.train()
    assert rec.losses[:4] == ref[:4]
    assert rec.losses[4:] != ref[4:]
    assert sorted(estimates) == [4, 8]
    for it, (got, want) in estimates.items():
        assert torch.allclose(got, want, atol=1e-6), it
    early = [s for it, s in seen if it < 4]
    late = [s for it, s in seen if it >= 4]
    assert early and all(s is None for s in early)
    assert late and all(s is not None for s in late)
    first = estimates[4][0]
    assert all(torch.equal(s, first) for it, s in seen if 4 <= it < 8)


def test_la_default_none_is_the_base_and_refused_for_hdl(tmp_path):
    over = dict(algorithm="fixmatch", num_train_iter=4, num_eval_iter=1000)
    ref, _ = run_losses(make_args("fixmatch", tmp_path, "ref", **over))
    none, a = run_losses(make_args("fixmatch", tmp_path, "none", la_prior="none", **over))
    assert ref == none and a.la_log_prior is None
    cfg = load_yaml(os.path.join(CONFIGS, "hdl_fixmatch.yaml"))
    cfg.update(la_prior="model")
    with pytest.raises(ValueError, match=r"la_prior: 'model' is for the base algorithms; hdl_fixmatch"):
        resolve_config(cfg, list(name2alg.keys()))


def test_debiaspl_keeps_its_own_adjustment_alone(tmp_path):
    """USB's DebiasPL adds its running prior inside its own consistency loss: HDL's auto resolves to
    no loss adjustment (and balanced blend labels) there, and an explicit adjustment is refused."""
    from hdl.algorithms.usb.logit_adjust import PriorAdjustedLoss

    a = runner.build_algorithm(make_args("fixmatch", tmp_path, "hd", algorithm="hdl_fixmatch", imb_algorithm="debiaspl"),
                               tb=False)
    assert (a.hdl.loss_prior, a.hdl.blend_prior) == ("none", "balanced")
    assert type(a.consistency_loss).__name__ == "DebiasPLConsistencyLoss"
    b = runner.build_algorithm(make_args("fixmatch", tmp_path, "ha", algorithm="hdl_fixmatch", imb_algorithm="abc"),
                               tb=False)
    assert b.hdl.loss_prior == "adjusted" and isinstance(b.consistency_loss, PriorAdjustedLoss)
    for algorithm, key, value in (("fixmatch", "la_prior", "model"), ("hdl_fixmatch", "hdl_loss_prior", "adjusted")):
        with pytest.raises(ValueError, match=rf"^{key}: '{value}' with imb_algorithm 'debiaspl', whose consistency "
                                             r"loss adds its own running class prior"):
            make_args("fixmatch", tmp_path, "x", algorithm=algorithm, imb_algorithm="debiaspl", **{key: value})
    # past the config check (a namespace built by hand), the combined class refuses to drop the adjustment
    args = make_args("fixmatch", tmp_path, "y", algorithm="fixmatch", la_prior="model")
    args.imb_algorithm, args.debiaspl_tau, args.debiaspl_ema_p = "debiaspl", 0.4, 0.999
    with pytest.raises(ValueError, match="la_prior: imb_algorithm 'debiaspl' replaces the consistency loss"):
        runner.build_algorithm(args, tb=False)


@pytest.mark.slow
def test_hdl_loss_prior_labeler_adjusts_by_the_labelers_anchor(tmp_path):
    """hdl_loss_prior labeler with long-tailed labels: the prior in force after a refresh is the
    labeler's anchor estimate, i.e. exactly one of the three anchors computed here from the label
    counts (the label shares, uniform, the label shares reversed), logged per class."""
    args = make_args("fixmatch", tmp_path, "lab", algorithm="hdl_fixmatch", num_train_iter=4, num_eval_iter=1000,
                     hdl_warmup_iter=4, hdl_refresh_every=4, hdl_loss_prior="labeler", num_labels=20,
                     lb_imb_ratio=4, ulb_num_labels=100, ulb_imb_ratio=4, include_lb_to_ulb=False)
    a = runner.build_algorithm(args, tb=False)
    assert (a.hdl.loss_prior, a.hdl.blend_prior) == ("labeler", "none")
    torch.set_num_threads(1)
    a.train()
    prior = a._loss_log_prior.exp().cpu()
    counts = torch.bincount(torch.as_tensor(a.split_info.train_y)[a.split_info.lb_idx], minlength=10).double()
    g = counts / counts.sum()
    order = torch.argsort(g, stable=True)
    rev = torch.zeros_like(g)
    rev[order] = torch.sort(g, descending=True).values
    anchors = [g, torch.full((10,), 0.1, dtype=torch.float64), rev]
    assert any(torch.allclose(prior.double(), x, atol=1e-6) for x in anchors), prior
    logged = torch.tensor([a.refresh_log[-1][f"hdl/labeler_prior_{c}"] for c in range(10)])
    assert torch.allclose(logged, prior, atol=1e-6)
