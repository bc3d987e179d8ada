"""The scale benchmark's core on tiny sizes: exact against itself agrees fully, the recall and
purity measures are what they claim, and the mixture's spread lands in its purity band."""

import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import bench_scale  # noqa: E402


@pytest.fixture(autouse=True)
def _no_peak(monkeypatch):
    monkeypatch.setattr(bench_scale, "matmul_peak", lambda: 100.0)  # seconds of matmuls are not the point here


def test_recall_and_agreement_by_hand():
    ref = np.array([[1, 2], [0, 2], [-1, -1]])
    got = np.array([[2, 3], [2, 0], [0, 1]])
    assert bench_scale.recall_at(got, ref) == pytest.approx(3 / 4)  # the -1 row counts nothing
    given = np.array([0, -1, -1, -1])
    assert bench_scale.agreement(np.array([0, 1, 2, 3]), np.array([5, 1, 0, 3]), given) == pytest.approx(2 / 3)


def test_mixture_purity_in_band():
    x, truth, c = bench_scale.mixture(10_000)
    assert x.shape == (10_000, 128) and c == 20 and np.allclose(np.linalg.norm(x, axis=1), 1, atol=1e-5)
    rows = bench_scale.query_rows(len(x), 1000)
    _, idx, _ = bench_scale.exact_queries(x, rows)
    assert (idx != rows[:, None]).all()  # self excluded
    assert 0.60 <= bench_scale.purity(idx, truth[rows], truth) <= 0.80


def test_cells_exact_against_itself(tmp_path):
    cache = str(tmp_path)
    bench_scale.ensure_data(cache, "mixture", 2000, "unused")
    rows = []
    for method in ("queries", "exact", "ivf", "torch", "cells"):
        row = bench_scale.run_cell(cache, "mixture", 2000, method, threads=1)
        bench_scale._save_json(bench_scale.cell_path(cache, "mixture", 2000, method), row)
        rows.append(row)
    assert rows[0]["queries"] == 2000 and not rows[0]["estimated"]
    out = {r["method"]: r for r in bench_scale.finish_rows(cache, bench_scale.load_rows(cache))}
    assert out["exact"]["recall"] == pytest.approx(1.0)
    assert out["exact"]["agreement"] == 1.0
    assert out["torch"]["recall"] > 0.999  # another exact search: only exact ties may differ
    assert 0 < out["ivf"]["recall"] < 1  # nprobe 1/16 of the cells misses neighbours here
    assert 0 <= out["ivf"]["agreement"] <= 1 and out["ivf"]["total_s"] > 0
    assert 0 < out["cells"]["recall"] < 1 and out["cells"]["params"] == {"nlist": 45, "nprobe": 1}
    table = bench_scale.table(list(out.values()))
    assert table.count("| mixture") == 5 and "| 100.00 |" in table and "cells graph (defaults)" in table


def test_fmnist_missing_file_names_it_and_its_command(tmp_path):
    path = str(tmp_path / "nope.npz")
    with pytest.raises(FileNotFoundError, match="nope.npz.*labeling_suite_prepare.sh"):
        bench_scale.fmnist(100, path)


def test_fmnist_tiles_with_small_noise(tmp_path):
    rng = np.random.default_rng(0)
    path = str(tmp_path / "f.npz")
    np.savez(path, feats=rng.normal(size=(50, 128)).astype(np.float32), labels=np.arange(50) % 5, index=np.arange(50))
    x, truth, c = bench_scale.fmnist(100, path)  # two full tiles
    assert x.shape == (100, 128) and c == 5 and np.bincount(truth).tolist() == [20] * 5
    base = np.load(path)["feats"]
    base = base / np.linalg.norm(base, axis=1, keepdims=True)
    nearest = (torch.from_numpy(x) @ torch.from_numpy(base).T).max(dim=1).values
    assert float(nearest.min()) > 0.999  # every row is a copy of a base row plus small noise


def test_ann_sweep_full_probe_is_exact(tmp_path):
    """bench_ann_sweep: IVF probing every cell lists the exact neighbours (recall 1), one probe
    fewer of them; HNSW with a search list of all rows finds them too; the table is written."""
    pytest.importorskip("faiss")
    import bench_ann_sweep
    from hdl.ann import ivf_defaults

    x, _, _ = bench_scale.mixture(3000)
    nlist, _ = ivf_defaults(len(x))
    rows = bench_ann_sweep.sweep(x, 300, [1, nlist], [16], [3000])
    by = {(r["index"], r["params"]): r for r in rows}
    assert by[("exact (flat)", "")]["recall"] == 1.0
    assert by[("IVF-Flat", f"nlist {nlist}, nprobe {nlist}")]["recall"] == pytest.approx(1.0)
    assert by[("IVF-Flat", f"nlist {nlist}, nprobe 1")]["recall"] < 0.9  # a hard mixture: one cell misses many
    assert by[("HNSW-Flat", "M 16, efSearch 3000")]["recall"] > 0.99
    out = tmp_path / "sweep.md"
    assert bench_ann_sweep.main(["--size", "2000", "--queries", "100", "--nprobe", "1", "--hnsw-m", "8",
                                 "--ef", "64", "--threads", "1", "--out", str(out)]) == 0
    assert out.read_text().count("\n| ") == 4 and not os.path.exists(str(out) + ".tmp")  # header, exact, IVF, HNSW


def test_ann_sweep_labels_of_a_full_probe_equal_the_exact_graphs(tmp_path):
    """bench_ann_sweep --labels: IVF probing every cell gives the exact graph, hence the same HDL
    labels (agreement 100%, the same accuracy); one probe gives another graph and other labels;
    `--hnsw-m` with no value skips HNSW and the table gains the two label columns."""
    pytest.importorskip("faiss")
    import bench_ann_sweep
    from hdl.ann import cells_defaults, ivf_defaults

    x, truth, c = bench_scale.mixture(3000)
    given = bench_scale.given_labels(truth)
    nlist, _ = ivf_defaults(len(x))
    c_nlist, _ = cells_defaults(len(x))
    rows = bench_ann_sweep.sweep(x, 300, [1, nlist], [], [64], labels=(truth, given, c), cells_nprobes=[1, c_nlist])
    assert [r["index"] for r in rows] == ["exact (flat)"] + ["cells (ours)"] * 2 + ["IVF-Flat"] * 2
    exact, cells_one, cells_all, one, full = rows
    for graph in (full, cells_all):  # every cell probed: the exact graph, the exact graph's labels
        assert graph["recall"] == pytest.approx(1.0)
        assert graph["agreement"] == 1.0 and graph["accuracy"] == exact["accuracy"]
    assert one["agreement"] < 1.0 and cells_one["recall"] < 0.9
    out = tmp_path / "sweep.md"
    assert bench_ann_sweep.main(["--size", "2000", "--queries", "100", "--nprobe", "1", "--hnsw-m",
                                 "--ef", "64", "--threads", "1", "--labels", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.count("\n| ") == 3 and "HDL label accuracy" in text  # header, exact, IVF
