"""hdl-relabel-run: relabel every training sample of a tiny saved digits run with HDL."""
import csv
import json
import os
import warnings

import numpy as np
import pytest
import torch

pytest.importorskip("semilearn")

import hdl.algorithms  # noqa: E402,F401
from hdl.algorithms.run import runner  # noqa: E402
from hdl.algorithms.run.config import load_yaml, resolve_config  # noqa: E402
from hdl.algorithms.run.relabel_run import embed_training_set, load_run, main, relabel_run  # noqa: E402
from hdl.relabel import relabel  # noqa: E402
from semilearn.algorithms import name2alg  # noqa: E402

CONFIGS = os.path.join(os.path.dirname(__file__), "..", "configs", "digits")


def train_run(tmp_path, name, base="fixmatch", **over):
    cfg = load_yaml(os.path.join(CONFIGS, f"{base}.yaml"))
    cfg.update(dict(num_train_iter=6, num_eval_iter=3, num_log_iter=1000, batch_size=8, uratio=1, net="cnn_tiny",
                    eval_batch_size=512, save_dir=str(tmp_path), save_name=name, device="cpu", num_val=5, seed=3))
    cfg.update(over)
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner.train(resolve_config(cfg, list(name2alg.keys())), progress=False)
    return os.path.join(str(tmp_path), name)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return train_run(tmp_path_factory.mktemp("relabel_run"), "fm")


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_relabel_run_labels_every_training_sample(run_dir):
    result, out = relabel_run(run_dir, "best")
    assert out == os.path.join(run_dir, "relabel_best.csv")
    splits = np.load(os.path.join(run_dir, "splits.npz"))
    expected = np.unique(np.concatenate([splits["lb_idx"], splits["ulb_idx"]]))
    assert np.array_equal(result.index, expected)  # the run's own training samples, no validation image
    assert not np.isin(splits["val_idx"], result.index).any()
    assert result.is_labeled.sum() == len(splits["lb_idx"]) == 40
    rows = read_csv(out)
    assert [int(r["index"]) for r in rows] == expected.tolist()
    assert list(rows[0]) == ["index", "split", "true_label", "label", "level", "agreement"]  # digits has no files
    for r in rows:
        if r["split"] == "labeled":  # ground truth is kept, at level 0 with full agreement
            assert r["label"] == r["true_label"] and r["level"] == "0" and float(r["agreement"]) == 1.0
    s = result.summary()
    assert s["labeled"] == 40 and s["unlabeled"] == len(expected) - 40
    # kNN votes on the embeddings of a barely trained CNN are still far above chance (0.1) on digits
    assert 0.5 < s["accuracy"] <= 1.0 and s["coverage"] > 0.9
    assert s["precision"] >= s["accuracy"]


def test_same_labels_as_relabel_on_the_ema_embeddings(run_dir):
    result, _ = relabel_run(run_dir, "latest", os.path.join(run_dir, "x.csv"), k=5, k_max=10)
    alg = load_run(run_dir, "latest")
    index, feats = embed_training_set(alg, batch_size=64)  # another batch size: same features
    assert np.array_equal(index, result.index) and feats.shape == (len(index), alg.model.num_features)
    ckpt = torch.load(os.path.join(run_dir, "latest_model.pth"), map_location="cpu", weights_only=False)
    for key, value in ckpt["ema_model"].items():  # the EMA weights, not the raw model's
        assert torch.equal(alg.ema_model.state_dict()[key], value), key
    assert any(not torch.equal(ckpt["model"][k], v) for k, v in ckpt["ema_model"].items() if v.is_floating_point())
    given = np.where(result.is_labeled, result.true_labels, -1)
    direct = relabel(feats, given, num_classes=10, k_max=10, k=5)
    assert np.array_equal(direct.labels, result.result.labels) and result.result.chosen_k == 5


def test_relabel_run_of_wrapped_models(tmp_path):
    # ABC wraps the model (ABCNet) and ReMixMatch adds its own wrapper: features still come out
    run = train_run(tmp_path, "abc", base="remixmatch", algorithm="hdl_remixmatch", imb_algorithm="abc",
                    num_train_iter=2, num_eval_iter=2, hdl_warmup_iter=1000, hdl_k="7")
    result, out = relabel_run(run, "latest")
    assert result.result.chosen_k == 7  # the run's hdl_k
    unl = ~result.is_labeled  # the accuracy counts the CSV's labels of the unlabeled samples
    rows = read_csv(out)
    hits = [int(r["label"]) == int(r["true_label"]) for r, u in zip(rows, unl) if u]
    assert result.summary()["accuracy"] == pytest.approx(np.mean(hits))


def test_cli(run_dir, tmp_path, capsys):
    out = str(tmp_path / "labels.csv")
    assert main(["--run", run_dir, "--checkpoint", "latest", "--out", out, "--k", "5"]) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed["out"] == out and printed["k"] == 5 and os.path.isfile(out)
    assert main(["--run", str(tmp_path / "nothing")]) == 2
    assert "has no config.yaml" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--run", run_dir, "--checkpoint", "first"])
    with pytest.raises(ValueError, match="checkpoint: expected one of"):
        load_run(run_dir, "first")
    # an output that cannot be written: one line naming it, no temp file left
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    bad = str(blocker / "labels.csv")
    assert main(["--run", run_dir, "--checkpoint", "latest", "--out", bad, "--k", "5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == f"hdl-relabel-run: error: cannot write {bad}: File exists"  # a file where its folder should be


def test_cli_labeling_options_reach_hdl(run_dir, tmp_path, capsys):
    """--class-quota 0 (no quota) and --class-prior reach hdl_label: the CSV equals relabel's
    labels with the same options on the run's EMA embeddings."""
    alg = load_run(run_dir, "latest")
    index, feats = embed_training_set(alg)
    truth = np.asarray(alg.split_info.train_y)[index]
    given = np.where(np.isin(index, alg.split_info.lb_idx), truth, -1)
    for flags, opts in ((["--class-quota", "0"], dict(class_quota=None)),
                        (["--class-prior", "uniform", "--weighting", "uniform"],
                         dict(class_prior="uniform", weighting="uniform"))):
        out = str(tmp_path / "opts.csv")
        assert main(["--run", run_dir, "--checkpoint", "latest", "--out", out, "--k", "5", "--k-max", "10",
                     *flags]) == 0
        direct = relabel(feats, given, num_classes=10, k_max=10, k=5, **opts)
        assert [int(r["label"]) for r in read_csv(out)] == direct.labels.tolist()
    with pytest.raises(SystemExit):
        main(["--run", run_dir, "--class-prior", "balanced"])


def test_image_folder_run_writes_file_names_from_one_data_load(tmp_path):
    from unittest import mock

    import hdl.algorithms.usb.datasets as ds
    from tests.fakedata import write_image_folder

    write_image_folder(tmp_path / "imgs", classes=("a", "b", "c"), n_train=12, n_test=3, size=(8, 8))
    run = train_run(tmp_path, "folder", dataset="imagefolder", data_dir=str(tmp_path / "imgs"), num_classes=3,
                    num_labels=6, num_val=2, img_size=8, num_train_iter=2, num_eval_iter=2)
    with mock.patch.object(ds, "load_dataset", wraps=ds.load_dataset) as spy:
        result, out = relabel_run(run, "latest", k=3, k_max=5)
    assert spy.call_count == 1  # the run's data set, read once for the files too
    files = ds.load_dataset("imagefolder", str(tmp_path / "imgs")).train_files  # training index -> file
    rows = read_csv(out)
    assert [r["file"] for r in rows] == [str(files[i]) for i in result.index]
    assert len(set(r["file"] for r in rows)) == len(rows) == 36 - 6  # every image once, validation excluded


@pytest.mark.slow
def test_replay_refresh_recomputes_the_blend_of_a_saved_run(tmp_path):
    """scripts/replay_refresh.py recomputes the last refresh of a saved run from scratch: at blend
    weight 0 with the EMA model (the defaults otherwise) the run's own pool labels are the EMA head's,
    so the replayed ``ema`` accuracy and every ``*/ema`` blend at weight 0 equal the saved pool's."""
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
    from replay_refresh import replay

    run = train_run(tmp_path, "replay", algorithm="hdl_fixmatch", hdl_warmup_iter=6, hdl_refresh_every=6,
                    hdl_blend_weight=0.0)
    alg = load_run(run, "latest", "cpu")
    ids = torch.nonzero(alg.pool.labels >= 0).flatten()
    is_lb = torch.zeros_like(alg.pool.labels, dtype=torch.bool)
    is_lb[alg._lb_global] = True
    ids = ids[~is_lb[ids]]
    ids = ids[alg.hdl_state.diagnostics.seen(ids)]
    truth = alg._train_y[ids]
    saved = 100.0 * float((alg.pool.labels[ids] == truth).float().mean())
    res = replay(run, weight=0.0)
    assert res["samples"] == len(ids)
    assert res["ema"] == pytest.approx(saved, abs=1e-9)
    assert res["raw/ema"] == res["cal/ema"] == res["ema"]
    assert res["raw/train"] == res["cal/train"] == res["train"]
    assert res["algorithm"] == "fixmatch"
