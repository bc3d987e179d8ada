"""The one table of every configuration key the project adds to USB's.

Each key is declared once here with its default, check, allowed values in words and meaning.
Generated from it: USB's ``SSL_Argument``s of the ``hdl_*`` algorithms
(:func:`hdl.algorithms.usb.hdl_wrapper.hdl_arguments`), the per-key validation of ``hdl-train``
configs (:func:`validate`), ``hdl-train --help-keys``, ``hdl-relabel``'s and
``hdl-relabel-run``'s labeling flags (:func:`add_relabel_arguments`) and the key table of
``docs/training.md`` (:func:`markdown_table`; ``tests/test_config_keys.py`` fails when it disagrees).

The labeling keys are not restated: every exposed option of :data:`hdl.labeling.OPTION_TABLE`
becomes the key ``hdl_<option>`` (``min_agreement`` becomes ``hdl_vote_min_agreement``, since
``hdl_min_agreement`` is the training filter on the labels used) with ``hdl_label``'s default, and
the flag ``--<option>`` of the relabeling commands.  A new labeling option therefore needs one
declaration: its keyword default in ``hdl_label`` and its row in ``OPTION_TABLE``.

USB's own numeric keys keep USB's defaults and types; their valid ranges (loss weights >= 0,
temperatures > 0, thresholds in [0, 1], ...) are declared once in :data:`USB_RANGES`, next to the
project's keys, checked by :func:`validate_usb` and listed in ``docs/training.md`` (:func:`usb_ranges_table`).

Groups: ``hdl`` (training with HDL), ``labeling`` (the labeler, also reached by the relabeling
commands), ``semantic`` (semantic supervised losses), ``run`` (data and device; every algorithm).
Cross-key rules (e.g. ``hdl_k <= hdl_k_max``) are checked where the settings are read.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from numbers import Integral, Real
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Tuple

from hdl.ann import INDEXES
from hdl.bank import DTYPES as BANK_DTYPES
from hdl.knn import BACKENDS
from hdl.labeling import DEFAULT_OPTIONS, OPTION_TABLE

GROUPS = ("hdl", "labeling", "semantic", "run")
HDL_USES = ("target", "pool")
HDL_EMBEDS = ("bank", "ema_pass")
HDL_INJECTS = ("all", "confident", "calibrated", "blend")
HDL_BLEND_MODELS = ("ema", "train")
HDL_BLEND_PRIORS = ("auto", "none", "balanced", "until_prior")
HDL_LOSS_PRIORS = ("auto", "none", "adjusted", "labeler")
LA_PRIORS = ("none", "model")
SEMANTIC_LOSSES = ("none", "sal", "hace", "pmi")
SEMANTIC_SOURCES = ("hierarchy", "glove", "minilm")
# labeling options whose key is not hdl_<option>
KEY_RENAMES = {"min_agreement": "hdl_vote_min_agreement"}
# the graph arguments of hdl.refresh.refresh (and hdl.relabel.relabel), next to hdl_label's options
GRAPH_OPTIONS = ("k_max", "backend", "index")


def _int(v) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _real(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and math.isfinite(v)


def parse_bool(text) -> bool:
    """Command-line text -> bool (true/false, yes/no, 1/0)."""
    if isinstance(text, bool):
        return text
    t = str(text).strip().lower()
    if t in ("true", "yes", "1", "t", "y"):
        return True
    if t in ("false", "no", "0", "f", "n"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _device_ok(v) -> bool:
    return isinstance(v, str) and (v in ("auto", "cpu", "cuda") or (v.startswith("cuda:") and v[5:].isdigit()))


@dataclass(frozen=True)
class Key:
    """One configuration key.  ``option``: the :func:`hdl.labeling.hdl_label` option (or
    :func:`hdl.refresh.refresh` argument) it feeds; ``flag``: its ``hdl-relabel`` flag, if any;
    ``saved``: for a key added after runs were already saved, the value that stands for what such
    a run did, read where a saved run config lacks the key (:func:`saved_config_defaults`)."""

    name: str
    group: str
    default: Any
    check: Callable[[Any], bool]
    allowed: str
    help: str
    parse: Callable[[str], Any] = str
    option: Optional[str] = None
    flag: Optional[str] = None
    saved: Any = None

    def validate(self, value: Any) -> Any:
        """The value, with an int widened to float for a float key; ValueError naming the key."""
        if isinstance(self.default, float) and _int(value):
            value = float(value)
        if self.name == "hdl_k" and isinstance(value, str) and value.isdigit():
            value = int(value)
        if not self.check(value):
            raise ValueError(f"{self.name}: expected {self.allowed}, got {value!r}")
        return value


def _declared() -> Dict[str, Key]:
    keys = [
        Key("hdl_enable", "hdl", True, lambda v: isinstance(v, bool), "true or false",
            "turn HDL on/off (off: exactly the base algorithm)", parse_bool),
        Key("hdl_warmup_iter", "hdl", 200, lambda v: _int(v) and v >= 0, "an int >= 0",
            "iterations before the first refresh", int),
        Key("hdl_refresh_every", "hdl", 200, lambda v: _int(v) and v >= 1, "an int >= 1",
            "iterations between refreshes", int),
        Key("hdl_use", "hdl", "target", lambda v: v in HDL_USES, f"one of {list(HDL_USES)}",
            "target: HDL labels replace the model's pseudo-labels; pool: they join the labeled batches (pool: "
            "experimental: not measured)"),
        Key("hdl_embed", "hdl", "ema_pass", lambda v: v in HDL_EMBEDS, f"one of {list(HDL_EMBEDS)}",
            "ema_pass: re-embed the training set with the EMA model at each refresh; bank: train-step features "
            "(with hdl_inject blend it needs hdl_blend_model train)"),
        Key("hdl_gt_ratio", "hdl", 0.5, lambda v: _real(v) and 0 < v <= 1, "a number in (0, 1]",
            "pool mode: least share of ground truth per labeled batch", float),
        Key("hdl_min_agreement", "hdl", 0.0, lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]",
            "HDL labels whose agreement is below this are not used in training (the vote share; with "
            "hdl_inject blend the blended score)", float),
        Key("hdl_inject", "hdl", "blend", lambda v: v in HDL_INJECTS, f"one of {list(HDL_INJECTS)}",
            "all: every pool label is used; confident: a pool label the model contradicts with a higher "
            "confidence than the label's calibrated confidence is dropped at the refresh; calibrated: a pool "
            "label whose calibrated confidence is below the model's pseudo-label threshold (p_cutoff, else "
            "0.95) is dropped; blend: each pool label becomes the argmax of hdl_blend_weight x the label "
            "distribution of the sample's neighbourhood + (1 - hdl_blend_weight) x the model's probabilities"),
        Key("hdl_blend_weight", "hdl", 0.5, lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]",
            "hdl_inject blend: weight of HDL's neighbourhood distribution against the model's probabilities",
            float),
        Key("hdl_blend_model", "hdl", "ema", lambda v: v in HDL_BLEND_MODELS, f"one of {list(HDL_BLEND_MODELS)}",
            "hdl_inject blend: the model probabilities blended: ema: the EMA model's head on the refresh's own "
            "EMA embedding of every sample (needs hdl_embed ema_pass); train: the training model's head on each "
            "sample's latest weak-view features from the train steps (the one allowed with hdl_embed bank)"),
        Key("hdl_blend_prior", "hdl", "auto", lambda v: v in HDL_BLEND_PRIORS, f"one of {list(HDL_BLEND_PRIORS)}",
            "hdl_inject blend: none: the model's probabilities as they are; balanced: divided by their mean over "
            "the pool (the model's class shares) and renormalised, so that the blend does not take the head "
            "classes' bias of a long-tailed model (hdl.blend.balanced_probabilities); until_prior: balanced while "
            "no loss prior is in force (hdl_loss_prior adjusted: the first refresh), then none; auto: none where "
            "hdl_loss_prior resolves to adjusted, else balanced", saved="none"),
        Key("hdl_loss_prior", "hdl", "auto", lambda v: v in HDL_LOSS_PRIORS, f"one of {list(HDL_LOSS_PRIORS)}",
            "hdl_use target: none: the base's unlabeled losses as they are; adjusted: on the steps with HDL "
            "targets every unlabeled consistency loss of the base sees the logits plus the log class prior of "
            "the injected pool labels (logit adjustment, hdl.blend.class_log_prior), and the blend takes the "
            "model's probabilities times that prior (hdl.blend.prior_probabilities); use it with "
            "hdl_blend_prior none; labeler (experimental: measured on the lt_peers grid's HDL cells only): as "
            "adjusted with the labeler's estimate of the unlabeled class shares (hdl.labeling.unlabeled_prior under "
            "hdl_class_prior: the anchor for long-tailed labels) instead of the pool's shares; auto: adjusted where "
            "the base's unlabeled loss is a cross-entropy (fixmatch, freematch, remixmatch) in target mode, else "
            "none (mixmatch's squared error, pool mode)",
            saved="none"),
        Key("hdl_weight_by_agreement", "hdl", False, lambda v: isinstance(v, bool), "true or false",
            "target mode: the mask of an HDL-labeled row is its agreement instead of 1 (experimental: not measured)",
            parse_bool),
        Key("hdl_bank_dtype", "hdl", "float32", lambda v: v in BANK_DTYPES, f"one of {list(BANK_DTYPES)}",
            "stored type of the embedding bank's rows (float16 halves its memory; the search runs in float32)"),
        Key("hdl_k_max", "labeling", 50, lambda v: _int(v) and v >= 1, "an int >= 1",
            "neighbours kept in the kNN graph (clamped to the number of samples - 1)", int,
            option="k_max", flag="--k-max"),
        Key("hdl_backend", "labeling", "auto", lambda v: v in BACKENDS, f"one of {list(BACKENDS)}",
            "kNN backend (auto: FAISS when installed, on the GPU when the bank is there)",
            option="backend", flag="--backend"),
        Key("hdl_index", "labeling", "auto", lambda v: v in INDEXES, f"one of {list(INDEXES)}",
            "kNN graph: exact, or approximate (FAISS IVF / HNSW, or cells: k-means cells searched a cell at a "
            "time by matrix products) with its recall logged (auto: exact up to 100,000 samples, IVF above)",
            option="index", flag="--index"),
    ]
    for name, opt in OPTION_TABLE.items():
        if not opt.exposed:
            continue
        keys.append(Key(KEY_RENAMES.get(name, f"hdl_{name}"), "labeling", DEFAULT_OPTIONS[name], opt.check,
                        opt.allowed, opt.help, opt.parse, option=name, flag="--" + name.replace("_", "-")))
    keys += [
        Key("semantic_loss", "semantic", "none", lambda v: v in SEMANTIC_LOSSES, f"one of {list(SEMANTIC_LOSSES)}",
            "what replaces the supervised cross-entropy"),
        Key("semantic_tree", "semantic", "auto", lambda v: isinstance(v, str) and bool(v),
            "'auto', 'flat', 'wordnet', a shipped tree or a .yaml/.yml/.json path", "class hierarchy"),
        Key("semantic_source", "semantic", "hierarchy", lambda v: v in SEMANTIC_SOURCES,
            f"one of {list(SEMANTIC_SOURCES)}", "S-AL class similarity source"),
        Key("sal_beta", "semantic", 0.4, lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]",
            "S-AL weight of the one-hot part", float),
        Key("hace_d", "semantic", 0.7, lambda v: _real(v) and 0 < v <= 1, "a number in (0, 1]",
            "HACE ancestral smoothing d", float),
        Key("pmi_weight", "semantic", 1.0, lambda v: _real(v) and v > 0, "a number > 0",
            "weight of the PMI cosine loss", float),
        Key("pmi_k", "semantic", 10, lambda v: _int(v) and v >= 1, "an int >= 1",
            "neighbours per sample for the PMI co-occurrence", int),
        Key("la_prior", "run", "none", lambda v: v in LA_PRIORS, f"one of {list(LA_PRIORS)}",
            "base algorithms (not hdl_*, whose adjustment is hdl_loss_prior): model: from la_warmup_iter on, every "
            "la_refresh_every iterations the EMA model predicts the unlabeled set (evaluation transform) and the "
            "base's unlabeled consistency losses see the logits plus the log class shares of those predictions "
            "(logit adjustment, as HDL's hdl_loss_prior adjusted with the EMA model's labels instead of HDL's); "
            "none: the base's losses as they are"),
        Key("la_warmup_iter", "run", 200, lambda v: _int(v) and v >= 1, "an int >= 1",
            "la_prior model: iterations before the first estimate of the unlabeled class shares", int),
        Key("la_refresh_every", "run", 200, lambda v: _int(v) and v >= 1, "an int >= 1",
            "la_prior model: iterations between estimates", int),
        Key("ulb_num_per_class", "run", None, lambda v: v is None or (_int(v) and v >= 1), "null or an int >= 1",
            "unlabeled samples of every class (the 'uniform' unlabeled set of the ACR / CCL protocol) instead of "
            "ulb_num_labels, which with ulb_imb_ratio 1 is USB's total over the classes; needs ulb_num_labels null "
            "and ulb_imb_ratio 1", int),
        Key("num_val", "run", 0, lambda v: _int(v) and v >= 0, "an int >= 0",
            "validation images per class, removed before the labeled/unlabeled split", int),
        Key("device", "run", "auto", _device_ok, "'auto', 'cpu', 'cuda' or 'cuda:N'", "where the run trains"),
        Key("download", "run", False, lambda v: isinstance(v, bool), "true or false",
            "let torchvision download cifar10/100, svhn, stl10 into data_dir", parse_bool),
    ]
    out: Dict[str, Key] = {}
    for k in keys:
        if k.name in out:
            raise AssertionError(f"configuration key {k.name!r} declared twice")
        out[k.name] = k
    return out


KEYS: Dict[str, Key] = _declared()

# the keys read only by hdl_inject: blend
BLEND_KEYS = tuple(n for n in KEYS if n.startswith("hdl_blend_"))


@dataclass(frozen=True)
class Removed:
    """A key, or some values of a key, taken out of the project.  ``values``: the removed values of
    a key that stays; None: the whole key is gone, and ``kept`` is the value that behaves as the
    software does now (its old default), which a saved run may hold and still load."""

    version: str
    why: str
    values: Optional[Tuple[Any, ...]] = None
    kept: Any = None


# The one table of removed keys and values (read by :func:`without_removed`).
REMOVED: Dict[str, Removed] = {
    "hdl_adaptive_rule": Removed("0.2.0", "hdl_k adaptive always uses the held-out rule, measured ahead of "
                                 "'agreement' and 'loo' in results/labeling_suite", kept="heldout"),
    "hdl_delta": Removed("0.2.0", "the parameter of the removed adaptive rule 'agreement'", kept=0.2),
    "hdl_k_cap": Removed("0.2.0", "the adaptive k is always capped at the smallest class, measured ahead of no cap "
                         "in results/labeling_suite", kept="smallest_class"),
    "hdl_blend_votes": Removed("0.2.0", "the blend always uses the calibrated votes", kept="calibrated"),
    "hdl_blend_model": Removed("0.2.0", "below the default 'ema' on all 12 runs of "
                               "results/inject_rule/fmnist_lt100_ema_graph_none; allowed: 'ema', 'train'",
                               values=("ema_graph",)),
}


def without_removed(cfg: Mapping[str, Any]) -> Dict[str, Any]:
    """A copy of ``cfg`` (a config, or a run's saved config) without the removed keys of
    :data:`REMOVED` that hold the value that behaves as today (their old default, so the run is
    unchanged); ValueError, one line naming the key, the value and the version that removed it,
    for any other value of a removed key and for a removed value."""
    out = dict(cfg)
    for name, gone in REMOVED.items():
        if name not in out:
            continue
        value = out[name]
        if gone.values is None and value == gone.kept:
            del out[name]
        elif gone.values is None:
            raise ValueError(f"{name}: {value!r} was removed in {gone.version} (the key is gone; {gone.why})")
        elif value in gone.values:
            raise ValueError(f"{name}: {value!r} was removed in {gone.version} ({gone.why})")
    return out


def check_combinations(cfg: Mapping[str, Any]) -> None:
    """Refuse the HDL keys of ``cfg`` (missing: defaults) that another key makes meaningless: an
    ``hdl_blend_*`` key off its default while ``hdl_inject`` is not ``blend``, and
    ``hdl_blend_model: ema`` with ``hdl_embed: bank`` (the bank keeps no EMA embedding to feed the
    EMA head).  ValueError, one line naming both keys."""
    def get(name):
        return cfg.get(name, KEYS[name].default)

    inject = get("hdl_inject")
    if inject != "blend":
        for name in BLEND_KEYS:
            if get(name) != KEYS[name].default:
                raise ValueError(f"{name}: {get(name)!r} is read only with hdl_inject: blend, got hdl_inject: "
                                 f"{inject!r}; leave {name} at its default {KEYS[name].default!r} or set "
                                 f"hdl_inject: blend")
    elif get("hdl_blend_model") == "ema" and get("hdl_embed") == "bank":
        raise ValueError("hdl_blend_model: 'ema' needs hdl_embed: ema_pass, got hdl_embed: 'bank'; with "
                         "hdl_embed: bank set hdl_blend_model: train")


# ---------------------------------------------------------------------- USB's own keys
@dataclass(frozen=True)
class Range:
    """The valid range of one of USB's own numeric keys (its default and type come from USB's
    ``get_config``; this table adds what USB never checks)."""

    name: str
    check: Callable[[Any], bool]
    allowed: str
    help: str

    def validate(self, value: Any) -> Any:
        if not self.check(value):
            raise ValueError(f"{self.name}: expected {self.allowed}, got {value!r}")
        return value


def _ints(lo: int) -> Callable[[Any], bool]:
    return lambda v: _int(v) and v >= lo


def _ulb_imb_ok(v) -> bool:
    return _real(v) and (v >= 1 or v <= -1)


def _usb_ranges() -> Dict[str, Range]:
    i1, i0 = "an integer >= 1", "an integer >= 0"
    rows = [Range(n, _ints(1), i1, h) for n, h in (
        ("num_train_iter", "training iterations"), ("epoch", "epochs the iterations are split into"),
        ("num_eval_iter", "iterations between evaluations and checkpoints"),
        ("num_log_iter", "iterations between log lines"), ("batch_size", "labeled batch size"),
        ("eval_batch_size", "evaluation batch size"), ("uratio", "unlabeled batch = uratio x batch_size"),
        ("num_classes", "classes"), ("num_labels", "labeled samples (per class: num_labels / num_classes)"))]
    rows += [Range(n, _ints(0), i0, h) for n, h in (
        ("num_workers", "data loader worker processes"), ("num_warmup_iter", "learning-rate warm-up iterations"),
        ("img_size", "image side the transforms produce (0: the data set's own; an image folder is resized to it "
                     "on load)"))]
    rows += [
        Range("lr", lambda v: _real(v) and v > 0, "a number > 0", "learning rate"),
        Range("momentum", lambda v: _real(v) and 0 <= v < 1, "a number in [0, 1)", "SGD momentum"),
        Range("weight_decay", lambda v: _real(v) and v >= 0, "a number >= 0", "weight decay"),
        Range("layer_decay", lambda v: _real(v) and 0 < v <= 1, "a number in (0, 1]", "layer-wise lr decay"),
        Range("clip_grad", lambda v: _real(v) and v >= 0, "a number >= 0", "gradient norm clip (0: none)"),
        Range("ema_m", lambda v: _real(v) and 0 <= v < 1, "a number in [0, 1)", "EMA momentum of the eval model"),
        Range("crop_ratio", lambda v: _real(v) and 0 < v <= 1, "a number in (0, 1]", "crop ratio of the transforms"),
        Range("ulb_loss_ratio", lambda v: _real(v) and v >= 0, "a number >= 0", "weight of the unlabeled loss"),
        Range("T", lambda v: _real(v) and v > 0, "a number > 0", "sharpening / softmax temperature"),
        Range("p_cutoff", lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]", "confidence threshold"),
        Range("ema_p", lambda v: _real(v) and 0 <= v < 1, "a number in [0, 1)", "FreeMatch: EMA of its thresholds"),
        Range("ent_loss_ratio", lambda v: _real(v) and v >= 0, "a number >= 0", "FreeMatch: weight of the entropy loss"),
        Range("unsup_warm_up", lambda v: _real(v) and 0 <= v <= 1, "a number in [0, 1]",
              "MixMatch/ReMixMatch: share of the run the unlabeled weight ramps up"),
        Range("mixup_alpha", lambda v: _real(v) and v > 0, "a number > 0", "MixMatch/ReMixMatch: Beta(alpha, alpha)"),
        Range("kl_loss_ratio", lambda v: _real(v) and v >= 0, "a number >= 0", "ReMixMatch: weight of the KL loss"),
        Range("rot_loss_ratio", lambda v: _real(v) and v >= 0, "a number >= 0", "ReMixMatch: weight of the rotation loss"),
        Range("lb_imb_ratio", lambda v: _real(v) and v >= 1, "a number >= 1", "labeled head / tail class ratio"),
        Range("ulb_imb_ratio", _ulb_imb_ok, "a number >= 1, or <= -1 for the reversed order",
              "unlabeled head / tail class ratio"),
        Range("ulb_num_labels", lambda v: v is None or (_int(v) and v >= 1), "null or an integer >= 1",
              "unlabeled samples of the head class (null: all)"),
    ]
    return {r.name: r for r in rows}


USB_RANGES: Dict[str, Range] = _usb_ranges()


def validate_usb(config: Mapping[str, Any]) -> None:
    """Check the range of every key of :data:`USB_RANGES` present in ``config`` (ValueError
    naming the key, the allowed range and the value)."""
    for name, value in config.items():
        if name in USB_RANGES:
            USB_RANGES[name].validate(value)


def keys(groups: Iterable[str] = GROUPS) -> Dict[str, Key]:
    groups = tuple(groups)
    return {n: k for n, k in KEYS.items() if k.group in groups}


def defaults(groups: Iterable[str] = GROUPS) -> Dict[str, Any]:
    return {n: k.default for n, k in keys(groups).items()}


def validate(config: Mapping[str, Any]) -> Dict[str, Any]:
    """Check every table key present in ``config``; returns a copy with ints widened for float keys.
    Keys outside the table pass through unchanged."""
    out = dict(config)
    for name, value in config.items():
        if name in KEYS:
            out[name] = KEYS[name].validate(value)
    return out


def labeling_options(config: Mapping[str, Any]) -> Dict[str, Any]:
    """``hdl_label`` options and ``refresh``'s graph arguments (:data:`GRAPH_OPTIONS`) from a config of
    table keys (missing keys: their defaults)."""
    return {k.option: config.get(n, k.default) for n, k in keys(["labeling"]).items()}


# ---------------------------------------------------------------------- command line
def add_relabel_arguments(p: argparse.ArgumentParser) -> None:
    """The labeling flags of ``hdl-relabel`` / ``hdl-relabel-run`` (unset: the default)."""
    for k in keys(["labeling"]).values():
        p.add_argument(k.flag, dest=k.option, type=k.parse, default=argparse.SUPPRESS,
                       help=f"{k.help}; {k.allowed} (default: {_show(k.default)})")


def relabel_options(ns: argparse.Namespace, exclude: Iterable[str] = ()) -> Dict[str, Any]:
    """The flags of :func:`add_relabel_arguments` that were given, as option -> value, validated
    (``--class-quota none`` or <= 0 gives None: no quota)."""
    out: Dict[str, Any] = {}
    for k in keys(["labeling"]).values():
        if k.option in exclude or not hasattr(ns, k.option):
            continue
        value = getattr(ns, k.option)
        try:
            out[k.option] = k.validate(value)
        except ValueError:
            raise ValueError(f"{k.flag}: expected {k.allowed}, got {value!r}") from None
    return out


def _show(v: Any) -> str:
    return "none" if v is None else str(v).lower() if isinstance(v, bool) else str(v)


def help_text(groups: Iterable[str] = GROUPS) -> str:
    """Every key of ``groups``: name, default, allowed values, meaning (``hdl-train --help-keys``)."""
    lines = []
    for g in tuple(groups):
        lines.append(f"{g} keys:")
        for k in keys([g]).values():
            lines.append(f"  {k.name} (default {_show(k.default)}): {k.help}; {k.allowed}")
    return "\n".join(lines)


def saved_config_defaults(cfg: Dict[str, Any]) -> Dict[str, Any]:
    """``cfg`` (a run's saved config) rebuilt as the run ran, in today's keys:

    * removed keys at their old default are dropped, any other removed key or value is refused
      (:func:`without_removed`);
    * every key it lacks that has a ``saved`` value is set to that value, where ``cfg`` has other
      keys of that key's group (a base algorithm's run has no HDL keys and gets none): a run saved
      before the key existed is rebuilt as it ran, not with today's default;
    * where ``hdl_inject`` is not ``blend`` the ``hdl_blend_*`` keys, which the run never read, are
      dropped; with ``hdl_inject: blend`` and ``hdl_embed: bank``, ``hdl_blend_model: ema`` becomes
      ``train``, what such a run blended before that pair was refused (:func:`check_combinations`).
    """
    out = without_removed(cfg)
    groups = {k.group for k in KEYS.values() if k.name in out}  # a base algorithm's run has no hdl keys
    for k in KEYS.values():
        if k.saved is not None and k.name not in out and k.group in groups:
            out[k.name] = k.saved
    if "hdl" in groups:
        if out.get("hdl_inject", KEYS["hdl_inject"].default) != "blend":
            for name in BLEND_KEYS:
                out.pop(name, None)
        elif out.get("hdl_embed", KEYS["hdl_embed"].default) == "bank" and \
                out.get("hdl_blend_model", KEYS["hdl_blend_model"].default) == "ema":
            out["hdl_blend_model"] = "train"
    return out


def markdown_table() -> str:
    """The key table of docs/training.md (between ``<!-- keys:start -->`` and ``<!-- keys:end -->``)."""
    rows = ["| key | group | default | allowed | meaning |", "|---|---|---|---|---|"]
    for k in KEYS.values():
        allowed = k.allowed.replace("|", "\\|")
        rows.append(f"| `{k.name}` | {k.group} | `{_show(k.default)}` | {allowed} | {k.help} |")
    return "\n".join(rows)


def usb_ranges_table() -> str:
    """The table of USB's keys with a range in docs/training.md (between ``<!-- usb-ranges:start -->``
    and ``<!-- usb-ranges:end -->``)."""
    rows = ["| USB key | allowed | meaning |", "|---|---|---|"]
    for r in USB_RANGES.values():
        rows.append(f"| `{r.name}` | {r.allowed} | {r.help} |")
    return "\n".join(rows)


if __name__ == "__main__":  # python -m hdl.config_keys: print the tables of docs/training.md
    print(markdown_table())
    print()
    print(usb_ranges_table())
