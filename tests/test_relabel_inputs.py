"""``hdl-relabel`` on bad and questionable input: one line naming the file and what is wrong (rc 2),
a warning saying what the result will lack, and an output that is whole or absent."""
import csv
import os

import numpy as np
import pytest

from hdl import relabel_cli
from hdl.relabel import RelabelWarning, relabel
from hdl.relabel_cli import main


def blobs(n_per=20, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[5, 0, 0], [0, 5, 0], [0, 0, 5]], dtype=np.float32)
    truth = np.repeat(np.arange(3), n_per)
    x = centers[truth] + rng.normal(0, 0.5, (truth.size, 3)).astype(np.float32)
    labels = np.full_like(truth, -1)
    given = [0, 1, n_per, n_per + 1, 2 * n_per, 2 * n_per + 1]
    labels[given] = truth[given]
    return x, labels, truth


@pytest.fixture
def files(tmp_path):
    x, labels, truth = blobs()
    np.save(tmp_path / "e.npy", x)
    np.savetxt(tmp_path / "l.txt", labels, fmt="%d")
    return tmp_path, x, labels


def cli(tmp_path, capsys, *args, out="out.csv"):
    rc = main([*args, "--backend", "torch", "--out", str(tmp_path / out)])
    got = capsys.readouterr()
    return rc, [ln for ln in got.err.splitlines() if ln.startswith("hdl-relabel:")], got.out


def write_labels(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return str(p)


def test_bad_input_files_are_one_line_each(files, capsys):
    tmp_path, x, labels = files
    e, l_ = str(tmp_path / "e.npy"), str(tmp_path / "l.txt")
    (tmp_path / "empty.npy").write_bytes(b"")
    (tmp_path / "junk.npy").write_bytes(b"this is not numpy")
    np.save(tmp_path / "e1d.npy", np.arange(5.0))
    nan = x.copy()
    nan[4, 1] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    float_csv = write_labels(tmp_path, "f.csv", "label\n" + "".join(f"{v}\n" for v in labels[:5]) + "2.7\n"
                             + "".join(f"{v}\n" for v in labels[6:]))
    np.save(tmp_path / "f.npy", labels.astype(np.float64) + 0.5)
    short = write_labels(tmp_path, "short.txt", "0\n1\n-1\n")
    cases = [
        (["--embeddings", str(tmp_path / "none.npy"), "--labels", l_], f"--embeddings {tmp_path / 'none.npy'}: no such file"),
        (["--embeddings", str(tmp_path / "empty.npy"), "--labels", l_],
         f"--embeddings {tmp_path / 'empty.npy'}: the file is empty (0 bytes)"),
        (["--embeddings", str(tmp_path / "junk.npy"), "--labels", l_], f"--embeddings {tmp_path / 'junk.npy'}: not a readable .npy file"),
        (["--embeddings", str(tmp_path / "e1d.npy"), "--labels", l_],
         f"--embeddings {tmp_path / 'e1d.npy'}: expected a numeric array of shape (N, D) with N, D >= 1, got shape (5,)"),
        (["--embeddings", str(tmp_path / "nan.npy"), "--labels", l_],
         f"--embeddings {tmp_path / 'nan.npy'}: 1 row(s) hold NaN or inf (first: row 4)"),
        (["--embeddings", e, "--labels", str(tmp_path / "none.csv")], f"--labels {tmp_path / 'none.csv'}: no such file"),
        (["--embeddings", e, "--labels", float_csv], f"--labels {float_csv}: row 7: label '2.7' is not an integer"),
        (["--embeddings", e, "--labels", str(tmp_path / "f.npy")],
         f"--labels {tmp_path / 'f.npy'}: labels must be integers (-1 = unlabeled); sample 0 is 0.5"),
        (["--embeddings", e, "--labels", short], f"--labels {short}: 3 labels for the 60 embeddings of {e}"),
        (["--embeddings", e, "--labels", write_labels(tmp_path, "none.txt", "-1\n" * 60)],
         "labels: no sample is labeled (every label is -1); there is nothing to propagate"),
        (["--embeddings", e, "--labels", write_labels(tmp_path, "neg.txt", "-2\n" + "0\n" * 59)],
         "labels: expected class indices >= 0 or -1 for unlabeled, got [-2]"),
    ]
    for args, message in cases:
        rc, err, _ = cli(tmp_path, capsys, *args)
        assert rc == 2, args
        assert len(err) == 1 and err[0].startswith(f"hdl-relabel: error: {message}"), (args, err)
        assert not os.path.exists(tmp_path / "out.csv")


def test_questionable_input_warns_what_the_result_lacks(files, capsys):
    tmp_path, x, labels = files
    e = str(tmp_path / "e.npy")
    ten = labels.copy()
    ten[5] = 10  # one seed labeled 10, no --num-classes
    np.savetxt(tmp_path / "ten.txt", ten, fmt="%d")
    rc, err, _ = cli(tmp_path, capsys, "--embeddings", e, "--labels", str(tmp_path / "ten.txt"))
    assert rc == 0
    assert err == ["hdl-relabel: warning: class(es) 3, 4, 5, 6, 7, 8, 9 have no labeled sample (the classes were "
                   "inferred as 0..10 from the largest label; pass --num-classes to declare them): no sample will "
                   "be labeled with them"]
    # declared: the label 10 lies outside the classes and is not used
    rc, err, _ = cli(tmp_path, capsys, "--embeddings", e, "--labels", str(tmp_path / "ten.txt"), "--num-classes", "3")
    assert rc == 0 and err == ["hdl-relabel: warning: 1 sample(s) are labeled outside the declared classes 0..2 "
                               "(e.g. 10); they are treated as unlabeled"]
    rows = list(csv.DictReader(open(tmp_path / "out.csv")))
    assert {int(r["label"]) for r in rows} <= {0, 1, 2} and rows[5]["level"] != "0"
    # a class with no labeled sample is never predicted: said up front
    miss = labels.copy()
    miss[miss == 2] = -1
    np.savetxt(tmp_path / "miss.txt", miss, fmt="%d")
    rc, err, _ = cli(tmp_path, capsys, "--embeddings", e, "--labels", str(tmp_path / "miss.txt"), "--num-classes", "3")
    assert rc == 0 and err == ["hdl-relabel: warning: class(es) 2 have no labeled sample: no sample will be labeled "
                               "with them"]
    assert 2 not in {int(r["label"]) for r in csv.DictReader(open(tmp_path / "out.csv"))}
    # identical embeddings
    np.save(tmp_path / "same.npy", np.ones_like(x))
    rc, err, _ = cli(tmp_path, capsys, "--embeddings", str(tmp_path / "same.npy"), "--labels", str(tmp_path / "l.txt"))
    assert rc == 0 and err == ["hdl-relabel: warning: all 60 embeddings are identical: their neighbours are arbitrary, "
                               "so the labels carry no information from the embeddings"]
    # k beyond the samples: the k actually used is the one reported
    rc, err, out = cli(tmp_path, capsys, "--embeddings", e, "--labels", str(tmp_path / "l.txt"), "--k", "70",
                       "--k-max", "100")
    assert rc == 0 and err == ["hdl-relabel: warning: k=70 is more than the 59 neighbour(s) a sample has here (N=60); "
                               "k=59 is used"]
    assert "with k=59 in" in out


def test_the_function_warns_too(files):
    _, x, labels = files
    miss = labels.copy()
    miss[miss == 1] = -1
    with pytest.warns(RelabelWarning, match="class\\(es\\) 1 have no labeled sample"):
        relabel(x, miss, num_classes=3, backend="torch")


def test_output_is_whole_or_absent(files, capsys, monkeypatch):
    tmp_path, _, _ = files
    args = ["--embeddings", str(tmp_path / "e.npy"), "--labels", str(tmp_path / "l.txt")]
    rc, _, _ = cli(tmp_path, capsys, *args)
    before = (tmp_path / "out.csv").read_text()
    assert rc == 0 and before.count("\n") == 61

    real_writer = csv.writer

    class FullDisk:  # the disk fills up after 30 rows
        def __init__(self, fh):
            self.w, self.n = real_writer(fh), 0

        def writerow(self, row):
            self.w.writerow(row)

        def writerows(self, rows):
            for row in rows:
                self.n += 1
                if self.n > 30:
                    raise OSError(28, "No space left on device")
                self.w.writerow(row)

    monkeypatch.setattr(relabel_cli.csv, "writer", FullDisk)
    rc, err, _ = cli(tmp_path, capsys, *args, "--k", "5")
    assert rc == 2 and err == [f"hdl-relabel: error: cannot write {tmp_path / 'out.csv'}: No space left on device"]
    assert (tmp_path / "out.csv").read_text() == before  # the earlier output is untouched
    assert sorted(os.listdir(tmp_path)) == sorted(["e.npy", "l.txt", "out.csv"])  # no temp file left
    monkeypatch.undo()
    rc, err, _ = cli(tmp_path, capsys, *args, out="no_such_dir/out.csv")
    assert rc == 2 and err == [f"hdl-relabel: error: cannot write {tmp_path / 'no_such_dir/out.csv'}: No such file or directory"]
