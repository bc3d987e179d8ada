import csv
import inspect
import math
import re
from pathlib import Path

import numpy as np
import pytest
import sklearn
import torch
from sklearn.base import clone
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.fixes import parse_version

from hdl.estimator import GRAPH_OPTION_TABLE, HierarchicalDynamicLabeling
import hdl.refresh
from hdl.labeling import DEFAULT_OPTIONS, OPTION_TABLE, hdl_label, knn_vote
from hdl.relabel_cli import main as relabel_main
from hdl.relabel import relabel

HDL = HierarchicalDynamicLabeling

# scikit-learn's checks that do not apply to a classifier whose y marks unlabeled samples with -1.
# Besides these, scikit-learn itself skips check_array_api_input (unless SCIPY_ARRAY_API=1; the
# estimator takes numpy) and the pandas part of check_classifier_data_not_an_array when pandas is
# not installed.
EXPECTED_FAILED_CHECKS = {
    "check_classifiers_classes": (
        "its binary problem names the classes -1 and 1, and -1 is the unlabeled marker (as for "
        "LabelSpreading and SelfTrainingClassifier, which scikit-learn's check special-cases by name)"),
}
SKLEARN_HAS_EXPECTED_FAILED = parse_version(sklearn.__version__) >= parse_version("1.6")


def blobs(seed=0, n_per=40, noise=1.5, n_labeled=3):
    """Three overlapping 3-d blobs (HDL makes mistakes and needs several rounds), n_labeled
    given labels per class."""
    rng = np.random.default_rng(seed)
    centers = np.array([[4, 0, 0], [0, 4, 0], [0, 0, 4]], dtype=np.float32)
    truth = np.repeat(np.arange(3), n_per)
    x = centers[truth] + rng.normal(0, noise, (truth.size, 3)).astype(np.float32)
    labels = np.full_like(truth, -1)
    given = np.concatenate([np.arange(c * n_per, c * n_per + n_labeled) for c in range(3)])
    labels[given] = truth[given]
    return x, labels, truth


# ---------------------------------------------------------------- scikit-learn's own checks
if SKLEARN_HAS_EXPECTED_FAILED:
    from sklearn.utils.estimator_checks import parametrize_with_checks

    @parametrize_with_checks([HDL()], expected_failed_checks=lambda est: EXPECTED_FAILED_CHECKS)
    def test_sklearn_checks(estimator, check):
        check(estimator)
else:
    @pytest.mark.skip(reason=f"scikit-learn {sklearn.__version__} < 1.6 has no expected_failed_checks")
    def test_sklearn_checks():
        pass


# ---------------------------------------------------------------- one source of parameters
def test_parameters_are_the_labelers_option_table():
    params = HDL().get_params()
    assert set(params) == set(OPTION_TABLE) | set(GRAPH_OPTION_TABLE)
    assert {n: params[n] for n in OPTION_TABLE} == DEFAULT_OPTIONS
    # the labeler's table, its defaults and hdl_label's keyword options are the same set
    label_kw = {n for n, p in inspect.signature(hdl_label).parameters.items()
                if p.default is not inspect.Parameter.empty and n not in ("feats", "diffusion", "quota_weights", "affinity", "lists")}
    # (diffusion, quota_weights, affinity, lists: a precomputed posterior, class weights, diffusion
    # affinity and reversed neighbour lists that hdl_label and its held-out k choice pass themselves)
    assert set(OPTION_TABLE) == set(DEFAULT_OPTIONS) == label_kw
    # the graph options are relabel()'s own keyword options (num_classes comes from classes_)
    rel = inspect.signature(relabel).parameters
    rel_kw = {n for n, p in rel.items() if p.kind == p.KEYWORD_ONLY} - {"num_classes"}
    assert set(GRAPH_OPTION_TABLE) == rel_kw
    assert all(params[n] == rel[n].default for n in rel_kw)


def test_every_parameter_reaches_the_labeler(monkeypatch):
    seen = {}
    real = hdl.refresh.hdl_label  # the estimator labels through the one refresh path

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(hdl.refresh, "hdl_label", spy)
    x, y, _ = blobs()
    HDL(k=4, k_max=8, class_quota=0.5, weighting="uniform", backend="torch").fit(x, y)
    expected = {**DEFAULT_OPTIONS, "k": 4, "class_quota": 0.5, "weighting": "uniform"}
    assert {n: seen[n] for n in OPTION_TABLE} == expected
    assert seen["feats"].shape == x.shape


class Bad:
    def __repr__(self):
        return "<bad value>"


@pytest.mark.parametrize("name", sorted(set(OPTION_TABLE) | set(GRAPH_OPTION_TABLE)))
def test_errors_name_the_parameter_allowed_values_and_value(name):
    x, y, _ = blobs()
    allowed = {**{n: o.allowed for n, o in OPTION_TABLE.items()},
               **{n: a for n, (_, a) in GRAPH_OPTION_TABLE.items()}}[name]
    with pytest.raises(ValueError, match=re.escape(f"'{name}' must be {allowed}, got <bad value>")):
        HDL(**{name: Bad()}).fit(x, y)


def test_other_errors():
    x, y, _ = blobs()
    with pytest.raises(ValueError, match=r"'k' must be 'adaptive' or an int <= k_max=10, got 20"):
        HDL(k=20, k_max=10).fit(x, y)
    with pytest.raises(ValueError, match="no labeled sample"):
        HDL().fit(x, np.full(y.shape, -1))
    with pytest.raises(TypeError, match="unknown parameter"):
        HDL(alpha=0.2)
    with pytest.raises(ValueError, match="alpha"):
        HDL().set_params(alpha=0.2)
    with pytest.raises(ValueError, match="object array"):
        HDL().fit(x, np.where(y >= 0, y.astype(str), "-1"))
    model = HDL(backend="torch").fit(x, y)
    with pytest.raises(ValueError, match="3 features"):
        model.predict(x[:, :2])


# ---------------------------------------------------------------- same labels as hdl-relabel
OPTION_SETS = [
    {},
    {"k": 5, "k_max": 10, "min_agreement": 0.95, "backend": "torch"},  # leaves 3 samples unlabeled
    {"k": 5, "k_max": 10, "fallback": "prototype", "weighting": "uniform", "class_quota": None},
    {"k_max": 20, "min_agreement": 0.8, "class_prior": "uniform", "backend": "torch"},
]


def cli_args(options):
    argv = []
    for name, value in options.items():
        if name == "class_quota" and value is None:
            value = 0  # the command's way to disable the quota
        argv += ["--" + name.replace("_", "-"), str(value)]
    return argv


@pytest.mark.parametrize("options", OPTION_SETS, ids=lambda o: ",".join(o) or "defaults")
def test_same_labels_as_relabel_and_the_command(options, tmp_path):
    x, y, truth = blobs()
    model = HDL(**options).fit(x, y)
    res = relabel(x, y, **options)
    np.testing.assert_array_equal(model.transduction_, res.labels)
    np.testing.assert_array_equal(model.labeled_iter_, res.level)
    np.testing.assert_array_equal(model.agreement_, res.agreement)
    assert (model.chosen_k_, model.n_iter_) == (res.chosen_k, res.rounds)
    assert model.n_iter_ >= 2 and 0.6 < (model.transduction_ == truth).mean() < 1.0  # a real job

    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "y.npy", y)
    out = tmp_path / "out.csv"
    assert relabel_main(["--embeddings", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.npy"),
                         "--out", str(out)] + cli_args(options)) == 0
    rows = list(csv.DictReader(open(out)))
    assert [int(r["label"]) for r in rows] == model.transduction_.tolist()
    assert [int(r["level"]) for r in rows] == model.labeled_iter_.tolist()


def test_unreached_samples_keep_the_marker():
    x, y, _ = blobs()
    model = HDL(max_rounds=1, backend="torch").fit(x, y)
    left = model.labeled_iter_ == -1
    assert left.any() and (model.transduction_[left] == -1).all()
    assert (model.agreement_[left] == 0).all()
    np.testing.assert_allclose(model.label_distributions_.sum(axis=1), 1.0, rtol=1e-6)


# ---------------------------------------------------------------- labels of any type
def test_string_labels_through_classes_():
    x, y, _ = blobs()
    names = np.array(["cat", "dog", "eel"], dtype=object)
    ys = np.where(y >= 0, names[y.clip(min=0)], -1).astype(object)
    ints = HDL(k=5, k_max=10, backend="torch").fit(x, y)
    strs = HDL(k=5, k_max=10, backend="torch").fit(x, ys)
    assert strs.classes_.tolist() == ["cat", "dog", "eel"]
    expected = np.where(ints.transduction_ >= 0, names[ints.transduction_.clip(min=0)], -1)
    assert strs.transduction_.dtype == object and strs.transduction_.tolist() == expected.tolist()
    np.testing.assert_array_equal(strs.label_distributions_, ints.label_distributions_)
    assert strs.predict(x[:5]).tolist() == names[ints.predict(x[:5])].tolist()
    # a string array (no unlabeled sample possible): plain supervised fit
    full = HDL(backend="torch").fit(x, np.array(["a", "b", "c"])[np.repeat(np.arange(3), 40)])
    assert full.transduction_.dtype.kind == "U" and full.n_iter_ == 0


# ---------------------------------------------------------------- predict, by hand
def test_predict_proba_by_hand():
    # train: A=(1,0) class 0, B=(.8,.6) class 0, C=(0,1) class 1; all labeled: nothing to label
    X = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    y = np.array([0, 0, 1])
    model = HDL(k=2, k_max=2, backend="torch").fit(X, y)
    assert model.transduction_.tolist() == [0, 0, 1] and model.labeled_iter_.tolist() == [0, 0, 0]
    assert model.n_iter_ == 0 and model.chosen_k_ == 2
    # q=(.6,.8): cosine with A .6, B .96, C .8 -> the 2 nearest: B (class 0) .96, C (class 1) .8
    # q=(-1,0): A -1, B -.8, C 0 -> C and B, both weigh max(sim, 0) = 0 -> counted 1 each
    q = np.array([[0.6, 0.8], [-1.0, 0.0]])
    np.testing.assert_allclose(model.predict_proba(q), [[0.96 / 1.76, 0.8 / 1.76], [0.5, 0.5]], rtol=1e-5)
    assert model.predict(q).tolist() == [0, 0]  # the tie goes to the first class
    uniform = HDL(k=2, k_max=2, weighting="uniform", backend="torch").fit(X, y)
    np.testing.assert_allclose(uniform.predict_proba(q[:1]), [[0.5, 0.5]])
    cubed = HDL(k=2, k_max=2, weighting="cosine^gamma", gamma=3.0, backend="torch").fit(X, y)
    a, b = 0.96 ** 3, 0.8 ** 3
    np.testing.assert_allclose(cubed.predict_proba(q[:1]), [[a / (a + b), b / (a + b)]], rtol=1e-5)
    # k beyond the samples: the refresh clamps the graph and k to N - 1 = 2, and says so in chosen_k_
    wide = HDL(k=5, k_max=5, backend="torch").fit(X, y)
    assert wide.chosen_k_ == 2
    np.testing.assert_allclose(wide.predict_proba(q[:1]), [[0.96 / 1.76, 0.8 / 1.76]], rtol=1e-5)
    # training samples vote without themselves: A <- B .8, C 0; B <- A .8, C .6; C <- B .6, A 0
    np.testing.assert_allclose(model.label_distributions_, [[1, 0], [0.8 / 1.4, 0.6 / 1.4], [1, 0]],
                               rtol=1e-5)
    assert model.score(q, [0, 1]) == 0.5
    # predictions follow the parameters of the last fit, not later set_params calls
    np.testing.assert_allclose(clone(model).set_params(weighting="uniform").fit(X, y).predict_proba(q[:1]),
                               [[0.5, 0.5]])
    model.set_params(weighting="uniform")
    np.testing.assert_allclose(model.predict_proba(q[:1]), [[0.96 / 1.76, 0.8 / 1.76]], rtol=1e-5)


def test_labeling_a_hand_case():
    # A (class 0) - u1 - u2 along one side, C (class 1) - u3 on the other: u1, u3 in round 1, u2 in 2
    X = np.array([[1.0, 0.0], [0.95, 0.31], [0.8, 0.6], [0.0, 1.0], [-0.3, 0.95]])
    y = np.array([0, -1, -1, 1, -1])
    model = HDL(k=1, k_max=2, class_quota=None, level_quantile=0.0, backend="torch").fit(X, y)
    assert model.transduction_.tolist() == [0, 0, 0, 1, 1]
    assert model.labeled_iter_.tolist() == [0, 1, 2, 0, 1]
    assert model.n_iter_ == 2 and model.chosen_k_ == 1


def test_predict_is_the_cores_knn_vote_over_the_transduction():
    x, y, truth = blobs(seed=1)
    new = blobs(seed=2)[0]
    model = HDL(backend="torch").fit(x, y)
    pool = model.transduction_
    ref = knn_vote(torch.from_numpy(np.concatenate([x, new])), torch.from_numpy(
        np.concatenate([pool, np.full(len(new), -1)])), 3, k=model.chosen_k_, weighting=model.weighting,
        gamma=model.gamma, backend="torch")
    np.testing.assert_array_equal(model.predict(new), ref.labels[len(x):].numpy())
    np.testing.assert_allclose(model.predict_proba(new).max(axis=1), ref.agreement[len(x):].numpy(),
                               rtol=1e-5)


def test_nothing_to_label_is_the_supervised_knn_vote():
    x, _, truth = blobs()
    model = HDL(backend="torch").fit(x, truth)
    assert model.n_iter_ == 0 and (model.labeled_iter_ == 0).all()
    np.testing.assert_array_equal(model.transduction_, truth)
    assert (model.agreement_ == 1).all()


def test_backends_agree():
    x, y, _ = blobs()
    a = HDL(backend="torch").fit(x, y)
    b = HDL(backend="faiss").fit(x, y)
    np.testing.assert_array_equal(a.transduction_, b.transduction_)
    np.testing.assert_allclose(a.predict_proba(x), b.predict_proba(x), atol=1e-5)


# ---------------------------------------------------------------- pipelines and clones
def test_pipeline_scaler_then_hdl():
    x, y, truth = blobs()
    pipe = make_pipeline(StandardScaler(), HDL(backend="torch")).fit(x, y)
    direct = HDL(backend="torch").fit(StandardScaler().fit_transform(x), y)
    np.testing.assert_array_equal(pipe[-1].transduction_, direct.transduction_)
    assert pipe.predict(x).shape == truth.shape and 0.6 < pipe.score(x, truth) <= 1.0
    again = clone(pipe).set_params(hierarchicaldynamiclabeling__k=3).fit(x, y)
    assert again[-1].chosen_k_ == 3


# ---------------------------------------------------------------- the docs example runs
def test_docs_example_runs(capsys):
    text = (Path(__file__).resolve().parents[1] / "docs" / "estimator.md").read_text()
    section = text.split("## The scikit-learn estimator", 1)[1]
    code = section.split("```python", 1)[1].split("```", 1)[0]
    exec(compile(code, "docs/estimator.md", "exec"), {})
    printed = capsys.readouterr().out
    assert "HierarchicalDynamicLabeling" in printed and "LabelSpreading" in printed
    assert not math.isnan(float(printed.split()[-1]))
