"""The in-memory image data set returned by every loader: :class:`ImageData`."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

__all__ = ["ImageData"]


@dataclass
class ImageData:
    """A labelled train/test image set held as numpy arrays.

    Attributes:
        name: the data set's name (a key of ``hdl.data.DATASETS``, or a user label).
        train_x: uint8 array (N_train, H, W, C); grey images have C = 1.
        train_y: int64 array (N_train,), class ids in [0, num_classes).
        test_x: uint8 array (N_test, H, W, C), same H, W, C as ``train_x``.
        test_y: int64 array (N_test,), class ids in [0, num_classes).
        class_names: list of num_classes str; ``class_names[c]`` names class id c.
        train_files / test_files: list of str (one per image) or None when the format
            stores no file names.
        extra_unlabeled_x: uint8 array (N_extra, H, W, C) of images without labels
            (e.g. the STL-10 unlabeled split, possibly a lazy ``np.memmap`` view), or None.
        train_coarse_y / test_coarse_y: int64 arrays of coarse (superclass) ids, same
            lengths as ``train_y`` / ``test_y``, or None (CIFAR-100 has them).
        coarse_class_names: names of the coarse classes, or None.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    class_names: list
    train_files: Optional[list] = None
    test_files: Optional[list] = None
    extra_unlabeled_x: Optional[np.ndarray] = None
    train_coarse_y: Optional[np.ndarray] = None
    test_coarse_y: Optional[np.ndarray] = None
    coarse_class_names: Optional[list] = field(default=None)

    @property
    def num_classes(self) -> int:
        """Number of (fine) classes, ``len(class_names)``."""
        return len(self.class_names)

    @property
    def image_shape(self) -> tuple:
        """(H, W, C) of every image."""
        return tuple(int(s) for s in self.train_x.shape[1:])

    def validate(self) -> "ImageData":
        """Check dtypes, shapes and label ranges; raise ValueError naming the field.

        Only labels are scanned (min/max); image arrays are checked by dtype and
        shape only, so a lazy ``extra_unlabeled_x`` memmap is not read. Returns self.
        """
        where = f"data set {self.name!r}"
        if not isinstance(self.class_names, list) or not all(isinstance(c, str) for c in self.class_names):
            raise ValueError(f"{where}: class_names must be a list of str, got {self.class_names!r:.200}")
        if len(self.class_names) == 0:
            raise ValueError(f"{where}: class_names is empty")
        image_shape = None
        for split in ("train", "test"):
            x, y = getattr(self, f"{split}_x"), getattr(self, f"{split}_y")
            image_shape = _check_images(x, f"{where}: {split}_x", image_shape)
            _check_labels(y, x.shape[0], self.num_classes, f"{where}: {split}_y")
            files = getattr(self, f"{split}_files")
            if files is not None and len(files) != x.shape[0]:
                raise ValueError(f"{where}: {split}_files has {len(files)} entries, expected {x.shape[0]}")
        if self.extra_unlabeled_x is not None:
            _check_images(self.extra_unlabeled_x, f"{where}: extra_unlabeled_x", image_shape)
        coarse = (self.train_coarse_y, self.test_coarse_y, self.coarse_class_names)
        if any(c is not None for c in coarse):
            if any(c is None for c in coarse):
                raise ValueError(f"{where}: train_coarse_y, test_coarse_y and coarse_class_names "
                                 "must be all set or all None")
            num_coarse = len(self.coarse_class_names)
            _check_labels(self.train_coarse_y, self.train_x.shape[0], num_coarse, f"{where}: train_coarse_y")
            _check_labels(self.test_coarse_y, self.test_x.shape[0], num_coarse, f"{where}: test_coarse_y")
        return self


def _check_images(x, what: str, image_shape):
    if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 4:
        desc = f"{type(x).__name__} {getattr(x, 'dtype', '')} shape {getattr(x, 'shape', '')}"
        raise ValueError(f"{what} must be a uint8 array (N, H, W, C), got {desc}")
    if image_shape is not None and x.shape[1:] != image_shape:
        raise ValueError(f"{what} has image shape {x.shape[1:]}, expected {image_shape} (as train_x)")
    return x.shape[1:]


def _check_labels(y, n: int, num_classes: int, what: str):
    if not isinstance(y, np.ndarray) or y.dtype != np.int64 or y.shape != (n,):
        desc = f"{type(y).__name__} {getattr(y, 'dtype', '')} shape {getattr(y, 'shape', '')}"
        raise ValueError(f"{what} must be an int64 array of shape ({n},), got {desc}")
    if n and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"{what} must lie in [0, {num_classes}), got range [{y.min()}, {y.max()}]")
