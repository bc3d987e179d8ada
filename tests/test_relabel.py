import csv

import numpy as np
import pytest

from hdl.relabel import relabel
from hdl.relabel_cli import main


def blobs(seed=0, n_per=40):
    rng = np.random.default_rng(seed)
    centers = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 5]], dtype=np.float32)
    truth = np.repeat(np.arange(3), n_per)
    x = centers[truth] + rng.normal(0, 0.5, (truth.size, 3)).astype(np.float32)
    labels = np.full_like(truth, -1)
    labels[[0, 1, n_per, n_per + 1, 2 * n_per, 2 * n_per + 1]] = truth[[0, 1, n_per, n_per + 1, 2 * n_per, 2 * n_per + 1]]
    return x, labels, truth


def test_relabel_function_on_blobs():
    x, labels, truth = blobs()
    # the 5-NN graph of the third blob is not connected to all its labels: some stay -1
    res = relabel(x, labels, truth, k_max=10, backend="torch", k=5)
    reached = res.labels >= 0
    assert 0 < (~reached).sum() < 20 and (res.labels[reached] == truth[reached]).all()
    assert res.accuracy == pytest.approx(reached[labels < 0].mean())
    res = relabel(x, labels, truth, k_max=10, backend="torch", k=5, fallback="prototype")
    assert res.accuracy == 1.0 and res.balanced_accuracy == 1.0
    assert res.num_unlabeled == 114 and res.chosen_k == 5
    assert (res.labels[labels >= 0] == labels[labels >= 0]).all()
    assert (res.level[labels >= 0] == 0).all() and (res.level[labels < 0] >= 1).all()
    with pytest.raises(ValueError, match="k=5 is larger than k_max=4"):
        relabel(x, labels, k_max=4, k=5, backend="torch")
    with pytest.raises(TypeError, match="unknown"):
        relabel(x, labels, k_max=4, alpha=0.1, backend="torch")
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="1 row"):
        relabel(bad, labels, backend="torch")


def test_cli_npz_with_files_and_csv_labels(tmp_path, capsys):
    x, labels, truth = blobs(seed=1)
    files = np.array([f"img_{i:03d}.png" for i in range(x.shape[0])])
    np.savez(tmp_path / "emb.npz", embeddings=x, files=files)
    with open(tmp_path / "labels.csv", "w") as fh:
        fh.write("index,label\n" + "".join(f"{i},{v}\n" for i, v in enumerate(labels)))
    np.save(tmp_path / "truth.npy", truth)
    out = tmp_path / "out.csv"
    rc = main(["--embeddings", str(tmp_path / "emb.npz"), "--labels", str(tmp_path / "labels.csv"),
               "--true-labels", str(tmp_path / "truth.npy"), "--k", "5", "--k-max", "10",
               "--backend", "torch", "--out", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "accuracy on originally unlabeled samples: 100.00%" in printed
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == x.shape[0]
    assert list(rows[0]) == ["index", "file", "label", "level", "agreement"]
    assert rows[7]["file"] == "img_007.png" and int(rows[7]["label"]) == truth[7]
    assert rows[0]["level"] == "0" and float(rows[0]["agreement"]) == 1.0
    assert [int(r["label"]) for r in rows] == truth.tolist()


def test_cli_npy_and_txt_without_truth(tmp_path, capsys):
    x, labels, _ = blobs(seed=2)
    np.save(tmp_path / "emb.npy", x)
    np.savetxt(tmp_path / "labels.txt", labels, fmt="%d")
    out = tmp_path / "out.csv"
    main(["--embeddings", str(tmp_path / "emb.npy"), "--labels", str(tmp_path / "labels.txt"),
          "--k-max", "20", "--backend", "torch", "--out", str(out)])
    printed = capsys.readouterr().out
    assert "accuracy" not in printed and "rounds" in printed
    header = open(out).readline().strip()
    assert header == "index,label,level,agreement"
    with pytest.raises(SystemExit):
        main(["--embeddings", str(tmp_path / "emb.npy"), "--labels", str(tmp_path / "labels.txt"),
              "--k", "many", "--out", str(out)])
