"""Floors a semi-supervised result must clear, on the same split: logistic regression on the
labeled images alone, and scikit-learn's ``LabelSpreading(kernel='knn')`` on raw pixels of the
labeled and unlabeled images.  Both are scored on the test set (accuracy in [0, 1])."""
from __future__ import annotations

from typing import Dict

import numpy as np


def pixel_floors(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray,
                 lb_idx: np.ndarray, ulb_idx: np.ndarray, k: int = 10, max_unlabeled: int = 10000,
                 seed: int = 0) -> Dict[str, float]:
    """Test accuracy of the two floors.

    train_x/test_x: uint8 (N, H, W, C) images; lb_idx/ulb_idx: int indices into the training set
    (labeled samples inside ``ulb_idx`` are dropped from it).  At most ``max_unlabeled`` unlabeled
    images (drawn with ``seed``) enter LabelSpreading, which is quadratic in memory.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.semi_supervised import LabelSpreading

    lb_idx = np.asarray(lb_idx, dtype=np.int64)
    ulb_idx = np.setdiff1d(np.asarray(ulb_idx, dtype=np.int64), lb_idx)
    if len(lb_idx) == 0:
        raise ValueError("lb_idx is empty: the floors need labeled samples")
    x = train_x.reshape(len(train_x), -1).astype(np.float32) / 255.0
    xt = test_x.reshape(len(test_x), -1).astype(np.float32) / 255.0
    lr = LogisticRegression(max_iter=2000).fit(x[lb_idx], train_y[lb_idx])
    acc_lr = float((lr.predict(xt) == test_y).mean())
    rng = np.random.default_rng(seed)
    if len(ulb_idx) > max_unlabeled:
        ulb_idx = rng.choice(ulb_idx, max_unlabeled, replace=False)
    idx = np.concatenate([lb_idx, ulb_idx])
    y = np.concatenate([train_y[lb_idx], -np.ones(len(ulb_idx), np.int64)])
    ls = LabelSpreading(kernel="knn", n_neighbors=k, max_iter=100).fit(x[idx], y)
    acc_ls = float((ls.predict(xt) == test_y).mean())
    return {"logreg": acc_lr, "labelspreading": acc_ls}
