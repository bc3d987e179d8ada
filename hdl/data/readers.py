"""Low-level readers of published binary image formats (numpy only).

* IDX (MNIST / Fashion-MNIST): :func:`read_idx`, raw or gzip-compressed.
* Python pickles of numpy arrays (CIFAR-10/100 batches): :func:`load_numpy_pickle`, with an
  unpickler that only builds plain containers and numpy arrays.
* STL-10 binary files: :func:`read_stl10_images`, :func:`read_stl10_labels`.

Readers raise ValueError (wrong format) or FileNotFoundError naming the file and what was
expected; the data-set loaders in :mod:`hdl.data.formats` add the data set's name.
"""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

__all__ = ["read_idx", "load_numpy_pickle", "read_stl10_images", "read_stl10_labels",
           "STL10_IMAGE_SHAPE"]

# IDX type byte -> big-endian numpy dtype (the IDX file format specification).
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

STL10_IMAGE_SHAPE = (96, 96, 3)


def read_idx(path) -> np.ndarray:
    """Read one IDX file (``.gz`` compressed when the name ends in ``.gz``).

    Layout: two zero bytes, a type byte (0x08 = uint8, ...), a byte with the number of
    dimensions d, d big-endian uint32 sizes, then the values in C order.

    Returns:
        array of the stored shape in native byte order (uint8 for image and label files).
    Raises:
        FileNotFoundError: no such file.
        ValueError: bad magic number, unknown type byte, or a size that does not match
            the header.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"IDX file not found: {path}")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as err:  # gzip.BadGzipFile is an OSError
        raise ValueError(f"cannot read IDX file {path}: {err}") from err
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file: magic bytes {raw[:4].hex() or '(empty)'}, expected "
                         f"00 00 <type in {sorted(hex(t) for t in _IDX_DTYPES)}> <ndim>")
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX file {path} is truncated inside its header ({len(raw)} bytes)")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"IDX file {path}: header says shape {shape} of {dtype.name} ({expected} bytes "
                         f"in all), but the file has {len(raw)} bytes")
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals numpy arrays need (no arbitrary code)."""

    _ALLOWED = {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
                ("numpy._core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "scalar"),
                ("numpy.core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "scalar")}

    def find_class(self, module, name):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a data pickle")
        if module.startswith("numpy.core.") and int(np.__version__.split(".")[0]) >= 2:
            module = "numpy._core." + module[len("numpy.core."):]
        return super().find_class(module, name)


def load_numpy_pickle(path) -> dict:
    """Load a pickled dict of lists / numpy arrays (the CIFAR python format).

    Python-2 pickles are read with ``encoding="latin1"``. Keys and the str items of
    list values that come back as bytes are decoded to str, so both Python-2 and
    Python-3 pickles give str keys.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a pickle, not a dict, or it references anything but numpy arrays.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pickle file not found: {path}")
    try:
        with open(path, "rb") as f:
            obj = _NumpyOnlyUnpickler(f, encoding="latin1").load()
    except Exception as err:  # any unpickling failure means "not this format"
        raise ValueError(f"cannot read {path} as a pickled dict of numpy arrays: {err}") from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a pickled {type(obj).__name__}, expected a dict")
    return {_to_str(k): ([_to_str(v) for v in val] if isinstance(val, list) else val)
            for k, val in obj.items()}


def _to_str(v):
    return v.decode("latin1") if isinstance(v, bytes) else v


def read_stl10_images(path, mmap: bool = False) -> np.ndarray:
    """Read an STL-10 image file (``train_X.bin``, ``test_X.bin``, ``unlabeled_X.bin``).

    Published layout: uint8, 96 * 96 * 3 bytes per image, one channel after the other
    (R, G, B), each channel stored column-major (byte ``c * 9216 + col * 96 + row``).

    Args:
        path: the ``.bin`` file.
        mmap: map the file instead of reading it; the result is then a lazy view.
    Returns:
        uint8 array (N, 96, 96, 3) indexed [image, row, column, channel].
    Raises:
        FileNotFoundError, or ValueError when the size is not a multiple of 27,648 bytes.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"STL-10 image file not found: {path}")
    per_image = int(np.prod(STL10_IMAGE_SHAPE))
    size = path.stat().st_size
    if size % per_image:
        raise ValueError(f"STL-10 image file {path} has {size} bytes, not a multiple of "
                         f"{per_image} (96 x 96 x 3 uint8 per image)")
    if mmap and size:
        raw = np.memmap(path, dtype=np.uint8, mode="r")
    else:
        raw = np.fromfile(path, dtype=np.uint8)
    # [n, channel, col, row] -> [n, row, col, channel]
    images = raw.reshape(-1, 3, 96, 96).transpose(0, 3, 2, 1)
    return images if mmap else np.ascontiguousarray(images)


def read_stl10_labels(path, num_classes: int = 10) -> np.ndarray:
    """Read an STL-10 label file (uint8, one byte per image, values 1..num_classes).

    Returns:
        int64 array (N,) of class ids 0..num_classes-1 (the file's value minus one).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"STL-10 label file not found: {path}")
    y = np.fromfile(path, dtype=np.uint8).astype(np.int64)
    if y.size and (y.min() < 1 or y.max() > num_classes):
        raise ValueError(f"STL-10 label file {path} has values in [{y.min()}, {y.max()}], "
                         f"expected 1..{num_classes}")
    return y - 1
