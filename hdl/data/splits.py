"""Seeded labeled / unlabeled / validation splits of a training set, with USB's semantics.

:func:`make_imbalance_counts` gives long-tailed per-class counts; :func:`make_splits` draws
index arrays into the training set; :class:`Splits` holds them and saves / loads itself.
All randomness comes from a local ``np.random.default_rng(seed)``.
"""
from __future__ import annotations

import numbers
import os
from dataclasses import dataclass
from typing import Optional

import numpy as np

__all__ = ["Splits", "make_imbalance_counts", "make_splits"]


@dataclass
class Splits:
    """Index arrays (int64, 1-D) into the training set.

    lb_idx: labeled samples, class-major (class 0's first), random order within a class.
    ulb_idx: unlabeled samples; starts with ``lb_idx`` when made with include_lb_to_ulb=True.
    val_idx: held-out validation samples (empty when num_val = 0), class-major.
    """

    lb_idx: np.ndarray
    ulb_idx: np.ndarray
    val_idx: np.ndarray

    _KEYS = ("lb_idx", "ulb_idx", "val_idx")

    def __post_init__(self):
        for key in self._KEYS:
            arr = np.asarray(getattr(self, key))
            if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
                raise ValueError(f"Splits.{key} must be a 1-D integer array, got {arr.dtype} {arr.shape}")
            setattr(self, key, arr.astype(np.int64))

    def save(self, path) -> None:
        """Write the three arrays to the ``.npz`` file ``path`` atomically (a temp file renamed
        into place: a crash never leaves half a file)."""
        import tempfile

        path = os.fspath(path)
        d = os.path.dirname(os.path.abspath(path))
        fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{k: getattr(self, k) for k in self._KEYS})
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise

    @classmethod
    def load(cls, path) -> "Splits":
        """Read a file written by :meth:`save`; ValueError if a key is missing."""
        path = os.fspath(path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                missing = [k for k in cls._KEYS if k not in npz.files]
                if missing:
                    raise ValueError(f"{path} is not a Splits file: missing keys {missing}, has {npz.files}")
                arrays = {k: npz[k] for k in cls._KEYS}
        except ValueError as err:
            if str(err).startswith(path):
                raise
            raise ValueError(f"splits file {path} is damaged or not an .npz: {err}") from None
        except Exception as err:  # zipfile / OS errors of a truncated or overwritten file
            raise ValueError(f"splits file {path} is damaged or not an .npz: {type(err).__name__}: {err}") from None
        try:
            return cls(**arrays)
        except ValueError as err:
            raise ValueError(f"splits file {path}: {err}") from None


def make_imbalance_counts(max_num: int, num_classes: int, ratio: float) -> list:
    """Long-tailed per-class counts (USB's ``make_imbalance_data``).

    With mu = (1 / |ratio|) ** (1 / (num_classes - 1)), class c < num_classes - 1 gets
    ``int(max_num * mu ** c)`` and the last class ``int(max_num / |ratio|)``. A negative
    ratio reverses the list (the head is the last class).

    Example: ``make_imbalance_counts(15, 3, 10) == [15, 4, 1]``.
    """
    _check_int(max_num, "max_num", 0)
    _check_int(num_classes, "num_classes", 2)
    ratio = _check_ratio(ratio, "ratio")
    mu = np.power(1.0 / abs(ratio), 1.0 / (num_classes - 1))
    counts = [int(max_num * np.power(mu, c)) for c in range(num_classes - 1)]
    counts.append(int(max_num / abs(ratio)))
    return counts[::-1] if ratio < 0 else counts


def make_splits(train_y, num_classes: int, num_labels: int, ulb_num_labels: Optional[int] = None,
                lb_imb_ratio: float = 1.0, ulb_imb_ratio: float = 1.0, include_lb_to_ulb: bool = True,
                num_val: int = 0, seed: int = 0, ulb_num_per_class: Optional[int] = None) -> Splits:
    """Draw labeled, unlabeled and validation indices per class.

    Order of operations, per class c (one random permutation of its samples):
    1. the first ``num_val`` samples go to validation;
    2. the next ``lb_c`` are labeled: balanced (lb_imb_ratio == 1) ``lb_c = num_labels /
       num_classes`` (num_labels is the TOTAL and must be divisible); otherwise
       ``lb_c = make_imbalance_counts(num_labels, num_classes, lb_imb_ratio)[c]``
       (num_labels is the head-class count);
    3. unlabeled: ulb_num_labels None -> all the remaining samples of c; else the next
       ``ulb_c`` samples, ulb_num_labels being the total (balanced, divisible) or the head
       count (imbalanced). ulb_num_labels is required when ulb_imb_ratio != 1.
       ``ulb_num_per_class`` instead: the next ``ulb_num_per_class`` samples of every class (the
       "uniform" unlabeled set of the ACR / CCL protocol, where USB's ``ulb_num_labels`` with
       ``ulb_imb_ratio`` 1 would be the total); it excludes ``ulb_num_labels`` and needs
       ``ulb_imb_ratio`` 1.
    With include_lb_to_ulb, ``ulb_idx = concat(lb_idx, unlabeled-only indices)``.

    Args:
        train_y: integer array (N,) of class ids in [0, num_classes).
        num_classes: number of classes C >= 1 (>= 2 for an imbalance ratio other than 1).
        num_labels: see step 2 (>= 0).
        ulb_num_labels: see step 3, or None (default).
        lb_imb_ratio, ulb_imb_ratio: head / tail ratio, |ratio| >= 1; 1.0 (default) = balanced,
            negative = reversed (the last class is the head).
        include_lb_to_ulb: also use the labeled samples as unlabeled ones (default True).
        num_val: validation samples removed first, PER CLASS (default 0).
        seed: seed of the local ``np.random.default_rng`` (default 0).
        ulb_num_per_class: see step 3, or None (default).
    Returns:
        Splits of int64 index arrays; lb, unlabeled-only and val indices are disjoint.
    Raises:
        ValueError: bad argument, a count not divisible by num_classes, or a class with
            fewer samples than asked (naming the class, the count asked and available).
    """
    _check_int(num_classes, "num_classes", 1)
    y = np.asarray(train_y)
    if y.ndim != 1 or (y.size and y.dtype.kind not in "iu"):
        raise ValueError(f"train_y must be a 1-D integer array, got {y.dtype} {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"train_y must lie in [0, {num_classes}), got range [{y.min()}, {y.max()}]")
    _check_int(num_labels, "num_labels", 0)
    if ulb_num_labels is not None:
        _check_int(ulb_num_labels, "ulb_num_labels", 0)
    lb_imb_ratio = _check_ratio(lb_imb_ratio, "lb_imb_ratio")
    ulb_imb_ratio = _check_ratio(ulb_imb_ratio, "ulb_imb_ratio")
    if not isinstance(include_lb_to_ulb, (bool, np.bool_)):
        raise TypeError(f"include_lb_to_ulb must be a bool, got {include_lb_to_ulb!r}")
    _check_int(num_val, "num_val", 0)
    _check_int(seed, "seed", 0)

    lb_counts = _per_class_counts(num_labels, num_classes, lb_imb_ratio, "num_labels", "lb_imb_ratio")
    if ulb_num_per_class is not None:
        _check_int(ulb_num_per_class, "ulb_num_per_class", 1)
        if ulb_num_labels is not None:
            raise ValueError(f"ulb_num_per_class={ulb_num_per_class} and ulb_num_labels={ulb_num_labels}: give one "
                             f"(ulb_num_per_class: unlabeled samples per class; ulb_num_labels: USB's total or head count)")
        if ulb_imb_ratio != 1.0:
            raise ValueError(f"ulb_num_per_class needs ulb_imb_ratio 1 (the same count for every class), got "
                             f"ulb_imb_ratio={ulb_imb_ratio:g}")
        ulb_counts = [ulb_num_per_class] * num_classes
    elif ulb_num_labels is None:
        if ulb_imb_ratio != 1.0:
            raise ValueError(f"ulb_num_labels (the head-class count) is required when ulb_imb_ratio != 1, "
                             f"got ulb_imb_ratio={ulb_imb_ratio} and ulb_num_labels=None")
        ulb_counts = None
    else:
        ulb_counts = _per_class_counts(ulb_num_labels, num_classes, ulb_imb_ratio,
                                       "ulb_num_labels", "ulb_imb_ratio")

    rng = np.random.default_rng(seed)
    lb, ulb, val = [], [], []
    for c in range(num_classes):
        idx = rng.permutation(np.flatnonzero(y == c))
        detail = f"{num_val} validation + {lb_counts[c]} labeled"
        if ulb_counts is None:
            ulb_c = len(idx) - num_val - lb_counts[c]
            asked = num_val + lb_counts[c]
        else:
            ulb_c = ulb_counts[c]
            asked = num_val + lb_counts[c] + ulb_c
            detail += f" + {ulb_c} unlabeled"
        if asked > len(idx):
            key = "ulb_num_per_class: " if ulb_num_per_class is not None else ""
            raise ValueError(f"{key}class {c} has {len(idx)} training samples, but {asked} are asked ({detail})")
        val.append(idx[:num_val])
        lb.append(idx[num_val:num_val + lb_counts[c]])
        ulb.append(idx[num_val + lb_counts[c]:num_val + lb_counts[c] + ulb_c])
    lb_idx, ulb_idx, val_idx = (np.concatenate(p).astype(np.int64) if p else np.zeros(0, np.int64)
                                for p in (lb, ulb, val))
    if include_lb_to_ulb:
        ulb_idx = np.concatenate([lb_idx, ulb_idx])
    return Splits(lb_idx, ulb_idx, val_idx)


def _per_class_counts(total: int, num_classes: int, ratio: float, name: str, ratio_name: str) -> list:
    if ratio == 1.0:
        if total % num_classes:
            raise ValueError(f"{name} is the total over {num_classes} classes when {ratio_name} == 1 and "
                             f"must be divisible by num_classes={num_classes}; got {name}={total}")
        return [total // num_classes] * num_classes
    if num_classes < 2:
        raise ValueError(f"{ratio_name}={ratio} needs num_classes >= 2, got {num_classes}")
    return make_imbalance_counts(total, num_classes, ratio)


def _check_int(value, name: str, low: int) -> None:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be an int >= {low}, got {value}")


def _check_ratio(value, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number with |{name}| >= 1, got {value!r}")
    value = float(value)
    if not np.isfinite(value) or abs(value) < 1.0:
        raise ValueError(f"{name} must be finite with |{name}| >= 1 (1 = balanced, negative = reversed), "
                         f"got {value}")
    return value
