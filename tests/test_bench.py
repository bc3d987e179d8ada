"""hdl-bench: grid validation, a tiny resumable grid on digits, the report files, and the GPU-scale
SVHN / STL-10 / CIFAR-10-LT configs on generated stand-ins of the published formats."""
import csv
import json
import os

import pytest
import yaml

pytest.importorskip("semilearn")

from hdl.algorithms.bench import cli as bench, report as bench_report  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
CONFIGS = os.path.join(ROOT, "configs")

TINY = dict(num_train_iter=4, num_eval_iter=2, num_log_iter=2, batch_size=8, uratio=1, net="cnn_tiny",
            eval_batch_size=512, device="cpu", num_val=5)


def tiny_grid(tmp_path, **over):
    grid = {
        "name": "tiny",
        "out_dir": str(tmp_path / "out"),
        "base_config": os.path.join(CONFIGS, "digits", "{algorithm}.yaml"),
        "algorithms": ["fixmatch", "freematch"],
        "arms": ["base", "hdl"],
        "seeds": [0],
        "settings": [{"name": "digits_lt", "dataset": "digits", "num_labels": 8, "lb_imb_ratio": 2,
                      "ulb_num_labels": 60, "ulb_imb_ratio": 2}],
        "overrides": dict(TINY),
        "hdl": {"hdl_warmup_iter": 2, "hdl_refresh_every": 1},
        "isolation": "inprocess",
    }
    grid.update(over)
    path = tmp_path / "grid.yaml"
    path.write_text(yaml.safe_dump(grid))
    return str(path)


@pytest.mark.slow
def test_grid_runs_reports_resumes_and_skips_finished_cells(tmp_path, capsys):
    from semilearn.core.hooks import Hook

    from hdl.algorithms.run import runner
    from hdl.algorithms.run.config import resolve_config

    path = tiny_grid(tmp_path)
    grid = bench.load_grid(path)
    cells = bench.build_cells(grid)
    assert [c.key for c in cells] == ["digits_lt/fixmatch_seed0", "digits_lt/hdl_fixmatch_seed0",
                                      "digits_lt/freematch_seed0", "digits_lt/hdl_freematch_seed0"]
    base, hdl = cells[0].config, cells[1].config
    # the arms differ in the algorithm, HDL's keys and the run folder only
    diff = {k for k in set(base) | set(hdl) if base.get(k) != hdl.get(k)}
    assert diff == {"algorithm", "save_name", "hdl_warmup_iter", "hdl_refresh_every"}
    assert base["lb_imb_ratio"] == 2 and base["num_train_iter"] == 4 and base["resume"] is True

    # interrupt the hdl_fixmatch cell at iteration 3 (its checkpoint is from iteration 2)
    class StopAt(Hook):
        def before_train_step(self, algorithm):
            if algorithm.it == 3:
                raise KeyboardInterrupt

    crashed = cells[1]
    a = runner.build_algorithm(resolve_config(crashed.config, bench.allowed_algorithms()), tb=False)
    a.register_hook(StopAt(), "StopAt", "HIGHEST")
    with pytest.raises(KeyboardInterrupt):
        a.train()
    assert crashed.status() == "partial" and cells[0].status() == "todo"

    summary = bench.run_grid(grid, cells, progress=False)
    assert sorted(summary["ran"]) == sorted(c.key for c in cells) and not summary["failed"]
    with open(os.path.join(crashed.run_dir, "log.txt")) as f:
        assert "resumed from" in f.read()
    res = json.load(open(os.path.join(crashed.run_dir, "results.json")))
    assert res["iterations"] == 4
    assert [r["it"] for r in bench_report.read_refreshes(crashed.run_dir)] == [2, 3, 4]  # deduplicated

    paths = bench_report.write_report(grid, cells)
    rows = list(csv.DictReader(open(paths["results"])))
    assert len(rows) == 4 and {r["arm"] for r in rows} == {"base", "hdl"}
    assert {r["threads"] for r in rows} == {"1"}  # the grid's default, whatever this process had
    hdl_row = next(r for r in rows if r["algorithm"] == "fixmatch" and r["arm"] == "hdl")
    assert hdl_row["hdl_refreshes"] == "3"
    hdl_cell = next(c for c in cells if c.algorithm == "fixmatch" and c.arm == "hdl")
    last = bench_report.read_refreshes(hdl_cell.run_dir)[-1]  # the CSV reports the last refresh's pool
    assert float(hdl_row["hdl_pool_acc"]) == pytest.approx(last["hdl/pool_acc"])
    assert next(r for r in rows if r["arm"] == "base")["hdl_pool_acc"] == ""
    floors = json.load(open(paths["floors"]))
    assert len(floors) == 1  # the four cells share one split
    (fl,) = floors.values()
    assert 0 < fl["logreg"] <= 1 and 0 < fl["labelspreading"] <= 1 and fl["num_labeled"] == 54
    plots = sorted(os.listdir(paths["plots"]))
    assert plots == ["digits_lt_hdl_pool.png", "digits_lt_per_class.png", "digits_lt_val_acc.png",
                     "digits_lt_vote_vs_logit.png"]
    table = open(paths["table"]).read()
    assert "| fixmatch |" in table and "| freematch |" in table and "Floors on the same splits (1 split(s))" in table
    for p in plots:
        assert f"(plots/{p})" in table
    assert os.path.isfile(os.path.join(cells[0].run_dir, "predictions_test_best.csv"))

    # a second invocation runs nothing and leaves the results alone
    stamps = [os.path.getmtime(os.path.join(c.run_dir, "results.json")) for c in cells]
    again = bench.run_grid(grid, bench.build_cells(grid), progress=False)
    assert again["ran"] == [] and len(again["skipped"]) == 4
    assert stamps == [os.path.getmtime(os.path.join(c.run_dir, "results.json")) for c in cells]
    assert bench.main(["--config", path, "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert out.count("done ") == 4 and "4 cells: 4 done, 0 to resume, 0 to run" in out


def test_subprocess_isolation_records_failures(tmp_path, monkeypatch):
    """A cell whose process fails is reported, leaves its output behind and is retried next time."""
    import sys

    grid = bench.load_grid(tiny_grid(tmp_path, isolation="subprocess", algorithms=["fixmatch"], arms=["base"]))
    cells = bench.build_cells(grid)
    monkeypatch.setattr(bench, "_train_command", lambda cfg: [sys.executable, "-c", "print('boom'); raise SystemExit(3)"])
    summary = bench.run_grid(grid, cells, progress=False)
    assert summary["failed"] == ["digits_lt/fixmatch_seed0"] and summary["ran"] == []
    assert "boom" in open(os.path.join(cells[0].run_dir, "bench_output.txt")).read()
    recorded = yaml.safe_load(open(os.path.join(cells[0].run_dir, "bench_cell.yaml")))
    assert recorded == yaml.safe_load(yaml.safe_dump(cells[0].config))

    def fake_train(cfg):  # a process that "trains": writes results.json into the run folder
        code = f"import os; open(os.path.join({cells[0].run_dir!r}, 'results.json'), 'w').write('{{}}')"
        return [sys.executable, "-c", code]

    monkeypatch.setattr(bench, "_train_command", fake_train)
    assert bench.run_grid(grid, cells, progress=False)["ran"] == ["digits_lt/fixmatch_seed0"]


def test_setting_may_run_fewer_algorithms(tmp_path):
    settings = [{"name": "a", "dataset": "digits", "num_labels": 8},
                {"name": "b", "dataset": "digits", "num_labels": 8, "algorithms": ["freematch"]}]
    grid = bench.load_grid(tiny_grid(tmp_path, settings=settings, arms=["base"]))
    assert [c.key for c in bench.build_cells(grid)] == ["a/fixmatch_seed0", "a/freematch_seed0", "b/freematch_seed0"]


def test_one_job_runs_cells_in_the_calling_thread(tmp_path, monkeypatch):
    """jobs=1 (the default) trains in the caller's thread, so Ctrl-C reaches an in-process cell."""
    import threading

    grid = bench.load_grid(tiny_grid(tmp_path, seeds=[0, 1], algorithms=["fixmatch"], arms=["base"]))
    cells = bench.build_cells(grid)
    threads = []
    monkeypatch.setattr(bench, "run_cell", lambda cell, isolation, env: threads.append(threading.current_thread())
                        or False)
    summary = bench.run_grid(grid, cells, progress=False)
    assert threads == [threading.main_thread()] * 2
    assert summary["failed"] == [c.key for c in cells] and summary["ran"] == []


def test_jobs_run_cells_side_by_side_with_the_grids_threads(tmp_path, monkeypatch):
    """--jobs 2: two cell processes at once (each sees the other's start file), each with the grid's
    thread count (default 1), not a share of the cores: a grid's numbers do not depend on --jobs."""
    import sys

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(bench.os, "cpu_count", lambda: 4)
    grid = bench.load_grid(tiny_grid(tmp_path, isolation="subprocess", seeds=[0, 1], algorithms=["fixmatch"],
                                     arms=["base"]))
    cells = bench.build_cells(grid)
    marks = str(tmp_path / "marks")
    os.makedirs(marks)

    def fake_train(cfg):  # announce the start, wait (up to 60 s) for the other cell, write results
        run_dir = os.path.dirname(cfg)
        code = (f"import os, time; d = {marks!r}; open(os.path.join(d, os.path.basename({run_dir!r})), 'w')"
                f".write(os.environ.get('OMP_NUM_THREADS', '')); t = time.time()\n"
                f"while len(os.listdir(d)) < 2 and time.time() - t < 60: time.sleep(0.05)\n"
                f"open(os.path.join({run_dir!r}, 'seen'), 'w').write(str(len(os.listdir(d))))\n"
                f"open(os.path.join({run_dir!r}, 'results.json'), 'w').write('{{}}')")
        return [sys.executable, "-c", code]

    monkeypatch.setattr(bench, "_train_command", fake_train)
    summary = bench.run_grid(grid, cells, progress=False, jobs=2)
    assert sorted(summary["ran"]) == sorted(c.key for c in cells) and summary["failed"] == []
    for c in cells:
        assert open(os.path.join(c.run_dir, "seen")).read() == "2"  # both ran at the same time
        assert open(os.path.join(marks, os.path.basename(c.run_dir))).read() == "1"  # not 4 cores / 2 jobs
    with pytest.raises(ValueError, match="needs isolation 'subprocess'"):
        bench.run_grid(grid, cells, isolation="inprocess", progress=False, jobs=2)
    # the grid's threads: the same with 1 job as with 2, even under another OMP_NUM_THREADS
    monkeypatch.setenv("OMP_NUM_THREADS", "4")
    grid3 = bench.load_grid(tiny_grid(tmp_path, isolation="subprocess", seeds=[0, 1], algorithms=["fixmatch"],
                                      arms=["base"], threads=3, out_dir=str(tmp_path / "out3")))
    marks = str(tmp_path / "marks3")  # fake_train reads this name when it runs
    os.makedirs(marks)
    open(os.path.join(marks, "z_no_wait"), "w").close()  # a lone cell need not wait for a partner
    cells3 = bench.build_cells(grid3)
    assert bench.run_grid(grid3, cells3[:1], progress=False, jobs=1)["failed"] == []
    assert bench.run_grid(grid3, cells3[1:], progress=False, jobs=2)["failed"] == []
    assert [open(os.path.join(marks, os.path.basename(c.run_dir))).read() for c in cells3] == ["3", "3"]
    with pytest.raises(ValueError, match="threads"):
        bench.load_grid(tiny_grid(tmp_path, threads=0))
    with pytest.raises(ValueError, match="jobs: expected an int >= 1"):
        bench.run_grid(grid, cells, progress=False, jobs=0)


@pytest.mark.parametrize(
    "over, message",
    [
        ({"algorithms": ["fixmatch", "simmatch"]}, "algorithms: expected values from"),
        ({"arms": ["hdl", "hdl"]}, "arms: duplicate entries"),
        ({"seeds": []}, "seeds: expected a non-empty list"),
        ({"seeds": [0, -1]}, "seeds: expected an integer >= 0"),
        ({"isolation": "threads"}, "isolation: expected one of ['subprocess', 'inprocess']"),
        ({"overide": {}}, "did you mean 'overrides'"),
        ({"overrides": {"seed": 3}}, "overrides: ['seed'] are set by the grid"),
        ({"per_algorithm_overrides": {"remixmatch": {"lr": 0.1}}}, "per_algorithm_overrides: ['remixmatch'] are not in"),
        ({"settings": [{"dataset": "digits"}]}, "settings[0].num_labels: required key missing"),
        ({"settings": [{"dataset": "mnist", "num_labels": 40}]}, "settings[0].dataset: expected one of"),
        ({"settings": [{"dataset": "digits", "num_labels": 40, "ulb_imb_ratio": 10}]},
         "settings[0].ulb_num_labels: required when ulb_imb_ratio != 1"),
        ({"settings": [{"dataset": "digits", "num_labels": 40, "lb_imb_ratio": 0.5}]},
         "settings[0].lb_imb_ratio: expected a number with |value| >= 1"),
        ({"settings": [{"dataset": "digits", "num_labels": 40}, {"dataset": "digits", "num_labels": 40}]},
         "settings: names must be unique, ['digits_40'] repeat"),
        ({"settings": [{"dataset": "digits", "num_labels": 40, "num_label": 3}]}, "did you mean 'num_labels'"),
        ({"base_config": None}, "base_config: required at the top of the grid or in every setting"),
        ({"floors": "yes"}, "floors: expected true or false"),
        ({"settings": [{"dataset": "digits", "num_labels": 40, "algorithms": ["mixmatch"]}]},
         "settings.digits_40.algorithms: ['mixmatch'] are not in the grid's algorithms"),
        ({"settings": [{"dataset": "digits", "num_labels": 40, "algorithms": ["fixmatch", "fixmatch"]}]},
         "settings[0].algorithms: duplicate entries"),
    ],
)
def test_grid_validation_errors(over, message, tmp_path):
    with pytest.raises(ValueError) as e:
        bench.load_grid(tiny_grid(tmp_path, **over))
    assert message in str(e.value)


@pytest.mark.parametrize(
    "over, message",
    [
        ({"hdl": {"lr": 0.1}}, "hdl: ['lr'] are not HDL keys of hdl_fixmatch"),
        ({"overrides": {"p_cutof": 0.9}}, "cell digits_lt/fixmatch_seed0"),
        ({"overrides": {"p_cutof": 0.9}}, "did you mean 'p_cutoff'"),
        ({"base_config": os.path.join(CONFIGS, "digits", "fixmatch.yaml")}, "is for algorithm 'fixmatch', expected 'freematch'"),
        ({"base_config": os.path.join(CONFIGS, "digits", "hdl_{algorithm}.yaml")}, "is for algorithm 'hdl_fixmatch'"),
        ({"base_config": "{algo}.yaml"}, "base_config: cannot fill '{algo}.yaml'"),
    ],
)
def test_cell_validation_errors(over, message, tmp_path):
    grid = bench.load_grid(tiny_grid(tmp_path, **over))
    with pytest.raises(ValueError) as e:
        bench.build_cells(grid)
    assert message in str(e.value)


def test_base_config_with_hdl_keys_is_refused(tmp_path):
    cfg = yaml.safe_load(open(os.path.join(CONFIGS, "digits", "hdl_fixmatch.yaml")))
    cfg["algorithm"] = "fixmatch"
    (tmp_path / "fixmatch.yaml").write_text(yaml.safe_dump(cfg))
    grid = bench.load_grid(tiny_grid(tmp_path, algorithms=["fixmatch"], base_config="{algorithm}.yaml"))
    with pytest.raises(ValueError, match=r"holds HDL keys \['hdl_backend'"):
        bench.build_cells(grid)


def test_hdl_keys_in_overrides_go_to_the_hdl_arm_only(tmp_path):
    grid = bench.load_grid(tiny_grid(tmp_path, algorithms=["fixmatch"], hdl={}))
    base, hdl = bench.build_cells(grid, {"hdl_k_max": 7, "lr": 0.01})
    assert "hdl_k_max" not in base.config and hdl.config["hdl_k_max"] == 7
    assert base.config["lr"] == hdl.config["lr"] == 0.01
    assert bench.main(["--config", tiny_grid(tmp_path), "--only-arms", "both", "--dry-run"]) == 2


def test_shipped_bench_grids_resolve():
    expect = {"fashion_mnist_offline.yaml": 42, "fashion_mnist_lt100_long.yaml": 8, "cifar10_lt.yaml": 36,
              "cifar100_lt.yaml": 24, "usb_classic.yaml": 144}
    for name, n in expect.items():
        grid = bench.load_grid(os.path.join(CONFIGS, "bench", name))
        cells = bench.build_cells(grid)
        assert len(cells) == n, name
        for c in cells:
            if c.arm == "hdl":  # at least 3 refreshes in every run
                cfg = c.config
                assert (cfg["num_train_iter"] - cfg["hdl_warmup_iter"]) // cfg["hdl_refresh_every"] + 1 >= 3, c.key
    lt = bench.build_cells(bench.load_grid(os.path.join(CONFIGS, "bench", "cifar10_lt.yaml")))
    fix = next(c.config for c in lt if c.key == "cifar10_lt_100_rev/fixmatch_seed0")
    assert (fix["num_train_iter"], fix["uratio"], fix["net"], fix["ulb_imb_ratio"]) == (262144, 2, "wrn_28_2", -100)
    remix = next(c.config for c in lt if c.key == "cifar10_lt_150/hdl_remixmatch_seed1")
    assert (remix["uratio"], remix["lb_imb_ratio"], remix["include_lb_to_ulb"]) == (1, 150, False)


@pytest.mark.slow
@pytest.mark.parametrize("config, writer", [("fixmatch/fixmatch_svhn_40_0.yaml", "svhn"),
                                            ("hdl_fixmatch/hdl_fixmatch_stl10_40_0.yaml", "stl10")])
def test_usb_protocol_svhn_stl10_configs_run_on_generated_standins(config, writer, tmp_path):
    """The GPU-scale SVHN (WRN-28-2) and STL-10 (WRN-37-2, 96x96) configs run two iterations."""
    from semilearn.algorithms import name2alg

    from hdl.algorithms.run import runner
    from hdl.algorithms.run.config import load_yaml, resolve_config
    from tests.fakedata import write_stl10, write_svhn

    data = tmp_path / "data"
    if writer == "svhn":
        write_svhn(data, n_train=60, n_test=6)
    else:
        write_stl10(data, n_train=60, n_test=6, n_unlabeled=2)  # random labels: >= 2 per class here
    cfg = load_yaml(os.path.join(CONFIGS, "classic_cv", config))
    cfg.update(dict(data_dir=str(data), num_labels=20, num_train_iter=2, epoch=1, num_eval_iter=1, num_log_iter=1, batch_size=2,
                    uratio=1, eval_batch_size=8, num_workers=0, save_dir=str(tmp_path / "runs"), device="cpu",
                    resume=False))
    if cfg["algorithm"].startswith("hdl_"):
        cfg.update(hdl_warmup_iter=1, hdl_refresh_every=1)
    args = resolve_config(cfg, list(name2alg.keys()))
    a = runner.build_algorithm(args, tb=False)
    a.train()
    assert a.it == 2 and "best_test/top-1-acc" in a.results_dict
    if cfg["algorithm"].startswith("hdl_"):
        assert len(a.refresh_log) == 2


@pytest.mark.slow
def test_cifar10_lt_grid_cell_runs_on_generated_standin(tmp_path):
    from tests.fakedata import write_cifar10

    write_cifar10(tmp_path / "data", n_per_batch=40, n_test=10)
    out = tmp_path / "bench"
    rc = bench.main(["--config", os.path.join(CONFIGS, "bench", "cifar10_lt.yaml"), "--in-process", "--no-progress",
                     "--out-dir", str(out), "--only-settings", "cifar10_lt_100", "--only-algorithms", "fixmatch",
                     "--only-arms", "hdl", "--only-seeds", "0", "--data_dir", str(tmp_path / "data"),
                     "--num_labels", "4", "--ulb_num_labels", "8", "--num_train_iter", "2", "--epoch", "1",
                     "--num_eval_iter", "1", "--num_log_iter", "1", "--batch_size", "2", "--uratio", "1",
                     "--eval_batch_size", "16", "--num_workers", "0", "--device", "cpu",
                     "--hdl_warmup_iter", "1", "--hdl_refresh_every", "1"])
    assert rc == 0
    run = out / "runs" / "cifar10_lt_100" / "hdl_fixmatch_seed0"
    res = json.loads((run / "results.json").read_text())
    assert res["iterations"] == 2 and res["settings"]["lb_imb_ratio"] == 100
    assert res["settings"]["net"] == "wrn_28_2" and res["settings"]["include_lb_to_ulb"] is False
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert len(rows) == 1 and rows[0]["hdl_refreshes"] == "2"
    assert (out / "plots" / "cifar10_lt_100_per_class.png").is_file()
    assert "1 of 36 runs finished" in (out / "table.md").read_text()


def test_dry_run_checks_every_cells_data_and_splits(tmp_path, capsys):
    """A setting whose splits cannot be drawn (more labels per class than digits has) passes the
    config check but fails the dry run, naming each of its cells; a valid grid passes."""
    settings = [{"name": "ok", "dataset": "digits", "num_labels": 20},
                {"name": "too_many", "dataset": "digits", "num_labels": 2000}]
    path = tiny_grid(tmp_path, settings=settings, algorithms=["fixmatch"], arms=["base"], seeds=[0, 1])
    assert bench.main(["--config", path, "--dry-run"]) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("hdl-bench: error:")]
    assert len(err) == 2 and all("cell too_many/fixmatch_seed" in ln for ln in err)
    assert "class 0" in err[0] and "200" in err[0]
    settings = [{"name": "wrong_classes", "dataset": "digits", "num_labels": 20, "num_classes": 5}]
    path = tiny_grid(tmp_path, settings=settings, algorithms=["fixmatch"], arms=["base"])
    assert bench.main(["--config", path, "--dry-run"]) == 2
    assert "num_classes: dataset 'digits' has 10 classes, config says 5" in capsys.readouterr().err
    path = tiny_grid(tmp_path, settings=settings[:0] + [{"name": "ok", "dataset": "digits", "num_labels": 20}])
    assert bench.main(["--config", path, "--dry-run"]) == 0


def test_injected_table_compares_the_last_two_refreshes_with_the_model(tmp_path):
    def run(name, refreshes):
        d = tmp_path / name
        d.mkdir()
        with open(d / "hdl_refresh.jsonl", "w") as f:
            for it, acc, model, cov, mcov in refreshes:
                f.write(json.dumps({"it": it, "hdl/injected_acc": acc, "hdl/logit_acc_equal_injected": model,
                                    "hdl/injected_coverage": cov, "hdl/logit_coverage": mcov}) + "\n")
        return str(d)

    rows = [{"algorithm": "fixmatch", "arm": "base", "seed": s, "test_acc_final": a, "run_dir": str(tmp_path)}
            for s, a in ((0, 0.60), (1, 0.62))]
    # seed 0 holds at both of the last two refreshes (the first one, it 250, does not count); seed 1
    # trails the model at it 1000 (0.86 < 0.87) but the means over the seeds hold (0.875 >= 0.87)
    rows += [{"algorithm": "fixmatch", "arm": "hdl", "seed": 0, "test_acc_final": 0.65,
              "run_dir": run("a0", [(250, .5, .9, 1., .5), (750, .88, .86, 1., .6), (1000, .89, .87, 1., .7)])},
             {"algorithm": "fixmatch", "arm": "hdl", "seed": 1, "test_acc_final": 0.61,
              "run_dir": run("a1", [(750, .88, .86, 1., .6), (1000, .86, .87, 1., .7)])}]
    # freematch: accurate labels, but less coverage than the model's thresholded coverage
    rows += [{"algorithm": "freematch", "arm": "hdl", "seed": 0, "test_acc_final": 0.7,
              "run_dir": run("b0", [(750, .95, .9, .5, .6), (1000, .95, .9, .5, .6)])}]
    text = "\n".join(bench_report.injected_lines(["fixmatch", "freematch"], rows))
    assert "| fixmatch | 0 | +5.0 | 750 / 1000 | 88.0 / 89.0 | 86.0 / 87.0 | 100.0 / 100.0 | 60.0 / 70.0 | yes |" in text
    assert "| fixmatch | 1 | -1.0 | 750 / 1000 | 88.0 / 86.0 | 86.0 / 87.0 | 100.0 / 100.0 | 60.0 / 70.0 | no |" in text
    assert "| freematch | 0 | – |" in text and text.count("| no |") == 2
    assert "1 of 2 algorithms (fixmatch yes, freematch no)" in text
    assert bench_report.injected_lines(["fixmatch"], rows[:2]) == []
    def append(it, acc, balanced, model_balanced):  # a record of seed 0 (model 0.88, coverage 1 against 0.7)
        with open(os.path.join(rows[2]["run_dir"], "hdl_refresh.jsonl"), "a") as f:
            f.write(json.dumps({"it": it, "hdl/injected_acc": acc, "hdl/logit_acc_equal_injected": .88,
                                "hdl/injected_coverage": 1., "hdl/logit_coverage": .7,
                                "hdl/injected_balanced_acc": balanced,
                                "hdl/logit_balanced_acc_equal_injected": model_balanced}) + "\n")

    # records with the class-balanced figures: shown after the verdict, "–" where a record lacks them
    append(1250, .9, .8, .6)
    text = "\n".join(bench_report.injected_lines(["fixmatch"], rows[:3]))
    assert "| fixmatch | 0 | +5.0 | 1000 / 1250 | 89.0 / 90.0 | 87.0 / 88.0 | 100.0 / 100.0 | 70.0 / 70.0 | yes | " \
           "– / 80.0 | – / 60.0 |" in text
    assert "class-balanced" not in text.split("| – / 60.0 |")[1]  # the it-1000 record lacks them: no verdict
    # both of the last two records have them: a class-balanced verdict on the same means; at it 1500 the
    # plain accuracy holds (0.9 >= 0.88) and the class-balanced one does not (0.7 < 0.72)
    append(1500, .9, .7, .72)
    text = "\n".join(bench_report.injected_lines(["fixmatch"], rows[:3]))
    assert "| 80.0 / 70.0 | 60.0 / 72.0 |" in text and "1 of 1 algorithms (fixmatch yes)" in text
    assert "The same in class-balanced accuracy (algorithms whose runs all record it): 0 of 1 algorithms " \
           "(fixmatch no)." in text
    # the other way round: plain accuracy behind (0.8 < 0.88), class-balanced ahead or level
    append(1750, .8, .75, .7)
    append(2000, .8, .75, .75)
    text = "\n".join(bench_report.injected_lines(["fixmatch"], rows[:3]))
    assert "0 of 1 algorithms (fixmatch no)" in text and "1 of 1 algorithms (fixmatch yes)." in text


def test_peers_axis_keeps_refused_pairs_with_their_reason_and_builds_the_la_arm(tmp_path):
    grid = bench.load_grid(tiny_grid(tmp_path, arms=["base", "la", "hdl"], imb_algorithms=["none", "debiaspl", "cossl"],
                                     imb_arms=["base"]))
    cells = bench.build_cells(grid)
    assert [c.key for c in cells] == [f"digits_lt/{n}_seed0" for n in (
        "fixmatch", "la_fixmatch", "hdl_fixmatch", "fixmatch_debiaspl", "fixmatch_cossl",
        "freematch", "la_freematch", "hdl_freematch", "freematch_debiaspl", "freematch_cossl")]
    refused = {c.label: c.refused for c in cells if c.refused}
    assert sorted(refused) == ["fixmatch_cossl", "freematch_cossl", "freematch_debiaspl"]
    assert "hard-codes CUDA" in refused["fixmatch_cossl"] and "p_hat never updates" in refused["freematch_debiaspl"]
    assert all(c.status() == "refused" for c in cells if c.refused)
    base, la, peer = cells[0].config, cells[1].config, cells[3].config
    diff = {k for k in set(base) | set(la) if base.get(k) != la.get(k)}
    assert diff == {"save_name", "la_prior", "la_warmup_iter", "la_refresh_every"}
    # the la arm adjusts on HDL's schedule (the grid's hdl mapping)
    assert (la["algorithm"], la["la_prior"], la["la_warmup_iter"], la["la_refresh_every"]) == ("fixmatch", "model", 2, 1)
    assert (peer["algorithm"], peer["imb_algorithm"], peer["save_name"]) == ("fixmatch", "debiaspl",
                                                                           "fixmatch_debiaspl_seed0")
    assert len(bench.select_cells(cells, imbs=["none"])) == 6
    with pytest.raises(ValueError, match=r"--only-imb: \['abc'\] not in"):
        bench.select_cells(cells, imbs=["abc"])
    with pytest.raises(ValueError, match="imb_arms: expected values from"):
        bench.load_grid(tiny_grid(tmp_path, arms=["base"], imb_algorithms=["none", "abc"], imb_arms=["hdl"]))
    with pytest.raises(ValueError, match="imb_algorithm"):  # the grid sets it from the peers axis
        bench.load_grid(tiny_grid(tmp_path, overrides=dict(TINY, imb_algorithm="abc")))


@pytest.mark.slow
def test_peers_report_side_by_side_with_paired_differences(tmp_path):
    path = tiny_grid(tmp_path, algorithms=["fixmatch"], arms=["base", "la", "hdl"], seeds=[0, 1],
                     imb_algorithms=["none", "debiaspl", "cossl"], imb_arms=["base"], floors=False)
    grid = bench.load_grid(path)
    cells = bench.build_cells(grid)
    todo = [c for c in cells if c.refused is None]
    summary = bench.run_grid(grid, todo, progress=False)
    assert not summary["failed"] and len(summary["ran"]) == 8
    paths = bench.write_reports(grid, cells)
    rows = list(csv.DictReader(open(paths["results"])))
    assert sorted(r["label"] for r in rows if r["seed"] == "0") == ["fixmatch", "fixmatch_debiaspl", "hdl_fixmatch",
                                                                      "la_fixmatch"]
    acc = {(r["label"], int(r["seed"])): float(r["test_acc_at_best_val"]) for r in rows}
    table = open(paths["table"]).read()
    assert "| fixmatch_cossl | refused: imb_algorithm: 'cossl' is not supported here: hard-codes CUDA" in table
    # HDL − la, computed here from results.csv, appears with its per-seed values
    d = [100 * (acc[("hdl_fixmatch", s)] - acc[("la_fixmatch", s)]) for s in (0, 1)]
    import numpy as np

    se = np.std(d, ddof=1) / np.sqrt(2)
    assert f"{np.mean(d):+.1f} ± {se:.1f} (2; {d[0]:+.1f} / {d[1]:+.1f})" in table
    best = max(("fixmatch", "la_fixmatch", "fixmatch_debiaspl"), key=lambda k: np.mean([acc[(k, s)] for s in (0, 1)]))
    assert f"| {best}: " in table
    assert os.path.isfile(os.path.join(paths["plots"], "digits_lt_peers_val_acc.png"))
    # one command regenerates the report from the runs into another folder
    report = tmp_path / "report"
    assert bench.main(["--config", path, "--only-table", "--report-dir", str(report), "--no-progress"]) == 0
    assert open(report / "table.md").read() == table
    assert (report / "plots" / "digits_lt_peers_val_acc.png").is_file()


def test_peer_statistics_on_paper():
    from hdl.algorithms.bench import peers

    mean, se, d = peers.paired({0: 0.70, 1: 0.80, 2: 0.75}, {0: 0.60, 1: 0.80, 3: 0.1})
    assert d == pytest.approx([10.0, 0.0]) and mean == pytest.approx(5.0) and se == pytest.approx(5.0)
    assert peers.paired({0: 0.5}, {1: 0.5}) is None
    runs = {"fixmatch": {0: {"k": 0.6}, 1: {"k": 0.7}}, "fixmatch_abc": {0: {"k": 0.8}},
            "la_fixmatch": {0: {"k": 0.66}, 1: {"k": 0.66}}, "hdl_fixmatch": {0: {"k": 0.9}, 1: {"k": 0.9}}}
    assert peers.best_peer(runs, "hdl_fixmatch", "k") == "fixmatch_abc"  # 0.8 on its one shared seed
    del runs["fixmatch_abc"]
    assert peers.best_peer(runs, "hdl_fixmatch", "k") == "la_fixmatch"  # 0.66 against fixmatch's 0.65
    head, mid, tail = peers.class_thirds(5, [1, 9, 9, 3, 1], [0, 0, 0, 0, 7])
    assert [head.tolist(), mid.tolist(), tail.tolist()] == [[1, 2], [3, 4], [0]]


def test_a_peer_the_config_refuses_is_a_refused_cell(tmp_path):
    """An override that one imbalance algorithm cannot take (two logit adjustments with DebiasPL)
    refuses those cells, every seed, with the config's reason; the other cells still validate and
    an override no cell can take still fails the grid."""
    grid = bench.load_grid(tiny_grid(tmp_path, algorithms=["fixmatch"], seeds=[0, 1], imb_algorithms=["none", "debiaspl"]))
    cells = bench.build_cells(grid, {"hdl_loss_prior": "adjusted"})
    refused = {c.key: c.refused for c in cells if c.refused}
    assert sorted(refused) == ["digits_lt/hdl_fixmatch_debiaspl_seed0", "digits_lt/hdl_fixmatch_debiaspl_seed1"]
    assert all(r.startswith("hdl_loss_prior: 'adjusted' with imb_algorithm 'debiaspl'") for r in refused.values())
    with pytest.raises(ValueError, match="cell digits_lt/hdl_fixmatch_seed0 .*hdl_loss_prior"):
        bench.build_cells(grid, {"hdl_loss_prior": "sometimes"})
