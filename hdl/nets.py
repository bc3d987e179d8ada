"""Small convolutional networks for small images, with USB's network contract.

USB's algorithms call ``net(x)`` and expect a dict ``{'logits': (B, C), 'feat': (B, F)}``; they
also call ``net(x, only_feat=True)`` -> (B, F) features and ``net(feat, only_fc=True)`` -> (B, C)
logits, and read ``net.num_features``.  Normalisation layers are ``BatchNorm2d`` because USB's
``Bn_Controller`` (used by MixMatch/ReMixMatch) only freezes ``BatchNorm2d`` statistics.

Networks are found by name through :func:`get_net`, mirroring how USB's nets are found by name:
``builder = get_net("cnn_small", in_chans=1)``; ``model = builder(num_classes=10)``.
"""
from __future__ import annotations

import functools
from typing import Callable, Dict, Optional

import torch
import torch.nn as nn


def _conv_bn(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1, bias=False),
        nn.BatchNorm2d(cout, momentum=0.01),
        nn.LeakyReLU(0.1, inplace=True),
    )


class SmallCNN(nn.Module):
    """A VGG-style CNN: ``len(widths)`` stages of two 3x3 conv-BN-LeakyReLU, 2x2 max-pool between
    stages (skipped once the map is 2x2 or smaller), global average pooling, a linear classifier.

    Args:
        num_classes: number of classes C.
        in_chans: image channels (1 for grey, 3 for RGB).
        widths: channels of each stage; the last one is ``num_features``.

    Input: float tensor (B, in_chans, H, W), any H, W >= 1.
    """

    def __init__(self, num_classes: int, in_chans: int = 3, widths=(32, 64, 128)):
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if in_chans not in (1, 3):
            raise ValueError(f"in_chans must be 1 or 3, got {in_chans}")
        stages = []
        cin = in_chans
        for w in widths:
            stages.append(nn.Sequential(_conv_bn(cin, w), _conv_bn(w, w)))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.pool = nn.MaxPool2d(2)
        self.num_features = cin
        self.classifier = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.xavier_normal_(m.weight)
                nn.init.zeros_(m.bias)

    def extract(self, x: torch.Tensor) -> torch.Tensor:
        for i, stage in enumerate(self.stages):
            x = stage(x)
            if i < len(self.stages) - 1 and min(x.shape[-2:]) > 2:
                x = self.pool(x)
        return torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: torch.Tensor, only_fc: bool = False, only_feat: bool = False, **kwargs):
        if only_fc:
            return self.classifier(x)
        feat = self.extract(x)
        if only_feat:
            return feat
        return {"logits": self.classifier(feat), "feat": feat}

    def group_matcher(self, coarse: bool = False, prefix: str = "") -> Dict[str, str]:
        return dict(stem=r"^{}stages\.0".format(prefix), blocks=r"^{}stages\.(\d+)".format(prefix))

    def no_weight_decay(self):
        return []


def _small(num_classes: int, in_chans: int = 3, pretrained: bool = False, pretrained_path=None, **kwargs):
    if pretrained:
        raise ValueError("cnn_small has no pretrained weights: set use_pretrain: False")
    return SmallCNN(num_classes, in_chans=in_chans, widths=(32, 64, 128))


def _tiny(num_classes: int, in_chans: int = 3, pretrained: bool = False, pretrained_path=None, **kwargs):
    if pretrained:
        raise ValueError("cnn_tiny has no pretrained weights: set use_pretrain: False")
    return SmallCNN(num_classes, in_chans=in_chans, widths=(16, 32))


def _medium(num_classes: int, in_chans: int = 3, pretrained: bool = False, pretrained_path=None, **kwargs):
    if pretrained:
        raise ValueError("cnn_medium has no pretrained weights: set use_pretrain: False")
    return SmallCNN(num_classes, in_chans=in_chans, widths=(64, 128, 256))


NETS: Dict[str, Callable[..., nn.Module]] = {
    "cnn_tiny": _tiny,
    "cnn_small": _small,
    "cnn_medium": _medium,
}


def get_net(name: str, in_chans: Optional[int] = 3) -> Callable[..., nn.Module]:
    """Return a builder ``f(num_classes, pretrained=False, pretrained_path=None)`` for a project net.

    ``in_chans`` is bound as a keyword (``None``: to be bound by the caller once it is known).

    Raises ValueError naming the allowed names when ``name`` is not a project net.
    """
    if name not in NETS:
        raise ValueError(f"net: unknown project network {name!r}; allowed: {sorted(NETS)}")
    return functools.partial(NETS[name], in_chans=in_chans)
