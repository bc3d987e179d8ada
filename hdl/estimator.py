"""HDL as a scikit-learn estimator: ``HierarchicalDynamicLabeling().fit(X, y).transduction_``.

Same habit as :class:`sklearn.semi_supervised.LabelSpreading`: ``y`` marks unlabeled samples with
-1, ``fit`` labels them (:func:`hdl.relabel.relabel`'s procedure: cosine kNN graph through
:mod:`hdl.knn`, then :func:`hdl.labeling.hdl_label`) and ``predict`` labels new samples by a vote
of their nearest labeled training samples.

One source of truth for the parameters: the constructor is generated from
:data:`hdl.labeling.OPTION_TABLE` / :data:`hdl.labeling.DEFAULT_OPTIONS` (every labeling option,
with the labeler's default) plus the graph options ``k_max`` and ``backend`` with the defaults of
:func:`hdl.relabel.relabel`'s signature, so a new labeling option becomes an estimator parameter
(and reaches ``get_params``, ``set_params``, ``clone``, the repr and the docstring) without an
edit here.  Values are checked at ``fit`` by the labeler's own :func:`hdl.labeling.validate_options`.

CPU only and device free: inputs are numpy arrays (or anything ``sklearn.utils.check_array``
takes), computed on as float32 CPU tensors; ``backend`` picks the kNN search (``"auto"``: FAISS
on the CPU when installed, else torch).  For CUDA tensors call :func:`hdl.relabel.relabel` or
:func:`hdl.labeling.hdl_label` directly.
"""

from __future__ import annotations

import inspect
import numbers
from typing import Dict, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from hdl import config_keys
from hdl.knn import knn_search
from hdl.labeling import DEFAULT_OPTIONS, OPTION_TABLE, _is_int, _weights, validate_options
from hdl.refresh import refresh
from hdl.relabel import relabel

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _validate_data
except ImportError:  # older releases: the BaseEstimator method
    def _validate_data(estimator, *args, **kwargs):
        return estimator._validate_data(*args, **kwargs)

UNLABELED = -1

# graph options: name -> (check, allowed values in words), from the key table (hdl_k_max, hdl_backend);
# defaults from relabel()
GRAPH_OPTION_TABLE = {key.option: (key.check, key.allowed) for key in config_keys.keys(["labeling"]).values()
                      if key.option in config_keys.GRAPH_OPTIONS}
GRAPH_DEFAULTS: Dict[str, object] = {
    name: inspect.signature(relabel).parameters[name].default for name in GRAPH_OPTION_TABLE
}
# every constructor parameter with its default, graph options first
PARAMETERS: Dict[str, object] = {**GRAPH_DEFAULTS, **DEFAULT_OPTIONS}


def _make_init(params: Dict[str, object]):
    """An ``__init__`` taking exactly ``params`` (keyword only, with these defaults) and storing
    each one unchanged, as scikit-learn requires; its signature is what ``get_params`` reads."""
    def __init__(self, **kwargs):
        unknown = sorted(set(kwargs) - set(params))
        if unknown:
            raise TypeError(f"{type(self).__name__}() got unknown parameter(s) {unknown}; "
                            f"allowed: {sorted(params)}")
        for name, default in params.items():
            setattr(self, name, kwargs.get(name, default))

    __init__.__signature__ = inspect.Signature(
        [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
        + [inspect.Parameter(n, inspect.Parameter.KEYWORD_ONLY, default=d) for n, d in params.items()])
    return __init__


def _parameter_doc() -> str:
    rows = [(n, allowed, PARAMETERS[n]) for n, (_, allowed) in GRAPH_OPTION_TABLE.items()]
    rows += [(n, OPTION_TABLE[n][1], PARAMETERS[n]) for n in DEFAULT_OPTIONS]
    return "\n".join(f"    {n} : {allowed}, default={default!r}" for n, allowed, default in rows)


class HierarchicalDynamicLabeling(ClassifierMixin, BaseEstimator):
    """Hierarchical Dynamic Labeling (HDL) as a transductive scikit-learn classifier.

    ``fit(X, y)`` labels the samples marked -1 in ``y`` exactly as ``hdl.relabel.relabel(X, y,
    k_max=..., backend=..., **options)`` and the ``hdl-relabel`` command do: rows of ``X`` are
    L2-normalised (cosine similarity; ``X`` is meant to be embeddings), a kNN graph of width
    ``k_max`` is built (self excluded) and :func:`hdl.labeling.hdl_label` labels level by level.
    (Classes are the given labels, ``classes_``; ``relabel`` counts ``max(labels) + 1`` classes,
    so with integer class ids that have no given label the class-size weights of the quota can
    differ slightly.)
    ``predict`` / ``predict_proba`` label new samples by a vote of their ``chosen_k_`` nearest
    training samples that carry a label in ``transduction_``.  CPU only: numpy in, numpy out.

    Parameters (generated from ``hdl.labeling.OPTION_TABLE`` and ``DEFAULT_OPTIONS``; ``k_max``
    and ``backend`` as in ``hdl.relabel.relabel``; meanings: ``hdl/labeling.py``'s module
    docstring):

{parameters}

    ``y`` (fit): class labels, any sortable values as in scikit-learn (ints, strings in an object
    array, ...); the value -1 (an int or float -1, also inside an object array) marks an unlabeled
    sample.  A string array cannot hold the int -1: use an object array
    (``np.array(["cat", -1], dtype=object)``); the string ``"-1"`` is refused.

    Attributes:
        classes_: (C,) the distinct given labels, sorted; columns of the probability arrays.
        transduction_: (N,) the label of every training sample after HDL, with ``y``'s dtype;
            -1 (``y``'s marker) where HDL left a sample unlabeled (with ``fallback="none"``:
            samples no labeled sample reaches, or held back by ``min_agreement`` or
            ``max_rounds``).
        labeled_iter_: int64 (N,) HDL level: 0 for given labels, r >= 1 for samples labeled in
            round r (a fallback step counts as a round), -1 for samples left unlabeled.
        agreement_: float32 (N,) winning vote share when the sample was labeled (1 for given
            labels, 0 for unlabeled and prototype-fallback samples).
        label_distributions_: float64 (N, C) for every training sample i, the share of vote
            weight per class (``classes_`` order) among the ``chosen_k_`` training samples most
            similar to i, i itself left out, that carry a label in ``transduction_``, weighted by
            ``weighting`` / ``gamma``: the rule of ``predict_proba`` applied to the training set
            after labeling, leaving each sample out of its own vote.  Rows sum to 1 (all zeros
            only when no other training sample carries a label).  Its argmax usually equals
            ``transduction_`` but need not: HDL labels a sample from the neighbours labeled before
            it (with the level order, quota and prototype rules); ``agreement_`` is the
            share of that vote.
        chosen_k_: int, the k used for the votes (the adaptive choice or the fixed ``k``).
        n_iter_: int, labeling rounds run (0 when nothing was labeled).
        n_features_in_, feature_names_in_: as in scikit-learn.

    ``predict_proba(X)``: float64 (M, C) vote shares per class among the ``chosen_k_`` nearest
    (cosine) training samples that carry a label, weighted by ``weighting`` / ``gamma``; when all
    of them weigh 0 (e.g. negative similarities under cosine weights) each counts 1.  Fewer
    labeled training samples than ``chosen_k_``: all of them vote.  ``predict(X)``: the class
    with the largest share (ties: the first in ``classes_``).  Both use ``backend``, ``weighting`` and ``gamma`` as they were at the last
    ``fit``.  With every ``y`` given, ``fit`` labels nothing and the estimator is that
    weighted kNN classifier.

    Example::

        >>> import numpy as np
        >>> from hdl.estimator import HierarchicalDynamicLabeling
        >>> X = np.array([[1., 0.], [.9, .1], [0., 1.], [.1, .9]])
        >>> model = HierarchicalDynamicLabeling(k=1, k_max=2, backend="torch").fit(X, [0, -1, 1, -1])
        >>> model.transduction_.tolist(), model.labeled_iter_.tolist()
        ([0, 0, 1, 1], [0, 1, 0, 1])
    """

    __init__ = _make_init(PARAMETERS)

    # ------------------------------------------------------------------ parameters
    def _checked_options(self) -> Tuple[Dict[str, object], Dict[str, object]]:
        """(graph options, labeling options) from the current parameters; ValueError naming the
        parameter, its allowed values and the value received."""
        graph = {name: getattr(self, name) for name in GRAPH_OPTION_TABLE}
        for name, (check, allowed) in GRAPH_OPTION_TABLE.items():
            if not check(graph[name]):
                raise ValueError(f"{type(self).__name__}: option {name!r} must be {allowed}, "
                                 f"got {graph[name]!r}")
        options = {name: getattr(self, name) for name in OPTION_TABLE}
        try:
            validate_options(**options)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{type(self).__name__}: {err}") from err
        k = options.get("k")
        if _is_int(k) and k > graph["k_max"]:
            raise ValueError(f"{type(self).__name__}: option 'k' must be 'adaptive' or an int <= "
                             f"k_max={graph['k_max']}, got {k!r}")
        return graph, options

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _unit_rows(X: np.ndarray) -> torch.Tensor:
        """float32 CPU tensor of L2-normalised rows (a copy: read-only inputs stay untouched)."""
        return F.normalize(torch.tensor(np.asarray(X), dtype=torch.float32), dim=1)

    def _split_labels(self, y: np.ndarray) -> np.ndarray:
        """Boolean mask of the unlabeled entries (value -1) of a validated 1-d ``y``."""
        if y.dtype.kind in "USV":
            if np.any(y.astype(str) == str(UNLABELED)):
                raise ValueError("y is a string array holding '-1': mark unlabeled samples with the "
                                 "int -1 in an object array, e.g. np.array(['cat', -1], dtype=object)")
            return np.zeros(y.shape, dtype=bool)
        if y.dtype.kind == "O":
            return np.array([isinstance(v, numbers.Real) and not isinstance(v, bool) and v == UNLABELED
                             for v in y], dtype=bool)
        return y == UNLABELED

    def _shares(self, sims: torch.Tensor, idx: torch.Tensor, pool_labels: torch.Tensor) -> np.ndarray:
        """Vote shares (Q, C) of neighbours ``idx`` (-1 = none) in the labeled pool."""
        valid = idx >= 0
        cls = pool_labels[idx.clamp(min=0)]
        w = _weights(sims, valid, self._weighting, self._gamma)
        n_classes = len(self.classes_)
        votes = torch.zeros(idx.shape[0], n_classes, dtype=torch.float64)
        votes.scatter_add_(1, cls, w.double())
        flat = votes.sum(dim=1) <= 0
        if flat.any():  # all voters weigh 0: count them, as the labeling's vote does
            counts = torch.zeros_like(votes).scatter_add_(1, cls, valid.double())
            votes = torch.where(flat.unsqueeze(1), counts, votes)
        total = votes.sum(dim=1, keepdim=True)
        return torch.where(total > 0, votes / total.clamp(min=1e-300), torch.zeros_like(votes)).numpy()

    # ------------------------------------------------------------------ fit / predict
    def fit(self, X, y):
        """Label the samples of ``X`` (N, D) marked -1 in ``y`` (N,); returns ``self``."""
        graph, options = self._checked_options()
        X, y = _validate_data(self, X, y, dtype=[np.float64, np.float32])
        unl = self._split_labels(y)
        if unl.all():
            raise ValueError("y has no labeled sample: every entry is -1 (the unlabeled marker)")
        check_classification_targets(y[~unl])
        self.classes_ = np.unique(y[~unl])
        encoded = np.full(y.shape[0], UNLABELED, dtype=np.int64)
        encoded[~unl] = np.searchsorted(self.classes_, y[~unl])

        feats = self._unit_rows(X)
        res = refresh(feats, torch.from_numpy(encoded), len(self.classes_), normalize=False, **graph,
                      **options).result
        labels = res.labels.cpu().numpy()
        reached = labels >= 0
        # samples left unlabeled were unlabeled in y: they keep its -1
        self.transduction_ = np.array(y, copy=True)
        self.transduction_[reached] = self.classes_[labels[reached]]
        self.labeled_iter_ = res.level.cpu().numpy()
        self.agreement_ = res.agreement.cpu().numpy()
        self.chosen_k_ = int(res.chosen_k)
        self.n_iter_ = int(res.rounds)

        self._backend, self._weighting, self._gamma = graph["backend"], options["weighting"], options["gamma"]
        pool = np.flatnonzero(reached)
        self._pool_feats = feats[torch.from_numpy(pool)]
        self._pool_labels = torch.from_numpy(labels[pool])
        # leave-one-out vote of every training sample: search one more, drop the sample itself
        s, i = knn_search(feats, self._pool_feats, self.chosen_k_ + 1, backend=graph["backend"])
        own_pos = torch.full((y.shape[0],), -2, dtype=torch.int64)
        own_pos[torch.from_numpy(pool)] = torch.arange(pool.size)
        own = i == own_pos.unsqueeze(1)
        order = torch.sort(own.int(), dim=1, stable=True).indices[:, : self.chosen_k_]
        self.label_distributions_ = self._shares(s.gather(1, order), i.gather(1, order), self._pool_labels)
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Vote shares (M, C) per class in ``classes_`` order for new samples ``X`` (M, D)."""
        check_is_fitted(self)
        X = _validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        sims, idx = knn_search(self._unit_rows(X), self._pool_feats, self.chosen_k_, backend=self._backend)
        return self._shares(sims, idx, self._pool_labels)

    def predict(self, X) -> np.ndarray:
        """Labels (M,) of new samples ``X`` (M, D): ``classes_[argmax(predict_proba(X))]``."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


HierarchicalDynamicLabeling.__doc__ = HierarchicalDynamicLabeling.__doc__.replace("{parameters}", _parameter_doc())
