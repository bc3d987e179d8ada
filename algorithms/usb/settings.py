"""The one place where USB's ``args`` namespace is read into a frozen dataclass."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional


@dataclass(frozen=True)
class RunSettings:
    """What the device and dataset layers need from a run's configuration.

    ``run_dir`` is ``save_dir/save_name``; splits, checkpoints and logs live there.
    ``img_size`` 0 keeps the dataset's own image size.
    """

    algorithm: str
    base_name: str
    dataset: str
    data_dir: Optional[str]
    download: bool
    num_labels: int
    ulb_num_labels: Optional[int]
    lb_imb_ratio: float
    ulb_imb_ratio: float
    include_lb_to_ulb: bool
    num_val: int
    seed: int
    img_size: int
    crop_ratio: float
    device: str
    save_dir: str
    save_name: str
    resume: bool
    ulb_num_per_class: Optional[int] = None

    @property
    def run_dir(self) -> str:
        return os.path.join(self.save_dir, self.save_name)

    @classmethod
    def from_args(cls, args: Any, base_name: str) -> "RunSettings":
        def get(name, default):
            return getattr(args, name, default)

        ulb = get("ulb_num_labels", None)
        return cls(
            algorithm=str(get("algorithm", base_name)),
            base_name=base_name,
            dataset=str(get("dataset", "")),
            data_dir=get("data_dir", None),
            download=bool(get("download", False)),
            num_labels=int(get("num_labels", 0)),
            ulb_num_labels=None if ulb in (None, "None") else int(ulb),
            lb_imb_ratio=float(get("lb_imb_ratio", 1)),
            ulb_imb_ratio=float(get("ulb_imb_ratio", 1)),
            include_lb_to_ulb=bool(get("include_lb_to_ulb", True)),
            num_val=int(get("num_val", 0)),
            seed=int(get("seed", 0)),
            img_size=int(get("img_size", 0) or 0),
            crop_ratio=float(get("crop_ratio", 0.875)),
            device=str(get("device", "auto")),
            save_dir=str(get("save_dir", "./saved_models")),
            save_name=str(get("save_name", base_name)),
            resume=bool(get("resume", False)),
            ulb_num_per_class=get("ulb_num_per_class", None),
        )

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)
