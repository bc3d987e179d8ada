"""Seeded labeled / unlabeled / validation splits (USB semantics), hand-checked counts."""
import numpy as np
import pytest

from hdl.data import Splits, make_imbalance_counts, make_splits

Y = np.repeat(np.arange(3), 20)  # 3 classes, 20 samples each, class-sorted
Y_SHUFFLED = np.random.default_rng(5).permutation(Y)


def per_class(idx, y=Y_SHUFFLED, num_classes=3):
    return np.bincount(y[idx], minlength=num_classes).tolist()


def unlabeled_only(s: Splits, include_lb_to_ulb=True):
    if include_lb_to_ulb:
        np.testing.assert_array_equal(s.ulb_idx[:len(s.lb_idx)], s.lb_idx)
        return s.ulb_idx[len(s.lb_idx):]
    return s.ulb_idx


def test_imbalance_counts_hand_computed():
    assert make_imbalance_counts(15, 3, 10) == [15, 4, 1]       # mu = 10 ** -0.5: 15, 4.74, 1.5
    assert make_imbalance_counts(4, 3, -4) == [1, 2, 4]         # mu = 0.5, reversed
    assert make_imbalance_counts(7, 4, 1) == [7, 7, 7, 7]
    # USB's CIFAR-10-LT labeled counts (head 1500, ratio 100)
    assert make_imbalance_counts(1500, 10, 100) == [1500, 899, 539, 323, 193, 116, 69, 41, 25, 15]
    with pytest.raises(ValueError, match=r"ratio must be finite with \|ratio\| >= 1"):
        make_imbalance_counts(10, 3, 0.5)
    with pytest.raises(ValueError, match="num_classes must be an int >= 2"):
        make_imbalance_counts(10, 1, 10)


def test_balanced_counts_and_include_lb_to_ulb():
    s = make_splits(Y_SHUFFLED, 3, num_labels=6)
    assert all(a.dtype == np.int64 for a in (s.lb_idx, s.ulb_idx, s.val_idx))
    assert per_class(s.lb_idx) == [2, 2, 2] and len(s.val_idx) == 0
    assert Y_SHUFFLED[s.lb_idx].tolist() == [0, 0, 1, 1, 2, 2]  # class-major
    rest = unlabeled_only(s)
    assert per_class(rest) == [18, 18, 18]
    assert sorted(np.concatenate([s.lb_idx, rest]).tolist()) == list(range(60))  # a partition
    s2 = make_splits(Y_SHUFFLED, 3, num_labels=6, ulb_num_labels=9, include_lb_to_ulb=False)
    np.testing.assert_array_equal(s2.lb_idx, s.lb_idx)
    assert per_class(s2.ulb_idx) == [3, 3, 3] and not set(s2.ulb_idx) & set(s2.lb_idx)


def test_long_tailed_labeled_rest_unlabeled():
    s = make_splits(Y_SHUFFLED, 3, num_labels=15, lb_imb_ratio=10)
    assert per_class(s.lb_idx) == [15, 4, 1]
    assert per_class(unlabeled_only(s)) == [5, 16, 19]


def test_negative_ulb_ratio_reversed():
    s = make_splits(Y_SHUFFLED, 3, num_labels=3, ulb_num_labels=4, ulb_imb_ratio=-4, include_lb_to_ulb=False)
    assert per_class(s.lb_idx) == [1, 1, 1]
    assert per_class(s.ulb_idx) == [1, 2, 4]
    s = make_splits(Y_SHUFFLED, 3, num_labels=10, lb_imb_ratio=-10, ulb_num_labels=4, ulb_imb_ratio=4)
    assert per_class(s.lb_idx) == [1, 3, 10]
    assert per_class(unlabeled_only(s)) == [4, 2, 1]


def test_num_val_removed_first_and_disjoint():
    s = make_splits(Y_SHUFFLED, 3, num_labels=15, lb_imb_ratio=10, num_val=5)
    assert per_class(s.val_idx) == [5, 5, 5]
    assert per_class(s.lb_idx) == [15, 4, 1]
    rest = unlabeled_only(s)
    assert per_class(rest) == [0, 11, 14]
    parts = [s.val_idx, s.lb_idx, rest]
    assert sorted(np.concatenate(parts).tolist()) == list(range(60))  # disjoint, cover all
    with pytest.raises(ValueError, match=r"class 0 has 20 training samples, but 21 are asked "
                                         r"\(6 validation \+ 15 labeled\)"):
        make_splits(Y_SHUFFLED, 3, num_labels=15, lb_imb_ratio=10, num_val=6)


def test_seeded_and_global_rng_untouched():
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    a = make_splits(Y_SHUFFLED, 3, num_labels=6, seed=1)
    np.testing.assert_array_equal(np.random.get_state()[1], state)
    b = make_splits(Y_SHUFFLED, 3, num_labels=6, seed=1)
    c = make_splits(Y_SHUFFLED, 3, num_labels=6, seed=2)
    for key in ("lb_idx", "ulb_idx", "val_idx"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert not np.array_equal(a.lb_idx, c.lb_idx)
    firsts = np.concatenate([np.flatnonzero(Y_SHUFFLED == k)[:2] for k in range(3)])
    assert not np.array_equal(np.sort(a.lb_idx), np.sort(firsts))  # drawn, not the first ones


def test_save_load_round_trip(tmp_path):
    s = make_splits(Y_SHUFFLED, 3, num_labels=6, num_val=2, seed=3)
    s.save(tmp_path / "splits.npz")
    t = Splits.load(tmp_path / "splits.npz")
    for key in ("lb_idx", "ulb_idx", "val_idx"):
        np.testing.assert_array_equal(getattr(t, key), getattr(s, key))
        assert getattr(t, key).dtype == np.int64
    np.savez(tmp_path / "other.npz", lb_idx=s.lb_idx)
    with pytest.raises(ValueError, match=r"not a Splits file: missing keys \['ulb_idx', 'val_idx'\]"):
        Splits.load(tmp_path / "other.npz")


def test_errors():
    with pytest.raises(ValueError, match=r"num_labels .* must be divisible by num_classes=3; got num_labels=7"):
        make_splits(Y, 3, num_labels=7)
    with pytest.raises(ValueError, match=r"ulb_num_labels .* divisible by num_classes=3; got ulb_num_labels=10"):
        make_splits(Y, 3, num_labels=3, ulb_num_labels=10)
    y = np.array([0] * 5 + [1] * 5 + [2] * 3)
    with pytest.raises(ValueError, match=r"class 2 has 3 training samples, but 4 are asked \(0 validation \+ 4 labeled\)"):
        make_splits(y, 3, num_labels=12)
    with pytest.raises(ValueError, match=r"class 2 has 3 training samples, but 4 are asked "
                                         r"\(0 validation \+ 1 labeled \+ 3 unlabeled\)"):
        make_splits(y, 3, num_labels=3, ulb_num_labels=9)
    with pytest.raises(ValueError, match="ulb_num_labels .* is required when ulb_imb_ratio != 1"):
        make_splits(Y, 3, num_labels=3, ulb_imb_ratio=10)
    with pytest.raises(ValueError, match=r"train_y must lie in \[0, 2\)"):
        make_splits(Y, 2, num_labels=2)
    with pytest.raises(ValueError, match="train_y must be a 1-D integer array"):
        make_splits(Y.astype(float), 3, num_labels=3)
    with pytest.raises(TypeError, match="seed must be an int >= 0"):
        make_splits(Y, 3, num_labels=3, seed=1.5)
    with pytest.raises(ValueError, match=r"lb_imb_ratio must be finite with \|lb_imb_ratio\| >= 1"):
        make_splits(Y, 3, num_labels=3, lb_imb_ratio=0.0)


def test_ulb_num_per_class_draws_the_same_count_of_every_class():
    """The ACR / CCL 'uniform' protocol: ulb_num_per_class unlabeled samples of every class,
    whatever the labeled imbalance; after the labeled ones of the same class permutation."""
    y = np.repeat(np.arange(3), 20)
    s = make_splits(y, 3, num_labels=10, lb_imb_ratio=10, ulb_num_per_class=7, include_lb_to_ulb=False, seed=3)
    assert np.bincount(y[s.lb_idx], minlength=3).tolist() == [10, 3, 1]
    assert np.bincount(y[s.ulb_idx], minlength=3).tolist() == [7, 7, 7]
    assert not set(s.lb_idx) & set(s.ulb_idx)
    # the same draw as USB's total count where that is divisible (7 per class = 21 in total)
    t = make_splits(y, 3, num_labels=10, lb_imb_ratio=10, ulb_num_labels=21, include_lb_to_ulb=False, seed=3)
    assert np.array_equal(s.ulb_idx, t.ulb_idx)
    with pytest.raises(ValueError, match=r"ulb_num_per_class: class 0 has 20 training samples, but 25 are asked "
                                         r"\(0 validation \+ 10 labeled \+ 15 unlabeled\)"):
        make_splits(y, 3, num_labels=10, lb_imb_ratio=10, ulb_num_per_class=15)
    with pytest.raises(ValueError, match="ulb_num_per_class=7 and ulb_num_labels=21: give one"):
        make_splits(y, 3, num_labels=3, ulb_num_labels=21, ulb_num_per_class=7)
    with pytest.raises(ValueError, match="ulb_num_per_class needs ulb_imb_ratio 1"):
        make_splits(y, 3, num_labels=3, ulb_imb_ratio=2, ulb_num_per_class=7)
