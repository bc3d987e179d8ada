"""Named image data sets read from their published file formats: :func:`load_dataset`.

=================  =========================================================================
name               what ``data_dir`` must hold (see :data:`DATASET_INFO`)
=================  =========================================================================
``digits``         nothing: scikit-learn's bundled 8x8 digits (``data_dir`` is ignored);
                   fixed stratified split, seed 0: 1,297 train / 500 test images
``fashion_mnist``  IDX files ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
                   ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte`` (each raw or
                   ``.gz``); default dir ``/usr/share/datasets/fashion-mnist`` (Debian
                   package ``dataset-fashion-mnist``)
``cifar10``        ``cifar-10-batches-py/`` (``data_batch_1..5``, ``test_batch``,
                   ``batches.meta``); ``data_dir`` may be that folder or its parent
``cifar100``       ``cifar-100-python/`` (``train``, ``test``, ``meta``); the folder or its
                   parent; coarse (20 superclass) labels are kept
``svhn``           ``train_32x32.mat``, ``test_32x32.mat`` (and ``extra_32x32.mat`` with
                   ``include_extra=True``)
``stl10``          ``stl10_binary/`` (``train_X.bin``, ``train_y.bin``, ``test_X.bin``,
                   ``test_y.bin``, ``class_names.txt``, and ``unlabeled_X.bin`` with
                   ``unlabeled=True``); the folder or its parent
``imagefolder``    ``train/<class>/*.png|jpg|...`` and ``test/<class>/...``
                   (see :func:`hdl.data.user_formats.load_image_folder`)
``npz``            ``data_dir`` is the ``.npz`` file itself
                   (see :func:`hdl.data.user_formats.load_npz`)
=================  =========================================================================

Nothing is downloaded unless ``download=True`` (cifar10, cifar100, svhn, stl10 only): then
missing files are fetched into ``data_dir`` by torchvision's data set classes and read back
with the readers here.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from hdl.data.image_data import ImageData
from hdl.data.readers import load_numpy_pickle, read_idx, read_stl10_images, read_stl10_labels
from hdl.data.user_formats import load_image_folder, load_npz

__all__ = ["DatasetInfo", "DATASET_INFO", "DATASETS", "load_dataset",
           "FASHION_MNIST_CLASSES", "DIGITS_TEST_SIZE", "DIGITS_SPLIT_SEED"]

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
DIGITS_TEST_SIZE = 500
DIGITS_SPLIT_SEED = 0


@dataclass(frozen=True)
class DatasetInfo:
    """Static facts about a named data set.

    num_classes / image_shape ((H, W, C)) are None where the files decide them.
    options: the extra keyword arguments :func:`load_dataset` accepts for it.
    """

    name: str
    num_classes: Optional[int]
    image_shape: Optional[tuple]
    expects: str
    default_dir: Optional[str] = None
    downloadable: bool = False
    options: tuple = ()


DATASET_INFO: dict = {}
_LOADERS: dict = {}


def _register(info: DatasetInfo) -> Callable:
    def deco(fn):
        if info.name in DATASET_INFO:
            warnings.warn(f"data set {info.name!r} registered twice; the later loader wins")
        DATASET_INFO[info.name] = info
        _LOADERS[info.name] = fn
        return fn
    return deco


def load_dataset(name: str, data_dir=None, download: bool = False, **options) -> ImageData:
    """Load a named data set into an :class:`ImageData`.

    Args:
        name: one of :data:`DATASETS` (case-insensitive, '-' read as '_').
        data_dir: folder (or, for ``npz``, file) holding the data; None uses the data set's
            default folder (only ``fashion_mnist`` has one; ``digits`` needs none).
        download: when True and files are missing, fetch them with torchvision into
            ``data_dir`` (cifar10, cifar100, svhn, stl10 only). Default: never download.
        **options: per-data-set options, listed in ``DATASET_INFO[name].options``:
            svhn ``include_extra`` (bool, False), stl10 ``unlabeled`` (bool, False),
            imagefolder ``image_size`` (None | int | (H, W)) and ``channels`` (None | 1 | 3).
    Raises:
        ValueError: unknown name, a bad argument, or files in the wrong format.
        TypeError: wrong argument type, or an option the data set does not take.
        FileNotFoundError: the folder or a file is missing (the message says what is expected).
    """
    if not isinstance(name, str):
        raise TypeError(f"name must be a str, one of {list(DATASETS)}; got {type(name).__name__}")
    key = name.strip().lower().replace("-", "_")
    if key not in DATASET_INFO:
        raise ValueError(f"unknown data set name {name!r}; allowed: {list(DATASETS)}")
    info = DATASET_INFO[key]
    if not isinstance(download, bool):
        raise TypeError(f"download must be a bool, got {download!r}")
    unknown = sorted(set(options) - set(info.options))
    if unknown:
        raise TypeError(f"data set {key!r} takes no option(s) {unknown}; allowed: {list(info.options)}")
    if data_dir is not None and not isinstance(data_dir, (str, os.PathLike)):
        raise TypeError(f"data_dir must be None, a str or a path, got {type(data_dir).__name__}")
    if download and not info.downloadable:
        allowed = [n for n, i in DATASET_INFO.items() if i.downloadable]
        raise ValueError(f"download=True is supported for {allowed} only, not {key!r}")
    if data_dir is None:
        data_dir = info.default_dir
    if data_dir is None and key != "digits":
        raise ValueError(f"data set {key!r} needs data_dir: {info.expects}")
    path = None if data_dir is None else Path(data_dir).expanduser()
    loader = _LOADERS[key]
    try:
        data = loader(path, **options)
    except FileNotFoundError:
        if not download:
            raise
        _torchvision_download(key, path, options)
        data = loader(path, **options)
    return data.validate()


def _torchvision_download(name: str, root: Path, options: dict) -> None:
    """Fetch a data set's published files into ``root`` with torchvision (network)."""
    try:
        from torchvision import datasets as tvd
    except ImportError as err:
        raise ImportError(f"download=True for {name!r} needs torchvision (pip install torchvision); "
                          f"without it, put the files into {root} yourself") from err
    root.mkdir(parents=True, exist_ok=True)
    if name == "cifar10":
        tvd.CIFAR10(str(root), train=True, download=True)
    elif name == "cifar100":
        tvd.CIFAR100(str(root), train=True, download=True)
    elif name == "stl10":
        tvd.STL10(str(root), split="train", download=True)
    elif name == "svhn":
        splits = ["train", "test"] + (["extra"] if options.get("include_extra") else [])
        for split in splits:
            tvd.SVHN(str(root), split=split, download=True)
    else:  # guarded by DatasetInfo.downloadable
        raise AssertionError(name)


def _require_dir(name: str, path: Path, expects: str) -> None:
    if not path.is_dir():
        raise FileNotFoundError(f"{name}: data folder {path} does not exist; expected {expects}")


def _locate(name: str, path: Path, subfolder: str, marker: str, expects: str) -> Path:
    """Return ``path/subfolder`` or ``path`` itself, whichever holds ``marker``."""
    _require_dir(name, path, expects)
    for cand in (path / subfolder, path):
        if (cand / marker).is_file():
            return cand
    raise FileNotFoundError(f"{name}: found neither {path / subfolder / marker} nor {path / marker}; "
                            f"expected {expects}")


def _reraise(name: str, fn, *args, **kwargs):
    """Call a reader, prefixing its ValueError with the data set's name."""
    try:
        return fn(*args, **kwargs)
    except ValueError as err:
        raise ValueError(f"{name}: {err}") from err


# ----------------------------------------------------------------------------- digits
@_register(DatasetInfo("digits", 10, (8, 8, 1), "nothing (scikit-learn's bundled digits; data_dir is ignored)"))
def _load_digits(path: Optional[Path]) -> ImageData:
    """scikit-learn's 8x8 digits, values 0..16 scaled to uint8 by round(v * 255 / 16).

    Split: ``train_test_split(test_size=500, stratify=y, random_state=0)`` -> 1,297 / 500.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    bunch = load_digits()
    x = np.rint(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    y = bunch.target.astype(np.int64)
    idx_train, idx_test = train_test_split(np.arange(len(y)), test_size=DIGITS_TEST_SIZE,
                                           stratify=y, random_state=DIGITS_SPLIT_SEED)
    idx_train.sort()
    idx_test.sort()
    return ImageData("digits", x[idx_train], y[idx_train], x[idx_test], y[idx_test],
                     [str(c) for c in range(10)])


# ---------------------------------------------------------------------- fashion_mnist
_FM_EXPECTS = ("IDX files train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, "
               "t10k-labels-idx1-ubyte (raw or .gz); install them with "
               "`apt-get install dataset-fashion-mnist` (into /usr/share/datasets/fashion-mnist) "
               "or pass data_dir")


@_register(DatasetInfo("fashion_mnist", 10, (28, 28, 1), _FM_EXPECTS, default_dir=FASHION_MNIST_DIR))
def _load_fashion_mnist(path: Path) -> ImageData:
    _require_dir("fashion_mnist", path, _FM_EXPECTS)
    parts = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        x = _reraise("fashion_mnist", read_idx, _idx_file(path, f"{prefix}-images-idx3-ubyte"))
        y = _reraise("fashion_mnist", read_idx, _idx_file(path, f"{prefix}-labels-idx1-ubyte"))
        if x.ndim != 3 or x.dtype != np.uint8 or y.ndim != 1 or len(y) != len(x):
            raise ValueError(f"fashion_mnist: {split} files in {path} hold images {x.dtype} {x.shape} and "
                             f"labels {y.dtype} {y.shape}; expected uint8 (N, H, W) and (N,)")
        parts[split] = (x[..., None], y.astype(np.int64))
    return ImageData("fashion_mnist", *parts["train"], *parts["test"], list(FASHION_MNIST_CLASSES))


def _idx_file(path: Path, stem: str) -> Path:
    for cand in (path / stem, path / f"{stem}.gz"):
        if cand.is_file():
            return cand
    raise FileNotFoundError(f"fashion_mnist: neither {path / stem} nor {path / stem}.gz exists; "
                            f"expected {_FM_EXPECTS}")


# ---------------------------------------------------------------------------- cifar
_C10_EXPECTS = ("the CIFAR-10 python version: cifar-10-batches-py/ with data_batch_1..5, test_batch, "
                "batches.meta (data_dir may be that folder or its parent)")
_C100_EXPECTS = ("the CIFAR-100 python version: cifar-100-python/ with train, test, meta "
                 "(data_dir may be that folder or its parent)")


def _cifar_batch(name: str, file: Path, label_key: str, extra_keys=()):
    batch = _reraise(name, load_numpy_pickle, file)
    missing = [k for k in ("data", label_key, *extra_keys) if k not in batch]
    if missing:
        raise ValueError(f"{name}: {file} lacks key(s) {missing}; has {sorted(batch)}")
    data = np.asarray(batch["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
        raise ValueError(f"{name}: {file} 'data' is {data.dtype} {data.shape}, expected uint8 (N, 3072)")
    labels = [np.asarray(batch[k], dtype=np.int64).reshape(-1) for k in (label_key, *extra_keys)]
    if any(len(lab) != len(data) for lab in labels):
        raise ValueError(f"{name}: {file} has {len(data)} images but {[len(lab) for lab in labels]} labels")
    # each row: 1024 R, 1024 G, 1024 B values, each channel a row-major 32 x 32 image
    images = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    files = batch.get("filenames")
    files = [str(f) for f in files] if files is not None and len(files) == len(data) else None
    return images, labels, files


def _meta_names(name: str, file: Path, key: str, count: int) -> list:
    meta = _reraise(name, load_numpy_pickle, file)
    names = meta.get(key)
    if not isinstance(names, list) or len(names) != count:
        raise ValueError(f"{name}: {file} key {key!r} must list {count} class names, got {names!r:.200}")
    return [str(n) for n in names]


def _join_files(parts):
    return None if any(p is None for p in parts) else [f for p in parts for f in p]


@_register(DatasetInfo("cifar10", 10, (32, 32, 3), _C10_EXPECTS, downloadable=True))
def _load_cifar10(path: Path) -> ImageData:
    folder = _locate("cifar10", path, "cifar-10-batches-py", "batches.meta", _C10_EXPECTS)
    train = [_cifar_batch("cifar10", folder / f"data_batch_{i}", "labels") for i in range(1, 6)]
    test_x, (test_y,), test_files = _cifar_batch("cifar10", folder / "test_batch", "labels")
    return ImageData("cifar10", np.concatenate([b[0] for b in train]),
                     np.concatenate([b[1][0] for b in train]), test_x, test_y,
                     _meta_names("cifar10", folder / "batches.meta", "label_names", 10),
                     train_files=_join_files([b[2] for b in train]), test_files=test_files)


@_register(DatasetInfo("cifar100", 100, (32, 32, 3), _C100_EXPECTS, downloadable=True))
def _load_cifar100(path: Path) -> ImageData:
    folder = _locate("cifar100", path, "cifar-100-python", "meta", _C100_EXPECTS)
    train_x, (train_y, train_c), train_files = _cifar_batch("cifar100", folder / "train", "fine_labels",
                                                            ("coarse_labels",))
    test_x, (test_y, test_c), test_files = _cifar_batch("cifar100", folder / "test", "fine_labels",
                                                        ("coarse_labels",))
    return ImageData("cifar100", train_x, train_y, test_x, test_y,
                     _meta_names("cifar100", folder / "meta", "fine_label_names", 100),
                     train_files=train_files, test_files=test_files,
                     train_coarse_y=train_c, test_coarse_y=test_c,
                     coarse_class_names=_meta_names("cifar100", folder / "meta", "coarse_label_names", 20))


# ----------------------------------------------------------------------------- svhn
_SVHN_EXPECTS = ("the SVHN cropped-digits files train_32x32.mat and test_32x32.mat "
                 "(and extra_32x32.mat with include_extra=True)")


def _read_svhn_mat(file: Path):
    """X: uint8 (32, 32, 3, N) -> (N, 32, 32, 3); y: (N, 1) values 1..10, 10 meaning digit 0."""
    from scipy.io import loadmat

    if not file.is_file():
        raise FileNotFoundError(f"svhn: file not found: {file}; expected {_SVHN_EXPECTS}")
    try:
        mat = loadmat(str(file), variable_names=["X", "y"])
    except Exception as err:  # scipy raises several types for non-MAT input
        raise ValueError(f"svhn: cannot read {file} as a MATLAB .mat file: {err}") from err
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"svhn: {file} lacks variable 'X' or 'y'")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1)
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != len(y):
        raise ValueError(f"svhn: {file} X is {x.dtype} {x.shape} with {len(y)} labels in y; "
                         f"expected uint8 X (32, 32, 3, N) and N labels")
    if len(y) and (y.min() < 0 or y.max() > 10 or np.any(y != np.rint(y))):
        raise ValueError(f"svhn: {file} labels must be integers 1..10 (10 = digit 0), "
                         f"got range [{y.min()}, {y.max()}]")
    y = y.astype(np.int64)
    y[y == 10] = 0
    return np.ascontiguousarray(x.transpose(3, 0, 1, 2)), y


@_register(DatasetInfo("svhn", 10, (32, 32, 3), _SVHN_EXPECTS, downloadable=True,
                       options=("include_extra",)))
def _load_svhn(path: Path, include_extra: bool = False) -> ImageData:
    """include_extra: append the 531,131 ``extra`` images to the training set (USB's protocol)."""
    if not isinstance(include_extra, bool):
        raise TypeError(f"svhn option include_extra must be a bool, got {include_extra!r}")
    _require_dir("svhn", path, _SVHN_EXPECTS)
    train_x, train_y = _read_svhn_mat(path / "train_32x32.mat")
    test_x, test_y = _read_svhn_mat(path / "test_32x32.mat")
    if include_extra:
        extra_x, extra_y = _read_svhn_mat(path / "extra_32x32.mat")
        train_x, train_y = np.concatenate([train_x, extra_x]), np.concatenate([train_y, extra_y])
    return ImageData("svhn", train_x, train_y, test_x, test_y, [str(c) for c in range(10)])


# ---------------------------------------------------------------------------- stl10
_STL_EXPECTS = ("the STL-10 binary version: stl10_binary/ with train_X.bin, train_y.bin, test_X.bin, "
                "test_y.bin, class_names.txt (and unlabeled_X.bin with unlabeled=True); "
                "data_dir may be that folder or its parent")


@_register(DatasetInfo("stl10", 10, (96, 96, 3), _STL_EXPECTS, downloadable=True, options=("unlabeled",)))
def _load_stl10(path: Path, unlabeled: bool = False) -> ImageData:
    """unlabeled: map ``unlabeled_X.bin`` (100,000 images, 2.7 GB) lazily as extra_unlabeled_x."""
    if not isinstance(unlabeled, bool):
        raise TypeError(f"stl10 option unlabeled must be a bool, got {unlabeled!r}")
    folder = _locate("stl10", path, "stl10_binary", "class_names.txt", _STL_EXPECTS)
    names = [ln.strip() for ln in (folder / "class_names.txt").read_text().splitlines() if ln.strip()]
    if len(names) != 10:
        raise ValueError(f"stl10: {folder / 'class_names.txt'} lists {len(names)} names, expected 10")
    parts = []
    for split in ("train", "test"):
        x = _reraise("stl10", read_stl10_images, folder / f"{split}_X.bin")
        y = _reraise("stl10", read_stl10_labels, folder / f"{split}_y.bin")
        if len(x) != len(y):
            raise ValueError(f"stl10: {folder} {split}_X.bin has {len(x)} images, {split}_y.bin {len(y)} labels")
        parts += [x, y]
    extra = _reraise("stl10", read_stl10_images, folder / "unlabeled_X.bin", mmap=True) if unlabeled else None
    return ImageData("stl10", *parts, names, extra_unlabeled_x=extra)


# ------------------------------------------------------------------ user formats
@_register(DatasetInfo("imagefolder", None, None,
                       "an image folder tree root/train/<class>/*.png|jpg and root/test/<class>/...",
                       options=("image_size", "channels")))
def _load_imagefolder(path: Path, image_size=None, channels=None) -> ImageData:
    return load_image_folder(path, image_size=image_size, channels=channels)


@_register(DatasetInfo("npz", None, None, "a .npz file with arrays train_x, train_y, test_x, test_y "
                       "(optional class_names, extra_unlabeled_x); data_dir is the file's path"))
def _load_npz(path: Path) -> ImageData:
    return load_npz(path)


DATASETS = tuple(DATASET_INFO)
