"""Tiny stand-ins of the published data-set file formats, written into a folder.

Every ``write_*`` function draws random uint8 images and labels from ``seed``, writes them in
the published layout, and returns the arrays a correct reader must give back as a dict
``{"train_x", "train_y", "test_x", "test_y", ...}`` with images (N, H, W, C) uint8 and labels
int64 class ids.
"""
from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np

CIFAR10_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
STL10_NAMES = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship", "truck"]


def _images(rng, n, shape):
    return rng.integers(0, 256, size=(n, *shape), dtype=np.uint8)


def write_idx(path, array: np.ndarray, gz: bool = False) -> Path:
    """Write a uint8 array as an IDX file (type byte 0x08), gzip-compressed if ``gz``."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    path = Path(path)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(header + array.tobytes())
    return path


def write_fashion_mnist(folder, n_train=12, n_test=6, gz=True, seed=0) -> dict:
    """The four Fashion-MNIST IDX files (28 x 28 grey images, labels 0..9)."""
    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, prefix, n in (("train", "train", n_train), ("test", "t10k", n_test)):
        x, y = _images(rng, n, (28, 28)), rng.integers(0, 10, n).astype(np.uint8)
        suffix = ".gz" if gz else ""
        write_idx(folder / f"{prefix}-images-idx3-ubyte{suffix}", x, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte{suffix}", y, gz)
        out[f"{split}_x"], out[f"{split}_y"] = x[..., None], y.astype(np.int64)
    return out


def _pickle(path, obj: dict, bytes_keys: bool) -> None:
    if bytes_keys:  # how Python-2 pickles look when read with encoding="bytes"
        obj = {k.encode(): ([v.encode() if isinstance(v, str) else v for v in val]
                            if isinstance(val, list) else val) for k, val in obj.items()}
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def _cifar_rows(x: np.ndarray) -> np.ndarray:
    """(N, 32, 32, 3) -> (N, 3072): the R, G, B planes, each row-major."""
    return x.transpose(0, 3, 1, 2).reshape(len(x), -1)


def write_cifar10(parent, n_per_batch=4, n_test=5, bytes_keys=True, seed=0) -> dict:
    """``parent/cifar-10-batches-py/`` with data_batch_1..5, test_batch, batches.meta."""
    rng = np.random.default_rng(seed)
    folder = Path(parent) / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    xs, ys, files = [], [], []
    for i in range(1, 7):
        n = n_test if i == 6 else n_per_batch
        x, y = _images(rng, n, (32, 32, 3)), rng.integers(0, 10, n)
        names = [f"img_{i}_{j}.png" for j in range(n)]
        _pickle(folder / ("test_batch" if i == 6 else f"data_batch_{i}"),
                {"batch_label": f"batch {i}", "labels": [int(v) for v in y], "data": _cifar_rows(x),
                 "filenames": names}, bytes_keys)
        xs.append(x), ys.append(y.astype(np.int64)), files.append(names)
    _pickle(folder / "batches.meta", {"label_names": CIFAR10_NAMES, "num_cases_per_batch": n_per_batch,
                                      "num_vis": 3072}, bytes_keys)
    return {"train_x": np.concatenate(xs[:5]), "train_y": np.concatenate(ys[:5]),
            "test_x": xs[5], "test_y": ys[5], "train_files": sum(files[:5], []), "test_files": files[5],
            "class_names": CIFAR10_NAMES}


def write_cifar100(parent, n_train=8, n_test=5, bytes_keys=True, seed=0) -> dict:
    """``parent/cifar-100-python/`` with train, test, meta (fine and coarse labels)."""
    rng = np.random.default_rng(seed)
    folder = Path(parent) / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    out = {"class_names": [f"fine{c}" for c in range(100)], "coarse_names": [f"coarse{c}" for c in range(20)]}
    for split, n in (("train", n_train), ("test", n_test)):
        x, fine = _images(rng, n, (32, 32, 3)), rng.integers(0, 100, n)
        coarse = fine % 20
        _pickle(folder / split, {"filenames": [f"{split}_{j}.png" for j in range(n)],
                                 "fine_labels": [int(v) for v in fine], "coarse_labels": [int(v) for v in coarse],
                                 "data": _cifar_rows(x)}, bytes_keys)
        out[f"{split}_x"], out[f"{split}_y"], out[f"{split}_coarse_y"] = x, fine.astype(np.int64), coarse
    _pickle(folder / "meta", {"fine_label_names": out["class_names"],
                              "coarse_label_names": out["coarse_names"]}, bytes_keys)
    return out


def write_svhn(folder, n_train=7, n_test=4, n_extra=0, seed=0) -> dict:
    """``train_32x32.mat`` / ``test_32x32.mat`` (/ ``extra_32x32.mat``): X (32, 32, 3, N), y 1..10."""
    from scipy.io import savemat

    rng = np.random.default_rng(seed)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test), ("extra", n_extra)):
        if n == 0:
            continue
        x, digit = _images(rng, n, (32, 32, 3)), np.arange(n) % 10
        file_y = np.where(digit == 0, 10, digit).astype(np.float64)[:, None]  # 10 means digit 0
        savemat(folder / f"{split}_32x32.mat", {"X": x.transpose(1, 2, 3, 0), "y": file_y})
        out[f"{split}_x"], out[f"{split}_y"] = x, digit.astype(np.int64)
    return out


def stl10_bytes(x: np.ndarray) -> bytes:
    """(N, 96, 96, 3) -> bytes: per image the R, G, B planes, each column-major."""
    return np.ascontiguousarray(x.transpose(0, 3, 2, 1)).tobytes()


def write_stl10(parent, n_train=3, n_test=2, n_unlabeled=2, seed=0) -> dict:
    """``parent/stl10_binary/`` with the *_X.bin, *_y.bin (labels 1..10) and class_names.txt files."""
    rng = np.random.default_rng(seed)
    folder = Path(parent) / "stl10_binary"
    folder.mkdir(parents=True, exist_ok=True)
    out = {"class_names": STL10_NAMES}
    for split, n in (("train", n_train), ("test", n_test), ("unlabeled", n_unlabeled)):
        x = _images(rng, n, (96, 96, 3))
        (folder / f"{split}_X.bin").write_bytes(stl10_bytes(x))
        out[f"{split}_x"] = x
        if split != "unlabeled":
            y = rng.integers(0, 10, n)
            (folder / f"{split}_y.bin").write_bytes((y + 1).astype(np.uint8).tobytes())
            out[f"{split}_y"] = y.astype(np.int64)
    (folder / "class_names.txt").write_text("\n".join(STL10_NAMES) + "\n")
    return out


def write_image_folder(root, classes=("cat", "dog"), n_train=2, n_test=1, size=(5, 4), mode="RGB",
                       ext=".png", seed=0) -> dict:
    """``root/train/<class>/<i>.png`` and ``root/test/<class>/<i>.png`` (lossless PNGs), images
    of ``size`` (H, W) in PIL ``mode`` "RGB" or "L"."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    root = Path(root)
    out = {"class_names": sorted(classes)}
    channels = 1 if mode == "L" else 3
    for split, n in (("train", n_train), ("test", n_test)):
        xs, ys, files = [], [], []
        for c, name in enumerate(sorted(classes)):
            (root / split / name).mkdir(parents=True, exist_ok=True)
            for i in range(n):
                x = _images(rng, 1, (*size, channels))[0]
                Image.fromarray(x[..., 0] if channels == 1 else x).save(root / split / name / f"{i}{ext}")
                xs.append(x), ys.append(c), files.append(f"{split}/{name}/{i}{ext}")
        out[f"{split}_x"], out[f"{split}_y"], out[f"{split}_files"] = (
            np.stack(xs), np.asarray(ys, dtype=np.int64), files)
    return out


def write_npz(path, n_train=6, n_test=3, shape=(4, 4, 3), num_classes=3, class_names=True, seed=0,
              **overrides) -> dict:
    """An ``.npz`` with train_x, train_y, test_x, test_y (and class_names); ``overrides`` replace
    or add arrays (a value of None drops the key)."""
    rng = np.random.default_rng(seed)
    arrays = {"train_x": _images(rng, n_train, shape), "train_y": np.arange(n_train) % num_classes,
              "test_x": _images(rng, n_test, shape), "test_y": np.arange(n_test) % num_classes}
    if class_names:
        arrays["class_names"] = np.array([f"class{c}" for c in range(num_classes)])
    arrays.update(overrides)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    np.savez(path, **arrays)
    return arrays
