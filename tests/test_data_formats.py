"""Loaders of the published data-set formats, on tiny generated files (no network)."""
import pickle
import struct
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from hdl.data import DATASET_INFO, DATASETS, ImageData, load_dataset
from hdl.data import formats
from hdl.data.formats import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR
from hdl.data.readers import load_numpy_pickle, read_idx
from tests import fakedata


def assert_round_trip(data: ImageData, expected: dict):
    for key in ("train_x", "train_y", "test_x", "test_y"):
        got, want = getattr(data, key), expected[key]
        assert got.dtype == (np.uint8 if key.endswith("_x") else np.int64), key
        np.testing.assert_array_equal(got, want, err_msg=key)


# ------------------------------------------------------------------------- registry
def test_registry_names_and_metadata():
    assert set(DATASETS) == {"digits", "fashion_mnist", "cifar10", "cifar100", "svhn", "stl10",
                             "imagefolder", "npz"}
    assert DATASET_INFO["cifar100"].num_classes == 100
    assert DATASET_INFO["stl10"].image_shape == (96, 96, 3)
    assert [n for n in DATASETS if DATASET_INFO[n].downloadable] == ["cifar10", "cifar100", "svhn", "stl10"]


def test_unknown_name_lists_allowed():
    with pytest.raises(ValueError, match=r"unknown data set name 'imagenet'; allowed: .*'fashion_mnist', 'cifar10'"):
        load_dataset("imagenet", "/nowhere")


def test_argument_errors(tmp_path):
    with pytest.raises(TypeError, match=r"takes no option\(s\) \['unlabeled'\]"):
        load_dataset("cifar10", tmp_path, unlabeled=True)
    with pytest.raises(ValueError, match=r"download=True is supported for .*not 'fashion_mnist'"):
        load_dataset("fashion_mnist", tmp_path, download=True)
    with pytest.raises(ValueError, match="'cifar10' needs data_dir"):
        load_dataset("cifar10")
    with pytest.raises(TypeError, match="download must be a bool"):
        load_dataset("cifar10", tmp_path, download="yes")


# --------------------------------------------------------------------------- digits
def test_digits_split_and_scaling():
    from sklearn.datasets import load_digits

    data = load_dataset("digits")
    assert data.train_x.shape == (1297, 8, 8, 1) and data.test_x.shape == (500, 8, 8, 1)
    assert data.class_names == [str(c) for c in range(10)] and data.image_shape == (8, 8, 1)
    counts = np.bincount(data.test_y, minlength=10)
    assert counts.sum() == 500 and counts.min() >= 48 and counts.max() <= 51  # stratified: ~50 each
    allowed = set(np.rint(np.arange(17) * 255 / 16).astype(int))
    assert set(np.unique(data.train_x)) <= allowed and data.train_x.max() == 255
    # train + test is exactly the bundled set, images scaled by 255 / 16
    bunch = load_digits()
    all_x = np.concatenate([data.train_x, data.test_x])[..., 0].reshape(len(bunch.data), -1)
    want = np.rint(bunch.data * 255 / 16).astype(np.uint8)
    assert sorted(map(bytes, all_x)) == sorted(map(bytes, want))
    again = load_dataset("digits")
    np.testing.assert_array_equal(again.train_y, data.train_y)


# ---------------------------------------------------------------------- fashion_mnist
def test_read_idx_hand_built(tmp_path):
    path = tmp_path / "a-idx2-ubyte"
    path.write_bytes(bytes([0, 0, 8, 2]) + struct.pack(">2I", 2, 3) + bytes(range(6)))
    np.testing.assert_array_equal(read_idx(path), [[0, 1, 2], [3, 4, 5]])
    path.write_bytes(bytes([0, 0, 0x0B, 1]) + struct.pack(">I", 2) + struct.pack(">2h", -2, 300))
    got = read_idx(path)
    assert got.dtype == np.int16 and got.tolist() == [-2, 300]


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_round_trip(tmp_path, gz):
    expected = fakedata.write_fashion_mnist(tmp_path, gz=gz)
    data = load_dataset("fashion_mnist", tmp_path)
    assert_round_trip(data, expected)
    assert data.train_x.shape == (12, 28, 28, 1)
    assert data.class_names == FASHION_MNIST_CLASSES and data.class_names[9] == "Ankle boot"


def test_fashion_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"fashion_mnist.*does not exist.*dataset-fashion-mnist"):
        load_dataset("fashion_mnist", tmp_path / "missing")
    fakedata.write_fashion_mnist(tmp_path, gz=False)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(FileNotFoundError, match=r"t10k-labels-idx1-ubyte\.gz exists"):
        load_dataset("fashion_mnist", tmp_path)
    fakedata.write_fashion_mnist(tmp_path, gz=False)
    bad = tmp_path / "train-images-idx3-ubyte"
    bad.write_bytes(b"\x1f\x8b\x08\x03" + bad.read_bytes()[4:])
    with pytest.raises(ValueError, match=r"fashion_mnist: .*train-images-idx3-ubyte is not an IDX file: magic"):
        load_dataset("fashion_mnist", tmp_path)
    fakedata.write_idx(bad, np.zeros((2, 28, 28), np.uint8))
    bad.write_bytes(bad.read_bytes()[:-1])  # truncated
    with pytest.raises(ValueError, match=r"header says shape \(2, 28, 28\)"):
        load_dataset("fashion_mnist", tmp_path)


@pytest.mark.skipif(not Path(FASHION_MNIST_DIR, "train-images-idx3-ubyte.gz").is_file(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_real_files():
    data = load_dataset("fashion_mnist")
    assert data.train_x.shape == (60000, 28, 28, 1) and data.test_x.shape == (10000, 28, 28, 1)
    np.testing.assert_array_equal(np.bincount(data.train_y), [6000] * 10)
    np.testing.assert_array_equal(np.bincount(data.test_y), [1000] * 10)
    assert data.train_x.max() == 255 and data.train_x.min() == 0


# ---------------------------------------------------------------------------- cifar
@pytest.mark.parametrize("bytes_keys", [True, False])
def test_cifar10_round_trip_parent_or_folder(tmp_path, bytes_keys):
    expected = fakedata.write_cifar10(tmp_path, bytes_keys=bytes_keys)
    for data_dir in (tmp_path, tmp_path / "cifar-10-batches-py"):
        data = load_dataset("cifar10", data_dir)
        assert_round_trip(data, expected)
        assert data.train_x.shape == (20, 32, 32, 3)
        assert data.class_names == fakedata.CIFAR10_NAMES
        assert data.train_files == expected["train_files"] and data.test_files == expected["test_files"]


def test_cifar_row_layout_hand_checked(tmp_path):
    fakedata.write_cifar10(tmp_path)
    row = np.zeros((1, 3072), np.uint8)
    row[0, 1] = 200            # R plane, row 0, column 1
    row[0, 1024 + 32] = 100    # G plane, row 1, column 0
    row[0, 2048 + 3071 - 2048] = 50  # B plane, last pixel
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as f:
        pickle.dump({"data": row, "labels": [7]}, f)
    data = load_dataset("cifar10", tmp_path)
    img = data.test_x[0]
    assert img[0, 1, 0] == 200 and img[1, 0, 1] == 100 and img[31, 31, 2] == 50 and img.sum() == 350
    assert data.test_y.tolist() == [7] and data.test_files is None


def test_numpy1_pickle_globals_are_read(tmp_path):
    """Pickles written by numpy 1.x (as the published CIFAR files) name numpy.core.multiarray."""
    raw = pickle.dumps({"data": np.arange(6, dtype=np.uint8).reshape(2, 3), "labels": [1, 2]}, protocol=2)
    assert b"numpy._core.multiarray" in raw
    (tmp_path / "batch").write_bytes(raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    got = load_numpy_pickle(tmp_path / "batch")
    np.testing.assert_array_equal(got["data"], [[0, 1, 2], [3, 4, 5]])
    assert got["labels"] == [1, 2]


def test_cifar100_fine_and_coarse(tmp_path):
    expected = fakedata.write_cifar100(tmp_path)
    data = load_dataset("cifar100", tmp_path / "cifar-100-python")
    assert_round_trip(data, expected)
    assert data.num_classes == 100 and data.class_names[3] == "fine3"
    assert data.coarse_class_names == expected["coarse_names"]
    np.testing.assert_array_equal(data.train_coarse_y, expected["train_coarse_y"])
    np.testing.assert_array_equal(data.test_coarse_y, data.test_y % 20)


def test_cifar_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"cifar10: data folder .* does not exist.*cifar-10-batches-py"):
        load_dataset("cifar10", tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match=r"cifar100: found neither .*cifar-100-python/meta"):
        load_dataset("cifar100", tmp_path)
    fakedata.write_cifar10(tmp_path)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    with open(batch, "wb") as f:  # a global other than numpy's is refused
        pickle.dump(OrderedDict(data=np.zeros((1, 3072), np.uint8), labels=[0]), f)
    with pytest.raises(ValueError, match=r"cifar10: cannot read .*data_batch_3.*not allowed"):
        load_dataset("cifar10", tmp_path)
    with open(batch, "wb") as f:
        pickle.dump({"data": np.zeros((1, 100), np.uint8), "labels": [0]}, f)
    with pytest.raises(ValueError, match=r"'data' is uint8 \(1, 100\), expected uint8 \(N, 3072\)"):
        load_dataset("cifar10", tmp_path)
    batch.write_bytes(b"not a pickle")
    with pytest.raises(ValueError, match="cifar10: cannot read"):
        load_dataset("cifar10", tmp_path)


def test_download_plumbing(tmp_path, monkeypatch):
    calls = []

    def fake_download(name, root, options):
        calls.append(name)
        fakedata.write_cifar10(root)

    monkeypatch.setattr(formats, "_torchvision_download", fake_download)
    with pytest.raises(FileNotFoundError):
        load_dataset("cifar10", tmp_path)  # never downloads by default
    assert calls == []
    data = load_dataset("cifar10", tmp_path, download=True)
    assert calls == ["cifar10"] and len(data.train_y) == 20
    load_dataset("cifar10", tmp_path, download=True)
    assert calls == ["cifar10"]  # files present: no second download


# ----------------------------------------------------------------------------- svhn
def test_svhn_round_trip_label_10_is_zero(tmp_path):
    expected = fakedata.write_svhn(tmp_path, n_extra=3)
    data = load_dataset("svhn", tmp_path)
    assert_round_trip(data, expected)
    assert data.train_y[0] == 0 and data.train_x.shape == (7, 32, 32, 3)
    extra = load_dataset("svhn", tmp_path, include_extra=True)
    np.testing.assert_array_equal(extra.train_x[7:], expected["extra_x"])
    assert len(extra.train_y) == 10


def test_svhn_layout_and_errors(tmp_path):
    from scipy.io import savemat

    x = np.zeros((32, 32, 3, 2), np.uint8)
    x[0, 1, 2, 1] = 9  # row 0, column 1, blue, second image
    savemat(tmp_path / "train_32x32.mat", {"X": x, "y": np.array([[10], [3]], np.uint8)})
    savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array([[1], [2]], np.uint8)})
    data = load_dataset("svhn", tmp_path)
    assert data.train_x[1, 0, 1, 2] == 9 and data.train_x.sum() == 9
    assert data.train_y.tolist() == [0, 3] and data.test_y.tolist() == [1, 2]
    savemat(tmp_path / "test_32x32.mat", {"X": x, "y": np.array([[11], [2]])})
    with pytest.raises(ValueError, match=r"svhn: .*labels must be integers 1..10"):
        load_dataset("svhn", tmp_path)
    (tmp_path / "test_32x32.mat").unlink()
    with pytest.raises(FileNotFoundError, match=r"svhn: file not found: .*test_32x32.mat"):
        load_dataset("svhn", tmp_path)
    with pytest.raises(FileNotFoundError, match=r"svhn.*extra_32x32.mat"):
        load_dataset("svhn", tmp_path, include_extra=True)


# ---------------------------------------------------------------------------- stl10
def test_stl10_round_trip_and_unlabeled(tmp_path):
    expected = fakedata.write_stl10(tmp_path)
    data = load_dataset("stl10", tmp_path)
    assert_round_trip(data, expected)
    assert data.class_names == fakedata.STL10_NAMES and data.extra_unlabeled_x is None
    data = load_dataset("stl10", tmp_path / "stl10_binary", unlabeled=True)
    assert isinstance(data.extra_unlabeled_x, np.memmap)
    np.testing.assert_array_equal(data.extra_unlabeled_x, expected["unlabeled_x"])


def test_stl10_column_major_hand_checked(tmp_path):
    fakedata.write_stl10(tmp_path)
    folder = tmp_path / "stl10_binary"
    raw = np.zeros(96 * 96 * 3, np.uint8)
    raw[96] = 200              # R, column 1, row 0
    raw[9216 + 2] = 100        # G, column 0, row 2
    (folder / "test_X.bin").write_bytes(raw.tobytes())
    (folder / "test_y.bin").write_bytes(bytes([10]))
    data = load_dataset("stl10", tmp_path)
    img = data.test_x[0]
    assert img[0, 1, 0] == 200 and img[2, 0, 1] == 100 and img.sum() == 300
    assert data.test_y.tolist() == [9]
    (folder / "test_X.bin").write_bytes(raw[:-1].tobytes())
    with pytest.raises(ValueError, match=r"stl10: .*test_X.bin has 27647 bytes, not a multiple of 27648"):
        load_dataset("stl10", tmp_path)
    (folder / "test_y.bin").write_bytes(bytes([0]))
    (folder / "test_X.bin").write_bytes(raw.tobytes())
    with pytest.raises(ValueError, match=r"expected 1..10"):
        load_dataset("stl10", tmp_path)


# ---------------------------------------------------------------------- imagefolder
def test_imagefolder_rgb_and_grey(tmp_path):
    expected = fakedata.write_image_folder(tmp_path / "rgb", classes=("dog", "cat"))
    data = load_dataset("imagefolder", tmp_path / "rgb")
    assert_round_trip(data, expected)
    assert data.class_names == ["cat", "dog"] and data.train_x.shape == (4, 5, 4, 3)
    assert data.train_files == expected["train_files"] and data.train_files[0] == "train/cat/0.png"
    expected = fakedata.write_image_folder(tmp_path / "grey", mode="L")
    data = load_dataset("imagefolder", tmp_path / "grey")
    assert_round_trip(data, expected)
    assert data.image_shape == (5, 4, 1)
    assert load_dataset("imagefolder", tmp_path / "grey", channels=3).image_shape == (5, 4, 3)


def test_imagefolder_resize_and_errors(tmp_path):
    from PIL import Image

    fakedata.write_image_folder(tmp_path)
    Image.new("RGB", (7, 3), (10, 20, 30)).save(tmp_path / "test" / "dog" / "big.png")
    with pytest.raises(ValueError, match=r"test/dog/big.png is 3x7 \(HxW\).*set img_size"):
        load_dataset("imagefolder", tmp_path)
    data = load_dataset("imagefolder", tmp_path, image_size=(2, 3))
    assert data.train_x.shape == (4, 2, 3, 3) and data.test_x.shape == (3, 2, 3, 3)
    np.testing.assert_array_equal(data.test_x[data.test_files.index("test/dog/big.png")], np.full((2, 3, 3), [10, 20, 30]))
    with pytest.raises(ValueError, match="image_size must be None, a positive int"):
        load_dataset("imagefolder", tmp_path, image_size=0)
    (tmp_path / "test" / "bird").mkdir()
    with pytest.raises(ValueError, match=r"class folders \['bird'\] that .*train lacks"):
        load_dataset("imagefolder", tmp_path, image_size=4)
    with pytest.raises(FileNotFoundError, match=r"imagefolder: folder .*train does not exist"):
        load_dataset("imagefolder", tmp_path / "test")


# ------------------------------------------------------------------------------ npz
def test_npz_round_trip(tmp_path):
    arrays = fakedata.write_npz(tmp_path / "d.npz")
    data = load_dataset("npz", tmp_path / "d.npz")
    assert_round_trip(data, arrays)
    assert data.class_names == ["class0", "class1", "class2"]
    grey = fakedata.write_npz(tmp_path / "g.npz", shape=(4, 4), class_names=False,
                              train_y=np.array([0, 1, 4, 0, 1, 4], np.uint8))
    data = load_dataset("npz", tmp_path / "g.npz")
    assert data.image_shape == (4, 4, 1) and data.class_names == ["0", "1", "2", "3", "4"]
    np.testing.assert_array_equal(data.train_x[..., 0], grey["train_x"])


@pytest.mark.parametrize("overrides, message", [
    ({"test_y": None}, r"missing \['test_y'\]"),
    ({"train_labels": np.zeros(6, int)}, r"not allowed \['train_labels'\]"),
    ({"train_x": np.zeros((6, 4, 4, 3), np.float32)}, r"train_x must be uint8 .*got float32"),
    ({"train_y": np.array([0, 1, 2, 3, 0, 1])}, r"train_y must lie in \[0, 3\)"),
    ({"test_y": np.zeros(2, int)}, r"test_y must be an integer array of shape \(3,\)"),
    ({"test_x": np.zeros((3, 5, 5, 3), np.uint8)}, r"test_x has image shape \(5, 5, 3\), expected \(4, 4, 3\)"),
])
def test_npz_errors(tmp_path, overrides, message):
    fakedata.write_npz(tmp_path / "d.npz", **overrides)
    with pytest.raises(ValueError, match=message):
        load_dataset("npz", tmp_path / "d.npz")


def test_npz_missing_or_not_npz(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"npz: file .*x.npz not found.*train_x"):
        load_dataset("npz", tmp_path / "x.npz")
    (tmp_path / "x.npz").write_bytes(b"junk")
    with pytest.raises(ValueError, match="npz: cannot read"):
        load_dataset("npz", tmp_path / "x.npz")
