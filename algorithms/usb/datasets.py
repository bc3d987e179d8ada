"""Build USB dataset objects (``BasicDataset`` and USB's transforms) from the project's loaders.

USB's ``get_dataset`` only knows its own names and downloads with checksums; its
``split_ssl_data`` draws from the global numpy generator and writes index files into its install
folder.  Here the images come from :mod:`hdl.data`, the seeded splits from
:func:`hdl.data.splits.make_splits` (saved in the run directory and reused on resume), and the
result is USB's dataset dict: ``train_lb``, ``train_ulb``, ``eval`` (the validation split, or the
test set when ``num_val`` is 0, as in USB) and ``test``.

Every dataset is built with the *base* algorithm's name, which decides the views an unlabeled
item returns (MixMatch: two weak views; ReMixMatch: strong views and a rotation).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np
from PIL import Image
from torchvision import transforms

from semilearn.datasets.augmentation import RandAugment
from semilearn.datasets.cv_datasets.datasetbase import BasicDataset

from hdl.data import load_dataset
from hdl.data.splits import Splits, make_splits

from .settings import RunSettings

log = logging.getLogger("hdl")

# data sets whose classes change meaning under a horizontal flip
NO_FLIP = {"digits", "svhn"}


class ToRGB:
    """PIL image -> RGB (USB's RandAugment needs three channels)."""

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.convert("RGB")


class ToGrey:
    """PIL image -> single channel."""

    def __call__(self, img: Image.Image) -> Image.Image:
        return img.convert("L")


@dataclass
class SplitInfo:
    """Global training-set indices of each split and the true labels, for diagnostics.

    ``lb_idx``/``ulb_idx``: int64 indices into the training images, in dataset order (item i of
    ``train_ulb`` is training image ``ulb_idx[i]``; STL-10's extra unlabeled images get indices
    from ``num_train`` on and true label -1).  ``train_y``: true labels of every training image.
    """

    splits: Splits
    lb_idx: np.ndarray
    ulb_idx: np.ndarray
    train_y: np.ndarray
    class_names: list
    image_shape: Tuple[int, int, int]
    num_val_flag: bool
    embed_idx: np.ndarray
    train_files: Optional[list] = None  # file name per training image, where the format has them


def make_transforms(size: int, crop_ratio: float, mean, std, flip: bool, grey: bool):
    """USB's CIFAR-style weak, strong and evaluation transforms for ``size`` x ``size`` images."""
    pad = int(size * (1 - crop_ratio))
    base = [transforms.Resize((size, size))]
    crop = [transforms.RandomCrop(size, padding=pad, padding_mode="reflect")] if pad > 0 else []
    flip_t = [transforms.RandomHorizontalFlip()] if flip else []
    tail = [transforms.ToTensor(), transforms.Normalize(mean, std)]
    weak = transforms.Compose(base + crop + flip_t + tail)
    strong_aug = ([ToRGB()] if grey else []) + [RandAugment(3, 5)] + ([ToGrey()] if grey else [])
    strong = transforms.Compose(base + crop + flip_t + strong_aug + tail)
    val = transforms.Compose(base + tail)
    return weak, strong, val


def channel_stats(x: np.ndarray, chunk: int = 4096) -> Tuple[tuple, tuple]:
    """Per-channel mean and std (floor 1e-3) of uint8 images (N, H, W, C), scaled to [0, 1].

    Accumulated over chunks of images, so no float copy of the whole set is made.
    """
    c = x.shape[-1]
    total = np.zeros(c)
    total_sq = np.zeros(c)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].reshape(-1, c).astype(np.float64)
        total += part.sum(axis=0)
        total_sq += np.square(part).sum(axis=0)
    n = x.size // c
    mean = total / n
    std = np.sqrt(np.maximum(total_sq / n - mean ** 2, 0.0))
    return tuple((mean / 255.0).tolist()), tuple(np.maximum(std / 255.0, 1e-3).tolist())


def _pil_array(x: np.ndarray) -> np.ndarray:
    """(N, H, W, C) uint8 -> what ``Image.fromarray`` takes: (N, H, W) for grey."""
    return x[..., 0] if x.shape[-1] == 1 else x


def load_or_make_splits(settings: RunSettings, train_y: np.ndarray, num_classes: int) -> Splits:
    path = os.path.join(settings.run_dir, "splits.npz")
    if settings.resume and os.path.exists(path):
        splits = Splits.load(path)
        n = len(train_y)
        for key in Splits._KEYS:
            idx = getattr(splits, key)
            if idx.size and (idx.min() < 0 or idx.max() >= n):
                raise ValueError(f"splits file {path}: {key} holds indices in [{idx.min()}, {idx.max()}] but data set "
                                 f"{settings.dataset!r} has {n} training images (was the data changed?)")
        log.info("reusing the splits saved in %s", path)
        return splits
    splits = make_splits(
        train_y,
        num_classes,
        num_labels=settings.num_labels,
        ulb_num_labels=settings.ulb_num_labels,
        lb_imb_ratio=settings.lb_imb_ratio,
        ulb_imb_ratio=settings.ulb_imb_ratio,
        include_lb_to_ulb=settings.include_lb_to_ulb,
        num_val=settings.num_val,
        seed=settings.seed,
        ulb_num_per_class=settings.ulb_num_per_class,
    )
    os.makedirs(settings.run_dir, exist_ok=True)
    splits.save(path)
    return splits


def build_dataset_dict(settings: RunSettings, base_name: str, num_classes: int) -> Tuple[Dict[str, BasicDataset], SplitInfo]:
    """Load ``settings.dataset``, split it and wrap each part in USB's ``BasicDataset``."""
    options = {}
    if settings.dataset == "imagefolder" and settings.img_size:
        options["image_size"] = settings.img_size  # images of any sizes are resized to img_size on load
    data = load_dataset(settings.dataset, settings.data_dir, download=settings.download, **options)
    if data.num_classes != num_classes:
        raise ValueError(
            f"num_classes: dataset {settings.dataset!r} has {data.num_classes} classes, config says {num_classes}"
        )
    splits = load_or_make_splits(settings, data.train_y, num_classes)
    h, w, c = data.image_shape
    size = settings.img_size or h
    mean, std = channel_stats(data.train_x)
    weak, strong, val = make_transforms(size, settings.crop_ratio, mean, std, settings.dataset not in NO_FLIP, c == 1)

    train_x = _pil_array(data.train_x)
    lb_idx, ulb_idx = splits.lb_idx, splits.ulb_idx
    ulb_x, ulb_y = train_x[ulb_idx], data.train_y[ulb_idx]
    if data.extra_unlabeled_x is not None:
        extra = _pil_array(np.asarray(data.extra_unlabeled_x))
        ulb_x = np.concatenate([ulb_x, extra])
        ulb_y = np.concatenate([ulb_y, -np.ones(len(extra), np.int64)])
        ulb_idx = np.concatenate([ulb_idx, len(train_x) + np.arange(len(extra))])

    lb = BasicDataset(base_name, train_x[lb_idx], data.train_y[lb_idx], num_classes, weak, False, None, False)
    ulb = BasicDataset(base_name, ulb_x, ulb_y, num_classes, weak, True, strong, False)
    test = BasicDataset(base_name, _pil_array(data.test_x), data.test_y, num_classes, val, False, None, False)
    if len(splits.val_idx) > 0:
        ev = BasicDataset(base_name, train_x[splits.val_idx], data.train_y[splits.val_idx], num_classes, val, False, None, False)
    else:
        ev = test
    embed_idx = np.unique(np.concatenate([splits.lb_idx, splits.ulb_idx]))
    # every training image of the run, evaluation transform: for re-embedding passes
    embed = BasicDataset(base_name, train_x[embed_idx], data.train_y[embed_idx], num_classes, val, False, None, False)
    info = SplitInfo(splits, lb_idx, ulb_idx, data.train_y, list(data.class_names), (size, size, c),
                     len(splits.val_idx) == 0, embed_idx, data.train_files)
    return {"train_lb": lb, "train_ulb": ulb, "eval": ev, "test": test, "embed": embed}, info
