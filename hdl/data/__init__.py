"""Image data sets as numpy arrays and seeded semi-supervised splits.

``load_dataset(name, data_dir)`` -> :class:`ImageData` (uint8 (N, H, W, C) images, int64
labels, class names); ``make_splits(train_y, ...)`` -> :class:`Splits` (labeled, unlabeled
and validation index arrays into the training set).
"""
from hdl.data.formats import DATASET_INFO, DATASETS, DatasetInfo, load_dataset
from hdl.data.image_data import ImageData
from hdl.data.splits import Splits, make_imbalance_counts, make_splits
from hdl.data.user_formats import load_image_folder, load_npz

__all__ = ["DATASET_INFO", "DATASETS", "DatasetInfo", "ImageData", "Splits", "load_dataset",
           "load_image_folder", "load_npz", "make_imbalance_counts", "make_splits"]
