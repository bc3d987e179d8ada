"""User-supplied image data: an image-folder tree (:func:`load_image_folder`) or an
``.npz`` file of arrays (:func:`load_npz`)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hdl.data.image_data import ImageData

__all__ = ["load_image_folder", "load_npz", "IMAGE_EXTENSIONS", "NPZ_REQUIRED_KEYS", "NPZ_OPTIONAL_KEYS"]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
_GREY_MODES = {"1", "L", "LA", "I", "I;16", "F"}
NPZ_REQUIRED_KEYS = ("train_x", "train_y", "test_x", "test_y")
NPZ_OPTIONAL_KEYS = ("class_names", "extra_unlabeled_x")


def load_image_folder(root, image_size=None, channels=None) -> ImageData:
    """Read ``root/train/<class>/<image>`` and ``root/test/<class>/<image>`` with PIL.

    Class names are the sorted sub-folder names of ``root/train`` (hidden names skipped);
    class id c is ``class_names[c]``. ``root/test`` may hold a subset of those classes.
    Files are the ones whose extension (any case) is in :data:`IMAGE_EXTENSIONS`, sorted
    by name; other files are ignored. ``train_files`` / ``test_files`` are the paths
    relative to ``root`` with '/' separators (e.g. ``"train/cat/001.png"``).

    Args:
        root: the folder holding ``train/`` and ``test/``.
        image_size: None (default): every image must have the same size; an int s or a
            pair (H, W): every image is resized to (s, s) or (H, W) with bilinear filtering.
        channels: None (default): 1 when every image is greyscale (PIL modes 1, L, LA, I,
            I;16, F), else 3; or 1 / 3 to force PIL ``convert("L")`` / ``convert("RGB")``
            (alpha is dropped).
    Returns:
        ImageData named ``"imagefolder"`` with uint8 images (N, H, W, channels).
    Raises:
        FileNotFoundError: missing ``root``, ``train/`` or ``test/``.
        ValueError: no classes, a train class without images, a test class unknown to
            train, an unreadable image, or (image_size None) differing sizes.
    """
    from PIL import Image, UnidentifiedImageError

    size = _check_image_size(image_size)
    if channels not in (None, 1, 3) or isinstance(channels, bool):
        raise ValueError(f"imagefolder option channels must be None, 1 or 3, got {channels!r}")
    root = Path(root)
    expects = "root/train/<class>/*.png|jpg|... and root/test/<class>/..."
    for folder in (root, root / "train", root / "test"):
        if not folder.is_dir():
            raise FileNotFoundError(f"imagefolder: folder {folder} does not exist; expected {expects}")
    class_names = _subfolders(root / "train")
    if not class_names:
        raise ValueError(f"imagefolder: {root / 'train'} has no class sub-folders; expected {expects}")
    unknown = sorted(set(_subfolders(root / "test")) - set(class_names))
    if unknown:
        raise ValueError(f"imagefolder: {root / 'test'} has class folders {unknown} that "
                         f"{root / 'train'} lacks; train classes: {class_names}")

    images, labels, files = {}, {}, {}
    for split in ("train", "test"):
        images[split], labels[split], files[split] = [], [], []
        for c, name in enumerate(class_names):
            folder = root / split / name
            paths = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
                           and p.suffix.lower() in IMAGE_EXTENSIONS) if folder.is_dir() else []
            if split == "train" and not paths:
                raise ValueError(f"imagefolder: class folder {folder} holds no image files "
                                 f"(extensions {IMAGE_EXTENSIONS})")
            for p in paths:
                try:
                    with Image.open(p) as im:
                        im.load()
                        images[split].append(im.copy())
                except (UnidentifiedImageError, OSError) as err:
                    raise ValueError(f"imagefolder: cannot read image {p}: {err}") from err
                labels[split].append(c)
                files[split].append(p.relative_to(root).as_posix())

    all_images = images["train"] + images["test"]
    if channels is None:
        channels = 1 if all(im.mode in _GREY_MODES for im in all_images) else 3
    mode = "L" if channels == 1 else "RGB"
    if size is None:
        first = images["train"][0].size
        for split in ("train", "test"):
            for im, f in zip(images[split], files[split]):
                if im.size != first:
                    raise ValueError(f"imagefolder: {f} is {im.size[1]}x{im.size[0]} (HxW) but "
                                     f"{files['train'][0]} is {first[1]}x{first[0]}; set img_size in the "
                                     f"hdl-train config (image_size for load_image_folder) to resize every image")
        size = (first[1], first[0])
    arrays = {}
    for split in ("train", "test"):
        converted = [_to_array(im, mode, size, Image.BILINEAR) for im in images[split]]
        arrays[split] = (np.stack(converted) if converted else np.zeros((0, *size, channels), np.uint8))
    return ImageData("imagefolder", arrays["train"], np.asarray(labels["train"], dtype=np.int64),
                     arrays["test"], np.asarray(labels["test"], dtype=np.int64), class_names,
                     train_files=files["train"], test_files=files["test"])


def _to_array(im, mode: str, size: tuple, resample) -> np.ndarray:
    if im.mode != mode:
        im = im.convert(mode)
    if (im.size[1], im.size[0]) != size:
        im = im.resize((size[1], size[0]), resample)
    arr = np.asarray(im, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def _subfolders(folder: Path) -> list:
    if not folder.is_dir():
        return []
    return sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _check_image_size(image_size):
    if image_size is None:
        return None
    pair = (image_size, image_size) if isinstance(image_size, (int, np.integer)) else image_size
    try:
        h, w = pair
        ok = all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in (h, w))
    except (TypeError, ValueError):
        ok = False
    if not ok or isinstance(image_size, bool):
        raise ValueError(f"imagefolder option image_size must be None, a positive int or a pair "
                         f"(H, W) of positive ints, got {image_size!r}")
    return int(h), int(w)


def load_npz(path) -> ImageData:
    """Read a user's ``.npz`` (``np.savez``) file of image arrays.

    Keys (no others are allowed):
        train_x, test_x: uint8 (N, H, W, C) or (N, H, W) (read as C = 1), same H, W, C.
        train_y, test_y: integer (N,) class ids in [0, C_classes).
        class_names (optional): 1-D str array of C_classes names; default: "0", "1", ...
            with C_classes = max label + 1 over train_y and test_y.
        extra_unlabeled_x (optional): uint8 images without labels, same (H, W, C).
    The file is read with ``allow_pickle=False`` (object arrays are refused).

    Raises:
        FileNotFoundError: no such file (a folder is refused too).
        ValueError: not an npz, missing or unknown keys, wrong dtype / shape, labels out of range.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"npz: file {path} not found; expected a .npz file with arrays "
                                f"{list(NPZ_REQUIRED_KEYS)} (optional {list(NPZ_OPTIONAL_KEYS)})")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception as err:  # zipfile / numpy errors for non-npz or object arrays
        raise ValueError(f"npz: cannot read {path} as an .npz of plain arrays: {err}") from err
    missing = [k for k in NPZ_REQUIRED_KEYS if k not in arrays]
    extra = sorted(set(arrays) - set(NPZ_REQUIRED_KEYS) - set(NPZ_OPTIONAL_KEYS))
    if missing or extra:
        raise ValueError(f"npz: {path} has keys {sorted(arrays)}; required {list(NPZ_REQUIRED_KEYS)}, "
                         f"optional {list(NPZ_OPTIONAL_KEYS)}; missing {missing}, not allowed {extra}")
    xs = {k: _npz_images(arrays[k], k, path) for k in ("train_x", "test_x", "extra_unlabeled_x") if k in arrays}
    ys = {}
    for split in ("train", "test"):
        y = arrays[f"{split}_y"]
        if y.dtype.kind not in "iu" or y.shape != (len(xs[f"{split}_x"]),):
            raise ValueError(f"npz: {path} key {split}_y must be an integer array of shape "
                             f"({len(xs[f'{split}_x'])},), got {y.dtype} {y.shape}")
        ys[split] = y.astype(np.int64)
    if "class_names" in arrays:
        names = arrays["class_names"]
        if names.dtype.kind != "U" or names.ndim != 1:
            raise ValueError(f"npz: {path} key class_names must be a 1-D str array, got {names.dtype} {names.shape}")
        class_names = [str(n) for n in names]
    else:
        top = max([int(y.max()) for y in ys.values() if y.size] + [0])
        class_names = [str(c) for c in range(top + 1)]
    for split, y in ys.items():
        if y.size and (y.min() < 0 or y.max() >= len(class_names)):
            raise ValueError(f"npz: {path} key {split}_y must lie in [0, {len(class_names)}) "
                             f"({len(class_names)} classes), got range [{y.min()}, {y.max()}]")
    return ImageData("npz", xs["train_x"], ys["train"], xs["test_x"], ys["test"], class_names,
                     extra_unlabeled_x=xs.get("extra_unlabeled_x"))


def _npz_images(x: np.ndarray, key: str, path: Path) -> np.ndarray:
    if x.dtype != np.uint8 or x.ndim not in (3, 4):
        raise ValueError(f"npz: {path} key {key} must be uint8 (N, H, W) or (N, H, W, C), got {x.dtype} "
                         f"{x.shape} (convert with np.clip(x, 0, 255).astype(np.uint8))")
    return x[..., None] if x.ndim == 3 else x
