"""Exact resume in-process: a run stopped after N iterations and resumed from its checkpoint ends
bit for bit where the uninterrupted run ends (weights, EMA, optimizer, scheduler, hook state, bank,
pool, random states, results, per-step losses), for the four bases with and without HDL and in
both ``hdl_use`` modes, inside an epoch and at an epoch boundary, and for USB's imbalance
algorithms (abc, daso, debiaspl) and the PMI semantic loss."""
import json
import os

import pytest
import torch

pytest.importorskip("semilearn")
pytestmark = pytest.mark.slow  # every test trains, stops and resumes runs

import hdl.algorithms  # noqa: E402,F401
from hdl.algorithms.run import runner  # noqa: E402
from tests.test_usb_adapter import StopAt, flatten  # noqa: E402  (a crash at an iteration's start; state as a flat dict)
from hdl.algorithms.run.config import load_yaml, resolve_config  # noqa: E402
from semilearn.algorithms import name2alg  # noqa: E402
from semilearn.core.hooks import Hook  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "digits")
BASES = ("fixmatch", "freematch", "mixmatch", "remixmatch")
ITERS = 12


def make_args(base, tmp_path, name, **over):
    cfg = load_yaml(os.path.join(CONFIGS, f"{base}.yaml"))
    # 3 epochs of 4 iterations; a checkpoint every 2 iterations; HDL refreshes at 4, 8 and 12
    cfg.update(dict(num_train_iter=ITERS, epoch=3, num_eval_iter=2, num_log_iter=1000, batch_size=8, uratio=1,
                    net="cnn_tiny", eval_batch_size=512, save_dir=str(tmp_path), save_name=name, device="cpu",
                    num_val=5, seed=11))
    cfg.update(over)
    return resolve_config(cfg, list(name2alg.keys()))


class LossRecorder(Hook):
    def __init__(self):
        self.losses = {}

    def after_train_step(self, algorithm):
        self.losses[algorithm.it] = {k: v for k, v in algorithm.log_dict.items()
                                     if k.startswith(("train/", "hdl/")) and "time" not in k and "_sec" not in k}


SKIP = ("wall_seconds", "settings.resume", "settings.load_path", "settings.save_name", "settings.run_dir")


def assert_bit_identical(a, b):
    fa, fb = flatten(a), flatten(b)
    assert set(fa) == set(fb), set(fa) ^ set(fb)
    compared = 0
    for k in sorted(fa):
        if k in SKIP:
            continue
        va, vb = fa[k], fb[k]
        if torch.is_tensor(va):
            assert va.dtype == vb.dtype and torch.equal(va, vb), k
        else:
            assert canon(va) == canon(vb), (k, va, vb)
        compared += 1
    return compared


def canon(x):
    """Exact text of a dict of floats (NaN equals NaN; the shortest repr of a float is exact)."""
    return json.dumps(x, sort_keys=True, default=float)


def run(args, stop=None):
    torch.set_num_threads(1)
    alg = runner.build_algorithm(args, tb=False)
    rec = LossRecorder()
    alg.register_hook(rec, "LossRecorder", "LOWEST")
    if stop is not None:
        alg.register_hook(StopAt(stop), "StopAt", "HIGHEST")
        with pytest.raises(KeyboardInterrupt):
            alg.train()
    else:
        alg.train()
    return alg, rec.losses


def final_checkpoint(alg):
    return torch.load(os.path.join(alg.save_dir, alg.save_name, "latest_model.pth"), map_location="cpu",
                      weights_only=False)


def stop_and_resume(args_fn, stop):
    """Reference run, run stopped at ``stop``, resumed run; returns (reference, resumed) algorithms,
    their final checkpoints and per-step losses."""
    ref, ref_losses = run(args_fn("ref"))
    _, _ = run(args_fn("cut"), stop=stop)
    args = args_fn("cut", resume=True)
    alg = runner.build_algorithm(args, tb=False)
    alg.load_model(os.path.join(args.save_dir, args.save_name, "latest_model.pth"))
    resumed_at = alg.it
    alg.truncate_run_records(alg.it)
    rec = LossRecorder()
    alg.register_hook(rec, "LossRecorder", "LOWEST")
    torch.set_num_threads(1)
    alg.train()
    return ref, alg, ref_losses, rec.losses, resumed_at


CASES = [(b, None) for b in BASES] + [(f"hdl_{b}", "target") for b in BASES] + [(f"hdl_{b}", "pool") for b in BASES]


@pytest.mark.parametrize("algorithm,use", CASES, ids=[f"{a}-{u or 'base'}" for a, u in CASES])
def test_stop_and_resume_is_bit_identical(algorithm, use, tmp_path):
    base = algorithm.replace("hdl_", "")
    hdl = dict(hdl_warmup_iter=4, hdl_refresh_every=4, hdl_use=use, hdl_embed="ema_pass") if use else {}
    stop = 7  # resumes from the checkpoint of iteration 6 (2 batches into epoch 1), before the refresh at 8

    def args_fn(name, **over):
        return make_args(base, tmp_path, name, algorithm=algorithm, **hdl, **over)

    ref, alg, ref_losses, losses, resumed_at = stop_and_resume(args_fn, stop)
    assert resumed_at == stop - 1 and 0 < resumed_at % 4  # inside an epoch: batches were skipped
    assert alg.it == ref.it == ITERS
    # every step after the resume computed the same losses as the uninterrupted run
    assert sorted(losses) == list(range(resumed_at, ITERS))
    for it in losses:
        assert canon(losses[it]) == canon(ref_losses[it]), it
    n = assert_bit_identical(final_checkpoint(ref), final_checkpoint(alg))
    assert n > 20
    assert canon(alg.results_dict) == canon(ref.results_dict)
    if use:
        assert [r["it"] for r in alg.refresh_log] == [4, 8, 12]
        strip = [{k: v for k, v in r.items() if k != "hdl/refresh_sec"} for r in alg.refresh_log]
        assert canon(strip) == canon([{k: v for k, v in r.items() if k != "hdl/refresh_sec"} for r in ref.refresh_log])
        # the final checkpoint's pool (compared above) holds the labels of the last refresh
        assert (final_checkpoint(alg)["hdl"]["pool"]["labels"] >= 0).sum() > 100


@pytest.mark.parametrize("algorithm", ["fixmatch", "hdl_fixmatch"])
def test_resume_at_an_epoch_boundary(algorithm, tmp_path):
    hdl = dict(hdl_warmup_iter=4, hdl_refresh_every=4, hdl_embed="bank", hdl_blend_model="train") \
        if algorithm.startswith("hdl_") else {}

    def args_fn(name, **over):
        return make_args("fixmatch", tmp_path, name, algorithm=algorithm, **hdl, **over)

    ref, alg, ref_losses, losses, resumed_at = stop_and_resume(args_fn, stop=5)
    assert resumed_at == 4  # the checkpoint closed epoch 0: the resume starts epoch 1 from its first batch
    assert all(canon(losses[it]) == canon(ref_losses[it]) for it in losses) and len(losses) == ITERS - 4
    assert_bit_identical(final_checkpoint(ref), final_checkpoint(alg))
    assert canon(alg.results_dict) == canon(ref.results_dict)


def test_resume_without_the_data_position_restarts_the_epoch_order(tmp_path):
    """The control: drop what this issue added (random states, data position) and the resumed run
    is no longer the uninterrupted one (this is how checkpoints behaved before)."""
    def args_fn(name, **over):
        return make_args("fixmatch", tmp_path, name, **over)

    ref, _ = run(args_fn("ref"))
    run(args_fn("cut"), stop=7)
    path = os.path.join(str(tmp_path), "cut", "latest_model.pth")
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    del ckpt["rng"], ckpt["data_position"]
    torch.save(ckpt, path)
    os.remove(path + ".sha256")  # an older checkpoint: no checksum either
    alg = runner.build_algorithm(args_fn("cut", resume=True), tb=False)
    alg.load_model(path)
    alg.train()
    a, b = final_checkpoint(ref)["model"], final_checkpoint(alg)["model"]
    assert any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("algorithm,over", [
    ("fixmatch", dict(imb_algorithm="abc")),
    ("fixmatch", dict(imb_algorithm="daso")),  # DASO keeps its queue and pseudo-label lists outside the hooks
    ("fixmatch", dict(imb_algorithm="debiaspl")),
    ("hdl_fixmatch", dict(semantic_loss="pmi", hdl_warmup_iter=4, hdl_refresh_every=4, hdl_embed="bank",
                          hdl_blend_model="train")),
    # the loss prior is rebuilt from the loaded pool: the resumed steps add the same shift
    ("hdl_fixmatch", dict(hdl_warmup_iter=4, hdl_refresh_every=4, hdl_embed="ema_pass", hdl_loss_prior="adjusted",
                          hdl_blend_prior="none")),
    ("fixmatch", dict(la_prior="model", la_warmup_iter=4, la_refresh_every=4)),
    # the labeler's prior is not derivable from the pool: the checkpoint carries it
    ("hdl_fixmatch", dict(hdl_warmup_iter=4, hdl_refresh_every=4, hdl_embed="ema_pass", hdl_loss_prior="labeler")),
], ids=["abc", "daso", "debiaspl", "hdl-pmi", "hdl-loss-prior", "la-prior", "hdl-labeler-prior"])
def test_stop_and_resume_imbalance_and_semantic_algorithms(algorithm, over, tmp_path):
    def args_fn(name, **o):
        return make_args("fixmatch", tmp_path, name, algorithm=algorithm, **over, **o)

    ref, alg, ref_losses, losses, resumed_at = stop_and_resume(args_fn, stop=7)
    assert resumed_at == 6 and sorted(losses) == list(range(6, ITERS))
    assert all(canon(losses[it]) == canon(ref_losses[it]) for it in losses)
    assert_bit_identical(final_checkpoint(ref), final_checkpoint(alg))
    assert canon(alg.results_dict) == canon(ref.results_dict)


def test_load_run_does_not_warn_about_a_continuation(tmp_path, caplog):
    """A run loaded to be read (load_run: evaluation, the bench's per-class plot) with another thread
    count than it was saved with logs no 'resume: ... thread(s)' warning; resuming training does."""
    import logging

    from tests.test_hdl_wrapper import make_args as wrapper_args

    args = wrapper_args("fixmatch", tmp_path, "run", algorithm="fixmatch", num_train_iter=2, num_eval_iter=2)
    runner.train(args, progress=False)
    run_dir = os.path.join(str(tmp_path), "run")
    threads = torch.get_num_threads()
    torch.set_num_threads(threads + 1)
    try:
        with caplog.at_level(logging.WARNING):
            runner.load_run(run_dir, "latest", "cpu")
        assert not [r for r in caplog.records if "thread(s)" in r.getMessage()]
        args = wrapper_args("fixmatch", tmp_path, "run", algorithm="fixmatch", num_train_iter=4, num_eval_iter=2,
                         resume=True, load_path=os.path.join(run_dir, "latest_model.pth"))
        with caplog.at_level(logging.WARNING):
            runner.train(args, progress=False)
        assert [r for r in caplog.records if "written with 1 thread(s)" in r.getMessage() or
                f"written with {threads} thread(s)" in r.getMessage()]
    finally:
        torch.set_num_threads(threads)
