"""Benchmark grid files: data set settings x base algorithms x {base, hdl} x seeds, validated
into :class:`Grid` and expanded into :class:`Cell` s (one ``hdl-train`` config each).

Grid file: a YAML mapping with these keys (every key is checked; unknown keys are refused).

==========================  ==============================================================
key                         meaning
==========================  ==============================================================
``name``                    required, the grid's name (headings of ``table.md``)
``out_dir``                 required, output folder (relative paths: to the working directory)
``base_config``             path template of each algorithm's base config; ``{algorithm}``
                            and the setting's keys (``{dataset}``, ``{num_labels}``,
                            ``{lb_imb_ratio}``, ...) are filled in; relative paths are read
                            from the grid file's folder. A setting may give its own.
``algorithms``              required, non-empty list of ``fixmatch``, ``freematch``,
                            ``mixmatch``, ``remixmatch``
``arms``                    list of ``base`` / ``la`` / ``hdl`` (default ``base``, ``hdl``):
                            ``la`` is the base with the logit adjustment of its unlabeled
                            loss by the EMA model's predicted unlabeled class shares
                            (``la_prior: model``, on HDL's refresh schedule; HDL's labels off)
``imb_algorithms``          the peers axis: ``none`` and USB imbalance algorithms (``abc``,
                            ``daso``, ``debiaspl``, ...) crossed with ``imb_arms`` (default
                            ``[none]``); a pair that does not run here is kept as a refused cell
                            whose one-line reason the report shows
``imb_arms``                the arms crossed with the imbalance algorithms other than ``none``
                            (default: every arm of ``arms``)
``seeds``                   required, non-empty list of distinct ints >= 0
``settings``                required, non-empty list of settings (below)
``overrides``               config keys for every cell
``per_algorithm_overrides`` ``{algorithm: {key: value}}``, for that algorithm's cells
``hdl``                     HDL's keys for the ``hdl`` arm (only keys that ``hdl_<alg>``
                            accepts and ``<alg>`` does not, so the two arms differ in HDL
                            alone)
``isolation``               ``subprocess`` (default: one ``hdl-train`` process per cell) or
                            ``inprocess``
``floors``                  compute the pixel floors per setting (default true)
``floors_max_unlabeled``    unlabeled images given to LabelSpreading (default 10000)
``per_class``               per-class test accuracy of long-tailed settings (default true)
``description``             free text, copied under the title of ``table.md``
``threads``                 CPU threads of every cell (default 1, what the committed results
                            used), whatever ``--jobs`` is; recorded in ``results.csv``
==========================  ==============================================================

A setting: ``dataset`` and ``num_labels`` (required), ``name`` (default
``<dataset>_<num_labels>`` or, long-tailed, ``<dataset>_lb<n>_<r>_ulb<m>_<r'>``),
``lb_imb_ratio``, ``ulb_num_labels``, ``ulb_imb_ratio``, ``ulb_num_per_class``, ``num_classes`` (default: the data
set's), ``data_dir``, ``base_config``, ``algorithms`` (a subset of the grid's, to run fewer algorithms on this
setting) and ``overrides``. The split keys mean what they mean
to ``hdl-train`` (``num_labels`` is the head-class count when ``lb_imb_ratio != 1``).

A cell's config, later entries winning: the base config file, ``overrides``,
``per_algorithm_overrides[alg]``, the setting's keys, the setting's ``overrides``, the command
line's ``--key value`` pairs. A key of these mappings that only ``hdl_<alg>`` accepts goes to
the ``hdl`` arm alone, where it wins over the ``hdl`` mapping (so ``--hdl_refresh_every 1``
works from the command line); the ``hdl`` arm also gets ``algorithm: hdl_<alg>``. The grid
sets ``seed``, ``save_dir``, ``save_name``, ``resume: True`` and ``load_path: null`` itself
(overriding those is an error). Every cell's config goes through ``resolve_config`` before
anything runs (once per setting, algorithm and arm: the seeds differ in ``seed`` and
``save_name`` only).

Cell ``(setting, alg, arm, imb, seed)`` runs in ``out_dir/runs/<setting>/<prefix><alg>[_<imb>]_seed<seed>/``
(prefix ``hdl_`` / ``la_`` / none).
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from ..run.config import BASE_ALGORITHMS, load_yaml

ARMS = ("base", "la", "hdl")
DEFAULT_ARMS = ("base", "hdl")
ARM_PREFIX = {"base": "", "la": "la_", "hdl": "hdl_"}
ISOLATIONS = ("subprocess", "inprocess")
GRID_KEYS = ("name", "out_dir", "base_config", "algorithms", "arms", "seeds", "settings", "overrides",
             "per_algorithm_overrides", "hdl", "imb_algorithms", "imb_arms", "isolation", "floors", "floors_max_unlabeled", "per_class",
             "description", "threads")
SETTING_KEYS = ("name", "dataset", "num_labels", "lb_imb_ratio", "ulb_num_labels", "ulb_imb_ratio", "ulb_num_per_class",
                "num_classes",
                "data_dir", "base_config", "algorithms", "overrides")
# config keys the grid sets for every cell
CELL_KEYS = ("seed", "save_dir", "save_name", "resume", "load_path", "algorithm", "imb_algorithm")
# the peers axis: none, USB's imbalance algorithms that run here and those refused with a reason
def _imb_names() -> Tuple[str, ...]:
    from ..usb.imbalance import SUPPORTED, UNSUPPORTED_REASONS

    return ("none",) + tuple(SUPPORTED) + tuple(UNSUPPORTED_REASONS)


@dataclass(frozen=True)
class Setting:
    """One data set and label setting of a grid."""

    name: str
    dataset: str
    num_labels: int
    lb_imb_ratio: Optional[float] = None
    ulb_num_labels: Optional[int] = None
    ulb_imb_ratio: Optional[float] = None
    ulb_num_per_class: Optional[int] = None
    num_classes: Optional[int] = None
    data_dir: Optional[str] = None
    base_config: Optional[str] = None
    algorithms: Optional[Tuple[str, ...]] = None
    overrides: Dict[str, Any] = field(default_factory=dict)

    @property
    def long_tailed(self) -> bool:
        """True when the setting asks for an imbalance ratio other than 1 (None counts as 1)."""
        return (self.lb_imb_ratio or 1) != 1 or (self.ulb_imb_ratio or 1) != 1

    def split_keys(self) -> Dict[str, Any]:
        """The setting's keys as config keys (only those it gives; the rest come from the base config)."""
        out = {"dataset": self.dataset, "num_labels": self.num_labels}
        for key in ("lb_imb_ratio", "ulb_num_labels", "ulb_imb_ratio", "ulb_num_per_class", "num_classes", "data_dir"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return out

    def describe(self) -> str:
        if self.ulb_num_per_class is not None:
            return (f"{self.dataset}-LT, labeled head {self.num_labels} (imbalance {self.lb_imb_ratio or 1:g}), "
                    f"{self.ulb_num_per_class} unlabeled per class")
        if not self.long_tailed:
            return f"{self.dataset}, {self.num_labels} labels"
        return (f"{self.dataset}-LT, labeled head {self.num_labels} (imbalance {self.lb_imb_ratio or 1:g}), "
                f"unlabeled head {self.ulb_num_labels} (imbalance {self.ulb_imb_ratio or 1:g})")


@dataclass(frozen=True)
class Grid:
    """A validated grid file (see the module docstring)."""

    name: str
    out_dir: str
    algorithms: Tuple[str, ...]
    arms: Tuple[str, ...]
    seeds: Tuple[int, ...]
    settings: Tuple[Setting, ...]
    base_config: Optional[str] = None
    overrides: Dict[str, Any] = field(default_factory=dict)
    per_algorithm_overrides: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    hdl: Dict[str, Any] = field(default_factory=dict)
    isolation: str = "subprocess"
    floors: bool = True
    floors_max_unlabeled: int = 10000
    per_class: bool = True
    description: str = ""
    source_dir: str = "."
    threads: int = 1
    imb_algorithms: Tuple[str, ...] = ("none",)
    imb_arms: Optional[Tuple[str, ...]] = None


@dataclass(frozen=True)
class Cell:
    """One run of a grid; ``config`` is the unresolved config mapping handed to ``hdl-train``."""

    setting: Setting
    algorithm: str
    arm: str
    seed: int
    config: Dict[str, Any]
    base_config: str
    imb: Optional[str] = None
    refused: Optional[str] = None  # why this (algorithm, imbalance algorithm) pair does not run here

    @property
    def label(self) -> str:
        """The arm's name in tables: ``hdl_fixmatch``, ``la_fixmatch``, ``fixmatch_abc``, ..."""
        return ARM_PREFIX[self.arm] + self.algorithm + (f"_{self.imb}" if self.imb else "")

    @property
    def run_name(self) -> str:
        return f"{self.label}_seed{self.seed}"

    @property
    def run_dir(self) -> str:
        return os.path.join(self.config["save_dir"], self.config["save_name"])

    @property
    def key(self) -> str:
        return f"{self.setting.name}/{self.run_name}"

    def status(self) -> str:
        """``refused`` (the pair does not run here), ``done`` (results.json), ``partial`` (a
        checkpoint to resume) or ``todo``."""
        if self.refused is not None:
            return "refused"
        if os.path.isfile(os.path.join(self.run_dir, "results.json")):
            return "done"
        if any(os.path.isfile(os.path.join(self.run_dir, n)) for n in ("latest_model.pth", "previous_model.pth")):
            return "partial"
        return "todo"


# ----------------------------------------------------------------------------- validation
def _unknown(keys, allowed, where: str) -> None:
    bad = [k for k in keys if k not in allowed]
    if bad:
        msgs = []
        for k in bad:
            close = difflib.get_close_matches(str(k), list(allowed), n=1)
            msgs.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"{where}: unknown key(s) {', '.join(msgs)}; allowed: {list(allowed)}")


def _mapping(value, where: str) -> Dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ValueError(f"{where}: expected a mapping of config keys, got {value!r} ({type(value).__name__})")
    out = {str(k).replace("-", "_"): v for k, v in value.items()}
    fixed = [k for k in out if k in CELL_KEYS]
    if fixed:
        raise ValueError(f"{where}: {fixed} are set by the grid for every cell and cannot be overridden")
    return out


def _int(value, where: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{where}: expected an integer >= {low}, got {value!r}")
    return value


def _ratio(value, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or abs(value) < 1:
        raise ValueError(f"{where}: expected a number with |value| >= 1 (1 = balanced, negative = reversed), "
                         f"got {value!r}")
    return value


def _bool(value, where: str) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"{where}: expected true or false, got {value!r}")
    return value


def _names(value, allowed: Sequence[str], where: str, default=None) -> Tuple[str, ...]:
    if value is None and default is not None:
        return tuple(default)
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{where}: expected a non-empty list drawn from {list(allowed)}, got {value!r}")
    bad = [v for v in value if v not in allowed]
    if bad:
        raise ValueError(f"{where}: expected values from {list(allowed)}, got {bad}")
    if len(set(value)) != len(value):
        raise ValueError(f"{where}: duplicate entries in {value}")
    return tuple(value)


def _setting(raw, i: int) -> Setting:
    where = f"settings[{i}]"
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a mapping with at least dataset and num_labels, got {raw!r}")
    _unknown(raw, SETTING_KEYS, where)
    from hdl.data import DATASET_INFO, DATASETS

    for key in ("dataset", "num_labels"):
        if key not in raw:
            raise ValueError(f"{where}.{key}: required key missing")
    if raw["dataset"] not in DATASETS:
        raise ValueError(f"{where}.dataset: expected one of {list(DATASETS)}, got {raw['dataset']!r}")
    kw: Dict[str, Any] = {"dataset": raw["dataset"], "num_labels": _int(raw["num_labels"], f"{where}.num_labels", 1)}
    for key in ("lb_imb_ratio", "ulb_imb_ratio"):
        if key in raw:
            kw[key] = _ratio(raw[key], f"{where}.{key}")
    if (kw.get("lb_imb_ratio") or 1) < 0:
        raise ValueError(f"{where}.lb_imb_ratio: expected >= 1 (only ulb_imb_ratio may be reversed), got {kw['lb_imb_ratio']}")
    if raw.get("ulb_num_labels") is not None:
        kw["ulb_num_labels"] = _int(raw["ulb_num_labels"], f"{where}.ulb_num_labels", 1)
    if (kw.get("ulb_imb_ratio") or 1) != 1 and "ulb_num_labels" not in kw:
        raise ValueError(f"{where}.ulb_num_labels: required when ulb_imb_ratio != 1 (the unlabeled head count)")
    if raw.get("ulb_num_per_class") is not None:
        kw["ulb_num_per_class"] = _int(raw["ulb_num_per_class"], f"{where}.ulb_num_per_class", 1)
    if raw.get("num_classes") is not None:
        kw["num_classes"] = _int(raw["num_classes"], f"{where}.num_classes", 2)
    else:
        info = DATASET_INFO.get(kw["dataset"])
        kw["num_classes"] = info.num_classes if info is not None else None
    for key in ("data_dir", "base_config", "name"):
        if raw.get(key) is not None:
            if not isinstance(raw[key], str) or not raw[key]:
                raise ValueError(f"{where}.{key}: expected a non-empty string, got {raw[key]!r}")
            kw[key] = raw[key]
    if "name" in kw and ("/" in kw["name"] or kw["name"] in (".", "..")):
        raise ValueError(f"{where}.name: must be usable as a folder name, got {kw['name']!r}")
    if raw.get("algorithms") is not None:
        kw["algorithms"] = _names(raw["algorithms"], BASE_ALGORITHMS, f"{where}.algorithms")
    kw["overrides"] = _mapping(raw.get("overrides"), f"{where}.overrides")
    if "name" not in kw:
        s = Setting(name="", **kw)
        kw["name"] = (f"{s.dataset}_lb{s.num_labels}_{s.lb_imb_ratio or 1:g}_ulb{s.ulb_num_labels}_{s.ulb_imb_ratio or 1:g}"
                      if s.long_tailed else f"{s.dataset}_{s.num_labels}")
    return Setting(**kw)


def parse_grid(data: Dict[str, Any], source_dir: str = ".") -> Grid:
    """Validate a grid mapping; ValueError names the key, the allowed values and what was given."""
    if not isinstance(data, dict):
        raise ValueError(f"grid: expected a mapping, got {type(data).__name__}")
    _unknown(data, GRID_KEYS, "grid")
    for key in ("name", "out_dir", "algorithms", "seeds", "settings"):
        if key not in data:
            raise ValueError(f"{key}: required key missing from the grid")
    for key in ("name", "out_dir"):
        if not isinstance(data[key], str) or not data[key]:
            raise ValueError(f"{key}: expected a non-empty string, got {data[key]!r}")
    algorithms = _names(data["algorithms"], BASE_ALGORITHMS, "algorithms")
    arms = _names(data.get("arms"), ARMS, "arms", default=DEFAULT_ARMS)
    imbs = _names(data.get("imb_algorithms"), _imb_names(), "imb_algorithms", default=("none",))
    imb_arms = None
    if data.get("imb_arms") is not None:
        imb_arms = _names(data["imb_arms"], arms, "imb_arms")
    seeds = data["seeds"]
    if not isinstance(seeds, list) or not seeds:
        raise ValueError(f"seeds: expected a non-empty list of integers >= 0, got {seeds!r}")
    seeds = tuple(_int(s, "seeds", 0) for s in seeds)
    if len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds: duplicate entries in {list(seeds)}")
    if not isinstance(data["settings"], list) or not data["settings"]:
        raise ValueError(f"settings: expected a non-empty list of mappings, got {data['settings']!r}")
    settings = tuple(_setting(s, i) for i, s in enumerate(data["settings"]))
    for s in settings:
        extra = [a for a in (s.algorithms or ()) if a not in algorithms]
        if extra:
            raise ValueError(f"settings.{s.name}.algorithms: {extra} are not in the grid's algorithms {list(algorithms)}")
    names = [s.name for s in settings]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ValueError(f"settings: names must be unique, {dup} repeat (give each a distinct 'name')")
    base_config = data.get("base_config")
    if base_config is not None and (not isinstance(base_config, str) or not base_config):
        raise ValueError(f"base_config: expected a path template such as '../digits/{{algorithm}}.yaml', got {base_config!r}")
    missing = [s.name for s in settings if s.base_config is None and base_config is None]
    if missing:
        raise ValueError(f"base_config: required at the top of the grid or in every setting; missing for {missing}")
    per_alg = data.get("per_algorithm_overrides") or {}
    if not isinstance(per_alg, dict):
        raise ValueError(f"per_algorithm_overrides: expected a mapping algorithm -> mapping, got {per_alg!r}")
    bad = [a for a in per_alg if a not in algorithms]
    if bad:
        raise ValueError(f"per_algorithm_overrides: {bad} are not in algorithms {list(algorithms)}")
    per_alg = {a: _mapping(v, f"per_algorithm_overrides.{a}") for a, v in per_alg.items()}
    isolation = data.get("isolation", "subprocess")
    if isolation not in ISOLATIONS:
        raise ValueError(f"isolation: expected one of {list(ISOLATIONS)}, got {isolation!r}")
    description = data.get("description", "") or ""
    if not isinstance(description, str):
        raise ValueError(f"description: expected a string, got {description!r}")
    return Grid(name=data["name"], out_dir=data["out_dir"], algorithms=algorithms, arms=arms, seeds=seeds,
                settings=settings, base_config=base_config, overrides=_mapping(data.get("overrides"), "overrides"),
                per_algorithm_overrides=per_alg, hdl=_mapping(data.get("hdl"), "hdl"), isolation=isolation,
                floors=_bool(data.get("floors", True), "floors"),
                floors_max_unlabeled=_int(data.get("floors_max_unlabeled", 10000), "floors_max_unlabeled", 1),
                per_class=_bool(data.get("per_class", True), "per_class"), description=description,
                source_dir=os.path.abspath(source_dir), threads=_int(data.get("threads", 1), "threads", 1),
                imb_algorithms=imbs, imb_arms=imb_arms)


def load_grid(path: str) -> Grid:
    """Read and validate a grid file."""
    data = load_yaml(path)
    return parse_grid(data, os.path.dirname(os.path.abspath(path)))


# ----------------------------------------------------------------------------- cells
def allowed_algorithms() -> List[str]:
    """The ``algorithm`` values a cell may take: the four bases and the registered ``hdl_*``."""
    import hdl.algorithms  # noqa: F401  (registers the hdl_* algorithms)
    from semilearn.algorithms import name2alg

    from ..usb.registry import SUPPORTED_BASES

    return sorted(set(SUPPORTED_BASES) | {n for n in name2alg.keys() if n.startswith("hdl_")})


def hdl_only_keys(algorithm: str) -> frozenset:
    """Config keys that ``hdl_<algorithm>`` accepts and ``<algorithm>`` does not (the project's
    keys, accepted by both, excluded)."""
    allowed_algorithms()
    from ..run.config import PROJECT_KEYS, usb_defaults

    return frozenset(set(usb_defaults("hdl_" + algorithm)) - set(usb_defaults(algorithm)) - set(PROJECT_KEYS))


def _base_config_path(grid: Grid, setting: Setting, algorithm: str) -> str:
    template = setting.base_config or grid.base_config
    fields = dataclasses.asdict(setting)
    fields.pop("overrides")
    fields.pop("algorithms")
    fields = {k: (f"{v:g}" if isinstance(v, float) else v) for k, v in fields.items()}
    try:
        path = template.format(algorithm=algorithm, **fields)
    except (KeyError, IndexError, ValueError) as e:
        raise ValueError(f"base_config: cannot fill {template!r} ({e!r}); fields: algorithm, {', '.join(fields)}") from None
    return path if os.path.isabs(path) else os.path.normpath(os.path.join(grid.source_dir, path))


def build_cells(grid: Grid, overrides: Optional[Dict[str, Any]] = None, validate: bool = True) -> List[Cell]:
    """Every cell of ``grid`` in run order (setting, algorithm, seed, arm), with ``overrides`` (the
    command line's) applied to all; with ``validate`` each config goes through ``resolve_config``."""
    overrides = _mapping(overrides, "command line overrides")
    allowed = allowed_algorithms()
    from ..run.config import resolve_config

    cells = []
    for setting in grid.settings:
        for alg in grid.algorithms:
            if setting.algorithms is not None and alg not in setting.algorithms:
                continue
            hdl_only = hdl_only_keys(alg)
            path = _base_config_path(grid, setting, alg)
            base = load_yaml(path)
            if base.get("algorithm") != alg:
                raise ValueError(f"base_config: {path} is for algorithm {base.get('algorithm')!r}, "
                                 f"expected {alg!r} (setting {setting.name})")
            wrong = sorted(k for k in base if k in hdl_only)
            if wrong:
                raise ValueError(f"base_config: {path} holds HDL keys {wrong}; give the base algorithm's config "
                                 f"(the grid adds HDL's keys for the hdl arm)")
            layers = [grid.overrides, grid.per_algorithm_overrides.get(alg, {}), setting.split_keys(),
                      setting.overrides, overrides]
            common = dict(base)
            hdl_extra: Dict[str, Any] = dict(grid.hdl)
            not_hdl = sorted(k for k in grid.hdl if k not in hdl_only)
            if not_hdl:
                raise ValueError(f"hdl: {not_hdl} are not HDL keys of hdl_{alg} (the arms must differ in HDL's keys "
                                 f"alone; put shared keys under overrides); HDL keys: {sorted(hdl_only)}")
            for layer in layers:
                for k, v in layer.items():
                    (hdl_extra if k in hdl_only else common)[k] = v
            imb_arms = grid.imb_arms if grid.imb_arms is not None else grid.arms
            refused: Dict[Tuple[str, Optional[str]], str] = {}  # a peer pair the config refuses, per arm
            for seed in grid.seeds:
                for imb in grid.imb_algorithms:
                    for arm in grid.arms:
                        if imb != "none" and arm not in imb_arms:
                            continue
                        cell = _cell(grid, setting, alg, arm, None if imb == "none" else imb, seed, common,
                                     hdl_extra, path)
                        if (arm, cell.imb) in refused:
                            cell = dataclasses.replace(cell, refused=refused[(arm, cell.imb)])
                        if validate and cell.refused is None and seed == grid.seeds[0]:
                            # the seeds' configs differ in seed and save_name only
                            with warnings.catch_warnings():
                                warnings.simplefilter("ignore")
                                try:
                                    resolve_config(cell.config, allowed)
                                except ValueError as e:
                                    if cell.imb is None:
                                        raise ValueError(f"cell {cell.key} (base config {path}): {e}") from None
                                    # a peer the config refuses (e.g. two logit adjustments): a refused cell
                                    refused[(arm, cell.imb)] = str(e)
                                    cell = dataclasses.replace(cell, refused=str(e))
                        cells.append(cell)
    return cells


def _cell(grid: Grid, setting: Setting, alg: str, arm: str, imb: Optional[str], seed: int,
          common: Dict[str, Any], hdl_extra: Dict[str, Any], path: str) -> Cell:
    """One cell's config: the base algorithm's keys, HDL's for the ``hdl`` arm, the logit
    adjustment on HDL's refresh schedule for the ``la`` arm, ``imb_algorithm`` for a peer."""
    from ..usb.imbalance import check_combination

    cfg = dict(common)
    name = alg
    if arm == "hdl":
        cfg.update(hdl_extra)
        name = "hdl_" + alg
    elif arm == "la":
        from hdl.config_keys import KEYS

        cfg.setdefault("la_prior", "model")
        for la_key, hdl_key in (("la_warmup_iter", "hdl_warmup_iter"), ("la_refresh_every", "hdl_refresh_every")):
            cfg.setdefault(la_key, hdl_extra.get(hdl_key, KEYS[hdl_key].default))
    refused = None
    if imb is not None:
        cfg["imb_algorithm"] = imb
        try:
            check_combination(name, imb)
        except ValueError as e:
            refused = str(e).split("; supported:")[0]
    cell = Cell(setting, alg, arm, seed, cfg, path, imb=imb, refused=refused)
    cfg.update(algorithm=name, seed=seed, resume=True, load_path=None,
               save_dir=os.path.join(grid.out_dir, "runs", setting.name), save_name=cell.run_name)
    return cell


def check_cells(cells: Sequence[Cell]) -> List[str]:
    """The full per-cell validation of ``hdl-bench --dry-run``: every cell's config through
    ``resolve_config`` (all seeds), its data set loaded (once per data set and folder) with the
    configured class count, and its splits drawn as the run would draw them (nothing is saved).
    Returns one line per failing cell, naming it."""
    import warnings

    from hdl.data import load_dataset, make_splits

    from ..run.config import resolve_config

    allowed = allowed_algorithms()
    data_cache: Dict[Any, Any] = {}
    problems = []
    for cell in cells:
        if cell.refused is not None:
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                args = resolve_config(dict(cell.config, resume=False), allowed)
            key = (args.dataset, args.data_dir)
            if key not in data_cache:
                try:
                    data_cache[key] = load_dataset(args.dataset, args.data_dir, download=False)
                except (ValueError, OSError) as e:
                    data_cache[key] = e
            data = data_cache[key]
            if isinstance(data, Exception):
                raise ValueError(f"data set {args.dataset!r}: {data}")
            if data.num_classes != args.num_classes:
                raise ValueError(f"num_classes: dataset {args.dataset!r} has {data.num_classes} classes, "
                                 f"config says {args.num_classes}")
            make_splits(data.train_y, args.num_classes, num_labels=args.num_labels,
                        ulb_num_labels=args.ulb_num_labels, lb_imb_ratio=args.lb_imb_ratio,
                        ulb_imb_ratio=args.ulb_imb_ratio, include_lb_to_ulb=args.include_lb_to_ulb,
                        num_val=args.num_val, seed=args.seed, ulb_num_per_class=args.ulb_num_per_class)
        except ValueError as e:
            problems.append(f"cell {cell.key} (base config {cell.base_config}): {e}")
    return problems


def select_cells(cells: Sequence[Cell], settings=None, algorithms=None, arms=None, seeds=None,
                 imbs=None) -> List[Cell]:
    """The cells whose setting / algorithm / arm / seed / imbalance algorithm (``none`` for none)
    are in the given lists (None: all)."""
    for what, values, have in (("settings", settings, {c.setting.name for c in cells}),
                               ("algorithms", algorithms, {c.algorithm for c in cells}),
                               ("arms", arms, {c.arm for c in cells}), ("seeds", seeds, {c.seed for c in cells}),
                               ("imb", imbs, {c.imb or "none" for c in cells})):
        if values is not None:
            bad = [v for v in values if v not in have]
            if bad:
                raise ValueError(f"--only-{what}: {bad} not in the grid's {sorted(have)}")
    return [c for c in cells if (settings is None or c.setting.name in settings)
            and (algorithms is None or c.algorithm in algorithms) and (arms is None or c.arm in arms)
            and (seeds is None or c.seed in seeds) and (imbs is None or (c.imb or "none") in imbs)]
