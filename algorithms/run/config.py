"""YAML configuration: USB's keys and defaults, the project's keys, one validation pass.

A config is a flat YAML mapping of USB's keys (so a USB config runs after changing
``algorithm:``, ``dataset:`` and ``data_dir:``) plus the project's keys (declared once in
:mod:`hdl.config_keys`: ``PROJECT_KEYS`` for every algorithm, the ``hdl_*``, labeling and semantic
keys for the ``hdl_*`` algorithms).  Defaults come from USB's own ``get_config``.  Every key is used or
rejected; USB keys that do nothing here (``IGNORED_KEYS``) are accepted with one warning each.
"""
from __future__ import annotations

import argparse
import difflib
import logging
import warnings
from typing import Any, Dict, Iterable, Optional, Sequence

import yaml

from hdl import config_keys

log = logging.getLogger("hdl")

BASE_ALGORITHMS = ("fixmatch", "freematch", "mixmatch", "remixmatch")

# the project keys every algorithm takes (data and device), from the one key table
PROJECT_KEYS: Dict[str, Any] = config_keys.defaults(["run"])

_BY_TORCHRUN = ("several processes are launched by torchrun, whose environment (WORLD_SIZE, RANK, LOCAL_RANK, "
                "MASTER_ADDR, MASTER_PORT) sets them")

# keys present in USB's published configs that have no effect here
IGNORED_KEYS = {
    "clip": "USB never reads it",
    "dist_url": _BY_TORCHRUN,
    "dist_backend": "gloo on the CPU, nccl on CUDA",
    "world_size": _BY_TORCHRUN,
    "rank": _BY_TORCHRUN,
    "gpu": "the device is chosen by the 'device' key (cuda:LOCAL_RANK with several processes)",
    "c": "the config file is given with --config",
    "multiprocessing_distributed": _BY_TORCHRUN,
    "distributed": _BY_TORCHRUN,
    "use_wandb": "hdl-train writes TensorBoard logs, never wandb",
    "use_aim": "hdl-train writes TensorBoard logs, never aim",
}


def _choices() -> Dict[str, Sequence[Any]]:
    from hdl.data import DATASETS

    return {
        "dataset": tuple(DATASETS),
        "optim": ("SGD", "AdamW"),
        "train_sampler": ("RandomSampler", "WeightedRandomSampler"),
    }


def load_yaml(path: str) -> Dict[str, Any]:
    """Read a YAML mapping; a missing file or a non-mapping raises with the path."""
    try:
        with open(path) as f:
            cfg = yaml.safe_load(f)
    except FileNotFoundError:
        raise FileNotFoundError(f"--config: no such file: {path}") from None
    except yaml.YAMLError as e:
        raise ValueError(f"--config: {path} is not valid YAML: {e}") from None
    if cfg is None:
        cfg = {}
    if not isinstance(cfg, dict):
        raise ValueError(f"--config: {path} must hold a mapping of key: value, got {type(cfg).__name__}")
    return {str(k).replace("-", "_"): v for k, v in cfg.items()}


def parse_overrides(items: Sequence[str]) -> Dict[str, Any]:
    """``['--lr', '0.01', '--seed', '2']`` -> ``{'lr': 0.01, 'seed': 2}`` (values read as YAML)."""
    out: Dict[str, Any] = {}
    items = list(items)
    i = 0
    while i < len(items):
        key = items[i]
        if not key.startswith("--") or len(key) < 3:
            raise ValueError(f"expected --key value pairs after --config, got {key!r}")
        key = key[2:].replace("-", "_")
        if "=" in key:
            key, raw = key.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(items):
                raise ValueError(f"--{key}: missing value")
            raw = items[i + 1]
            i += 2
        out[key] = yaml.safe_load(raw)
    return out


def usb_defaults(algorithm: str, imb_algorithm: Optional[str] = None) -> Dict[str, Any]:
    """USB's defaults for every key of ``algorithm`` (and ``imb_algorithm``), from USB's get_config."""
    from semilearn.lighting.config import get_config

    cfg = {"algorithm": algorithm}
    if imb_algorithm:
        cfg["imb_algorithm"] = imb_algorithm
    ns = get_config(cfg)
    return vars(ns)


def _type_ok(value: Any, default: Any) -> bool:
    if default is None or value is None:
        return True
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, int):
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, str):
        return isinstance(value, str)
    return True


def resolve_config(cfg: Dict[str, Any], algorithms: Iterable[str], extra_defaults: Optional[Dict[str, Any]] = None) -> argparse.Namespace:
    """Validate ``cfg`` and return the full argument namespace USB's algorithms read.

    Raises ValueError naming the key, the allowed values and what was given.
    """
    cfg = dict(cfg)
    algorithms = list(algorithms)
    alg = cfg.get("algorithm")
    if alg not in algorithms:
        raise ValueError(f"algorithm: expected one of {sorted(algorithms)}, got {alg!r}")
    imb = cfg.get("imb_algorithm")
    if imb is not None:
        from ..usb.imbalance import check_combination

        if not isinstance(imb, str):
            raise ValueError(f"imb_algorithm: expected a name or null, got {imb!r} ({type(imb).__name__})")
        check_combination(alg, imb)
    for key in ("dataset", "num_labels", "num_classes"):
        if key not in cfg:
            raise ValueError(f"{key}: required key missing from the config")
    defaults = usb_defaults(alg, imb)
    defaults.update(PROJECT_KEYS)
    defaults.update(extra_defaults or {})
    defaults["save_name"] = None
    defaults["data_dir"] = None

    for key in list(cfg):
        if key in IGNORED_KEYS:
            warnings.warn(f"config key {key!r} has no effect here ({IGNORED_KEYS[key]}); ignored", stacklevel=2)
            cfg.pop(key)
    cfg = config_keys.without_removed(cfg)  # a removed key at its old default is dropped, else refused

    unknown = [k for k in cfg if k not in defaults]
    if unknown:
        msgs = []
        for k in unknown:
            close = difflib.get_close_matches(k, list(defaults), n=1)
            msgs.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
        raise ValueError(f"unknown config key(s): {', '.join(msgs)}")

    cfg = config_keys.validate(cfg)  # the project's keys: type and range from the one table
    if str(alg).startswith("hdl_"):
        config_keys.check_combinations(cfg)
    if cfg.get("la_prior", "none") != "none" and str(alg).startswith("hdl_"):
        raise ValueError(f"la_prior: {cfg['la_prior']!r} is for the base algorithms; {alg} adjusts its unlabeled "
                         f"loss with hdl_loss_prior (la_prior allowed here: 'none')")
    from ..usb.logit_adjust import HDL_ADJUSTED, OWN_LOGIT_ADJUSTMENT

    for key, value in (("la_prior", "model"),) + tuple(("hdl_loss_prior", v) for v in HDL_ADJUSTED):
        if cfg.get(key) == value and imb in OWN_LOGIT_ADJUSTMENT:
            raise ValueError(f"{key}: {value!r} with imb_algorithm {imb!r}, whose consistency loss adds its own "
                             f"running class prior: the two adjustments would count the class shares twice "
                             f"(allowed with {imb}: {key} {'none' if key == 'la_prior' else 'auto or none'})")
    for key, value in cfg.items():
        if key in config_keys.KEYS:
            continue
        if not _type_ok(value, defaults[key]):
            raise ValueError(
                f"{key}: expected {type(defaults[key]).__name__}, got {value!r} ({type(value).__name__})"
            )
        if isinstance(defaults[key], float) and isinstance(value, int):
            cfg[key] = float(value)

    for key, allowed in _choices().items():
        if key in cfg and cfg[key] not in allowed:
            raise ValueError(f"{key}: expected one of {list(allowed)}, got {cfg[key]!r}")
    config_keys.validate_usb(cfg)  # USB's numeric keys: ranges from the same table module

    resolved = dict(defaults)
    resolved.update(cfg)
    resolved["multiprocessing_distributed"] = False  # USB's own spawning is never used
    resolved["distributed"] = False  # set by the runner when torchrun launched several processes
    resolved["use_wandb"] = False
    resolved["use_aim"] = False
    resolved["gpu"] = None
    if not resolved.get("save_name"):
        resolved["save_name"] = default_run_name(resolved)
    return argparse.Namespace(**resolved)


def _ratio(value: Any) -> str:
    return f"{value:g}".replace("-", "m")


def default_run_name(cfg: Dict[str, Any]) -> str:
    """``<algorithm>[_<imb_algorithm>]_<dataset>[_<data file or folder stem>]_<num_labels>
    [_lb<lb_imb_ratio>][_ulb<ulb_imb_ratio>]_<seed>``: runs that differ in data, imbalance or
    imbalance algorithm get different names (a reversed ratio -100 reads ``ulbm100``)."""
    import os

    parts = [str(cfg["algorithm"])]
    if cfg.get("imb_algorithm"):
        parts.append(str(cfg["imb_algorithm"]))
    parts.append(str(cfg["dataset"]))
    if cfg["dataset"] in ("npz", "imagefolder") and cfg.get("data_dir"):
        stem = os.path.splitext(os.path.basename(os.path.normpath(str(cfg["data_dir"]))))[0]
        parts.append(stem)
    parts.append(str(cfg["num_labels"]))
    for key, tag in (("lb_imb_ratio", "lb"), ("ulb_imb_ratio", "ulb")):
        if cfg.get(key) not in (None, 1, 1.0):
            parts.append(tag + _ratio(cfg[key]))
    parts.append(str(cfg["seed"]))
    return "_".join(parts)


def dump_config(ns: argparse.Namespace) -> str:
    """The resolved configuration as YAML text (saved next to the run)."""
    skip = {"dist_url", "gpu", "distributed", "world_size", "rank", "c", "dist_backend"}
    data = {k: v for k, v in sorted(vars(ns).items()) if k not in skip and not k.startswith("_")}
    return yaml.safe_dump(data, sort_keys=True)
