"""A newcomer's path: unique run names, no silent overwrite, Ctrl-C, logs that agree, quiet commands."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

pytest.importorskip("semilearn")

from hdl.algorithms.run.config import default_run_name  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
CONFIG = os.path.join(ROOT, "configs", "digits", "hdl_fixmatch.yaml")
TINY = ["--num_train_iter", "10", "--num_eval_iter", "5", "--num_log_iter", "5", "--batch_size", "8",
        "--uratio", "1", "--net", "cnn_tiny", "--hdl_warmup_iter", "5", "--hdl_refresh_every", "5",
        "--device", "cpu", "--no-progress"]


def command(name, *args, **kw):
    """Run a console command through the project's entry module, as the installed script does."""
    code = f"import sys; from hdl.commands import {name}; sys.exit({name}())"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT, env=env,
                          **kw)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("eco")
    p = command("hdl_train", "--config", CONFIG, *TINY, "--save_dir", str(d), "--save_name", "run")
    assert p.returncode == 0, p.stderr
    return d / "run", p


def test_default_run_names_tell_runs_apart():
    base = dict(algorithm="hdl_fixmatch", dataset="npz", data_dir="/data/cats.npz", num_labels=40, seed=0,
                lb_imb_ratio=1, ulb_imb_ratio=1, imb_algorithm=None)
    names = {default_run_name(base),
             default_run_name({**base, "data_dir": "/data/dogs.npz"}),
             default_run_name({**base, "lb_imb_ratio": 10}),
             default_run_name({**base, "ulb_imb_ratio": -100}),
             default_run_name({**base, "imb_algorithm": "abc"}),
             default_run_name({**base, "seed": 1})}
    assert len(names) == 6
    assert default_run_name({**base, "imb_algorithm": "abc", "ulb_imb_ratio": -100, "lb_imb_ratio": 10}) == \
        "hdl_fixmatch_abc_npz_cats_40_lb10_ulbm100_0"
    assert default_run_name({**base, "dataset": "digits", "data_dir": None}) == "hdl_fixmatch_digits_40_0"


@pytest.mark.slow
def test_an_existing_run_is_refused_without_overwrite(run):
    run_dir, _ = run
    p = command("hdl_train", "--config", CONFIG, *TINY, "--save_dir", str(run_dir.parent), "--save_name", "run")
    assert p.returncode == 2
    assert p.stderr.strip().splitlines()[-1] == (f"hdl-train: error: save_name: {run_dir} already holds a run; pass "
                                                 f"--overwrite True to replace it or --resume True to continue it")


@pytest.mark.slow
def test_commands_print_no_warning_lines(run, tmp_path):
    run_dir, train = run
    emb, lab = tmp_path / "e.npy", tmp_path / "l.npy"
    x = np.random.default_rng(0).normal(size=(60, 8)).astype(np.float32)
    y = np.full(60, -1)
    y[:6] = np.arange(6) % 3
    np.save(emb, x)
    np.save(lab, y)
    relabel = command("hdl_relabel", "--embeddings", str(emb), "--labels", str(lab), "--out", str(tmp_path / "o.csv"))
    relabel_run = command("hdl_relabel_run", "--run", str(run_dir), "--checkpoint", "latest")
    for p in (train, relabel, relabel_run):
        assert p.returncode == 0, p.stderr
        lines = (p.stdout + p.stderr).splitlines()
        assert not [ln for ln in lines if "Warning" in ln], lines
    loud = command("hdl_relabel_run", "--run", str(run_dir), "--checkpoint", "latest", "-v")
    assert loud.returncode == 0 and "Warning" in loud.stdout + loud.stderr  # -v shows them


@pytest.mark.slow
def test_results_tensorboard_and_refresh_log_agree(run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir, _ = run
    res = json.loads((run_dir / "results.json").read_text())
    refresh_its = [json.loads(ln)["it"] for ln in (run_dir / "hdl_refresh.jsonl").read_text().splitlines()]
    assert refresh_its == [5, 10]
    acc = EventAccumulator(str(run_dir / "tensorboard"))
    acc.Reload()
    for tag in acc.Tags()["scalars"]:
        steps = [e.step for e in acc.Scalars(tag)]
        assert len(steps) == len(set(steps)), f"{tag} written twice at a step: {steps}"
    assert [e.step for e in acc.Scalars("hdl/pool_size")] == refresh_its  # completed iterations, 1-based
    assert [e.step for e in acc.Scalars("eval/top-1-acc")] == [5, 10]
    assert res["best_it"] in (5, 10) and res["iterations"] == 10
    # per-class test accuracy at the best checkpoint: hdl-eval's predictions, class by class
    p = command("hdl_eval", "--run", str(run_dir), "--split", "test")
    assert p.returncode == 0, p.stderr
    rows = np.loadtxt(run_dir / "predictions_test_best.csv", delimiter=",", skiprows=1)
    truth, pred = rows[:, 1].astype(int), rows[:, 2].astype(int)
    want = [float((pred[truth == c] == c).mean()) for c in range(10)]
    assert res["test_per_class_acc_at_best_val"] == pytest.approx(want, abs=1e-6)
    assert res["test_worst_class_acc_at_best_val"] == pytest.approx(min(want))


@pytest.mark.slow
def test_ctrl_c_stops_after_a_checkpoint_and_says_how_to_resume(tmp_path):
    args = ["--config", CONFIG, *TINY, "--num_train_iter", "100000", "--num_eval_iter", "100000",
            "--num_log_iter", "2", "--save_dir", str(tmp_path), "--save_name", "stop"]
    code = "import sys; from hdl.commands import hdl_train; sys.exit(hdl_train())"
    proc = subprocess.Popen([sys.executable, "-c", code, *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    log = tmp_path / "stop" / "log.txt"
    deadline = time.time() + 120
    while time.time() < deadline and not (log.exists() and "iteration" in log.read_text()):
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    last = err.strip().splitlines()[-1]
    m = re.fullmatch(r"hdl-train: interrupted at iteration (\d+); resume with: hdl-train (.*) --resume True", last)
    assert m, last
    assert "Traceback" not in err
    it = int(m.group(1))
    ckpt = torch.load(tmp_path / "stop" / "latest_model.pth", map_location="cpu", weights_only=False)
    assert ckpt["it"] == it >= 2
    # the printed command resumes the run (here shortened to 3 more iterations)
    resume = m.group(2).split() + ["--resume", "True", "--num_train_iter", str(it + 3)]
    p = command("hdl_train", *resume)
    assert p.returncode == 0, p.stderr
    assert json.loads((tmp_path / "stop" / "results.json").read_text())["iterations"] == it + 3


@pytest.mark.slow
def test_the_docs_own_data_example(tmp_path):
    """The own-data guide's path (docs/own_data.md): its snippet writes the .npz, the shipped config
    trains on it, then summary.py and hdl-eval read the run (shortened here to a few iterations)."""
    text = open(os.path.join(ROOT, "docs", "own_data.md")).read()
    block = re.search(r"<!-- own-data-example:start -->\n```python\n(.*?)```\n<!-- own-data-example:end -->", text, re.S)
    assert block, "docs/own_data.md has no own-data example block"
    subprocess.run([sys.executable, "-c", block.group(1)], cwd=tmp_path, check=True)
    # the commands between the block and the next heading
    cmds = re.findall(r"^\.venv/bin/(hdl-train|hdl-eval|python) (.*)$", text.split("<!-- own-data-example:end -->")[1]
                      .split("\n#")[0], re.M)
    assert [c[0] for c in cmds] == ["hdl-train", "python", "hdl-eval"]
    train = cmds[0][1].split() + ["--num_train_iter", "4", "--num_eval_iter", "2", "--batch_size", "8", "--uratio",
                                  "1", "--net", "cnn_tiny", "--hdl_warmup_iter", "2", "--hdl_refresh_every", "2",
                                  "--save_dir", str(tmp_path / "saved_models" / "own_data"), "--no-progress"]
    config = train[train.index("--config") + 1]
    train[train.index("--config") + 1] = os.path.join(ROOT, config)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    code = "import sys; from hdl.commands import {0}; sys.exit({0}())"
    p = subprocess.run([sys.executable, "-c", code.format("hdl_train"), *train], cwd=tmp_path, capture_output=True,
                       text=True, env=env)
    assert p.returncode == 0, p.stderr
    run_dir = cmds[1][1].split()[-1]
    assert cmds[2][1].split()[1] == run_dir
    assert (tmp_path / run_dir / "results.json").exists()  # the guide names the run directory right
    p = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "summary.py"), run_dir], cwd=tmp_path,
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    res = json.loads((tmp_path / run_dir / "results.json").read_text())
    assert f"{100 * res['test_acc_at_best_val']:.1f}%" in p.stdout and "40 labeled images" in p.stdout
    p = subprocess.run([sys.executable, "-c", code.format("hdl_eval"), *cmds[2][1].split()], cwd=tmp_path,
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / run_dir / "predictions_test_best.csv").exists()


def test_readme_quickstart_figures_are_the_recorded_ones():
    import importlib.util

    spec = importlib.util.spec_from_file_location("record_quickstart", os.path.join(ROOT, "scripts",
                                                                                     "record_quickstart.py"))
    rq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rq)
    out = os.path.join(ROOT, "results", "quickstart")
    summary = json.load(open(os.path.join(out, "summary.json")))
    results = json.load(open(os.path.join(out, "results.json")))
    last = [json.loads(ln) for ln in open(os.path.join(out, "hdl_refresh.jsonl")) if ln.strip()][-1]
    # the summary is the run's own figures
    assert summary["test_acc_at_best_val"] == results["test_acc_at_best_val"]
    assert summary["test_acc_final"] == results["test_acc_final"]
    assert summary["hdl_pool_acc"] == last["hdl/pool_acc"] and summary["iterations"] == results["iterations"]
    text = open(os.path.join(ROOT, "README.md")).read()
    block = text.split(rq.START, 1)[1].split(rq.END, 1)[0].strip()
    assert block == rq.paragraph(summary), "README quick-start figures differ: python scripts/record_quickstart.py"
