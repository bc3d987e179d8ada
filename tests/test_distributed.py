"""Several training processes (torchrun, gloo on the CPU): one pool in every process, resume in one."""
import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

pytest.importorskip("semilearn")

from hdl.algorithms.usb import distributed  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CONFIG = os.path.join(ROOT, "configs", "digits", "hdl_fixmatch.yaml")
RUN = ["--num_train_iter", "40", "--num_eval_iter", "20", "--num_log_iter", "10", "--batch_size", "8",
       "--uratio", "2", "--hdl_warmup_iter", "20", "--hdl_refresh_every", "20", "--device", "cpu", "--no-progress"]
TRAIN = "import sys; from hdl.commands import hdl_train; sys.exit(hdl_train())"


def _env():
    env = {k: v for k, v in os.environ.items() if k not in distributed.ENV_KEYS}
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_the_environment_decides_the_process_layout():
    assert distributed.from_env({}) == distributed.ProcessGroup()
    assert distributed.from_env({"WORLD_SIZE": "1"}).world_size == 1
    env = {"WORLD_SIZE": "4", "RANK": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1"}
    g = distributed.from_env(env)
    assert (g.rank, g.world_size, g.local_rank, g.distributed, g.is_main) == (2, 4, 0, True, False)
    assert distributed.process_device(g, torch.device("cuda")) == torch.device("cuda", 0)
    assert distributed.process_device(g, torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(ValueError, match=r"MASTER_PORT is not set; launch with torchrun"):
        distributed.from_env({k: v for k, v in env.items() if k != "MASTER_PORT"})
    with pytest.raises(ValueError, match=r"RANK: expected 0 <= RANK < WORLD_SIZE=4, got 4"):
        distributed.from_env({**env, "RANK": "4"})
    with pytest.raises(ValueError, match=r"WORLD_SIZE: expected an integer, got 'two'"):
        distributed.from_env({**env, "WORLD_SIZE": "two"})
    assert distributed.shard(7, 1, 3).tolist() == [1, 4]
    # one process: the collectives return their input
    i, f = torch.tensor([3, 1]), torch.ones(2, 4)
    assert distributed.gather_rows(i, f)[0] is i and distributed.all_gather_object("x") == ["x"]


def test_digests_tell_pools_apart():
    a = [torch.tensor([0, 1, -1]), torch.tensor([1.0, 0.5, 0.0])]
    assert distributed.pool_digest(a) == distributed.pool_digest([t.clone() for t in a])
    assert distributed.pool_digest(a) != distributed.pool_digest([torch.tensor([0, 1, 2]), a[1]])
    assert distributed.pool_digest(a) != distributed.pool_digest([a[0].int(), a[1]])  # dtype counts


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python",
           sys.executable, "-c", TRAIN, "--config", CONFIG, *RUN, "--save_dir", str(d), "--save_name", "run"]
    p = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    return d / "run", p


@pytest.mark.slow
def test_two_processes_hold_the_pool_one_process_computes(two_process_run, tmp_path):
    from hdl.algorithms.run.runner import load_run

    run_dir, p = two_process_run
    # rank 0 alone reports and writes the run's files
    assert p.stdout.count('"iterations": 40') == 1
    results = json.loads((run_dir / "results.json").read_text())
    assert results["processes"] == 2 and results["iterations"] == 40
    records = [json.loads(line) for line in (run_dir / "hdl_refresh.jsonl").read_text().splitlines()]
    assert [r["it"] for r in records] == [20, 40]
    for r in records:  # each process's own pool digest, gathered at the refresh: all equal
        assert len(r["pool_sha256"]) == 2 and r["pool_sha256"][0] == r["pool_sha256"][1]
    assert records[0]["pool_sha256"][0] != records[1]["pool_sha256"][0]

    # one process, from the gathered embeddings the checkpoint holds, labels the same pool
    alg = load_run(str(run_dir), "latest", device="cpu")
    pool = alg.pool
    saved = distributed.pool_digest([pool.labels, pool.agreement, pool.level])
    assert saved == records[-1]["pool_sha256"][0]
    assert int(alg.bank.filled.sum()) == len(alg.dataset_dict["embed"])  # every share reached the bank
    want = [t.clone() for t in (pool.labels, pool.agreement, pool.level)]
    pool.clear()
    alg.hdl = dataclasses.replace(alg.hdl, embed="bank")  # label the saved bank as it is
    # the blend's EMA head reads the embeddings' norms, which the bank does not keep: one process
    # re-embeds the training set for them (the labeling itself uses the saved, gathered rows)
    assert alg.hdl.blend_model == "ema"
    from hdl.algorithms.usb.embedding import embed_training_set
    index, feats = embed_training_set(alg)
    alg._ema_norms = torch.zeros(alg.bank.num_samples)
    alg._ema_norms[torch.as_tensor(index)] = feats.norm(dim=1)
    alg.save_dir = str(tmp_path)
    # the refresh at 40 blended under the loss prior in force since the refresh at 20 (hdl_loss_prior
    # auto: adjusted for FixMatch), the log class shares of that pool (+1 each; hdl_min_agreement 0:
    # every pool label counts); the loaded run holds the next one, the prior of the pool at 40
    assert alg.hdl.loss_prior == "adjusted" and alg.hdl.min_agreement == 0
    counts = torch.tensor([records[-1][f"hdl/pool_class_{c}"] for c in range(alg.num_classes)]) + 1
    assert torch.allclose(alg._loss_log_prior, (counts / counts.sum()).log())
    counts = torch.tensor([records[0][f"hdl/pool_class_{c}"] for c in range(alg.num_classes)]) + 1
    alg._loss_log_prior = (counts / counts.sum()).log().float()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the training processes
    try:
        alg.refresh()
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(pool.labels, want[0]) and torch.equal(pool.level, want[2])
    assert torch.allclose(pool.agreement, want[1], atol=1e-5)  # norms of another batching: last bits
    assert pool.size == records[-1]["hdl/pool_size"]


@pytest.mark.slow
def test_a_two_process_checkpoint_resumes_in_one_process(two_process_run, tmp_path):
    import shutil

    run_dir = tmp_path / "run"  # a copy: the two-process run stays the reference of the other tests
    shutil.copytree(two_process_run[0], run_dir)
    p = subprocess.run([sys.executable, "-c", TRAIN, "--config", CONFIG, *RUN, "--num_train_iter", "60",
                        "--save_dir", str(run_dir.parent), "--save_name", "run", "--resume", "True"],
                       capture_output=True, text=True, cwd=ROOT, env=_env(), timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    results = json.loads((run_dir / "results.json").read_text())
    assert results["processes"] == 1 and results["iterations"] == 60
    log = (run_dir / "log.txt").read_text()
    assert "resumed from" in log and "at iteration 40" in log
    records = [json.loads(line) for line in (run_dir / "hdl_refresh.jsonl").read_text().splitlines()]
    assert [r["it"] for r in records] == [20, 40, 60] and "pool_sha256" not in records[-1]


@pytest.mark.slow
def test_a_two_process_run_stopped_and_resumed_with_two_processes_ends_bit_identical(two_process_run, tmp_path):
    from tests.test_exact_resume import assert_bit_identical

    from hdl.algorithms.usb.checkpoint_io import load_checkpoint

    def torchrun(*extra, env=None):
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "--no-python",
               sys.executable, "-c", TRAIN, "--config", CONFIG, *RUN, "--save_dir", str(tmp_path),
               "--save_name", "run", *extra]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env={**_env(), **(env or {})},
                              timeout=600)

    # both processes are killed inside their 30th step; the last checkpoint is iteration 20's
    assert torchrun(env={"HDL_FAULT": "step:30"}).returncode != 0
    assert load_checkpoint(str(tmp_path / "run" / "latest_model.pth"))["it"] == 20
    p = torchrun("--resume", "True")
    assert p.returncode == 0, p.stderr[-3000:]
    ref_dir, _ = two_process_run
    a = load_checkpoint(str(ref_dir / "latest_model.pth"))
    b = load_checkpoint(str(tmp_path / "run" / "latest_model.pth"))
    assert a["world_size"] == b["world_size"] == 2
    ranks_a, ranks_b = a.pop("rng_ranks"), b.pop("rng_ranks")
    assert len(ranks_a) == len(ranks_b) == 2
    for ra, rb in zip(ranks_a, ranks_b):
        assert_bit_identical(ra, rb)
    for ck in (a, b):  # where the runs live
        ck["settings"].pop("save_dir")
    assert assert_bit_identical(a, b) > 50
