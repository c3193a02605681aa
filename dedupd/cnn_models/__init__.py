"""CNN feature models: the ``CustomModel`` description and the built-in backbones.

This package's ``__init__`` does not import torch: describing a model is cheap and a hash-only
install can import it. Building a backbone (:func:`load_model`), loading a model file
(:meth:`CustomModel.from_torchscript`, :meth:`CustomModel.from_export`) or running inference (:mod:`dedupd.cnn_models.runtime`)
imports torch on first use; :func:`require_torch` turns its absence into a clear error.

Built-in backbones:

* ``"mobilenet_v3_small"`` (default, 576-d): imagededup's default model, same weights and
  preprocessing; weights from torchvision's cache or a configured file (:mod:`.mobilenet`).
* ``"efficientnet_lite0"`` (1280-d): ImageNet weights installed from the package index, so it
  works offline (:mod:`.efficientnet_lite`).
* ``"efficientnet_lite0_copy"`` (256-d): that backbone plus a head trained for copy detection
  (edited copies close, different photos apart), shipped with dedupd (:mod:`.copy_head`).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from dedupd.errors import ModelUnavailableError

#: imagededup's placeholder name for a model nobody named.
DEFAULT_MODEL_NAME = "default_model"
DEFAULT_BACKBONE = "mobilenet_v3_small"
BUILTIN_MODELS: tuple[str, ...] = ("mobilenet_v3_small", "efficientnet_lite0", "efficientnet_lite0_copy")
FEATURE_DIMS: dict[str, int] = {"mobilenet_v3_small": 576, "efficientnet_lite0": 1280, "efficientnet_lite0_copy": 256}

__all__ = [
    "BUILTIN_MODELS", "CustomModel", "DEFAULT_BACKBONE", "DEFAULT_MODEL_NAME", "FEATURE_DIMS", "daemon_extractor", "load_model",
    "require_torch",
]


def require_torch() -> None:
    """Raise :class:`ModelUnavailableError` with the install command when torch is missing."""
    try:
        import torch  # noqa: F401
        import torchvision  # noqa: F401
    except ImportError as exc:
        raise ModelUnavailableError(
            f"the CNN method needs torch and torchvision ({exc}): install them with `pip install dedupd[cnn]`"
        ) from exc


class CustomModel(NamedTuple):
    """A feature model and its preprocessing, as imagededup's ``CustomModel`` (a named tuple too).

    Attributes:
        name: a name for the model (used in logs and by the daemon to tell encodings apart).
        model: a ``torch.nn.Module`` (or any callable) mapping a (B, C, H, W) float tensor to
            (B, D) features.
        transform: maps one RGB ``PIL.Image`` to the (C, H, W) tensor the model expects.
    """

    name: str = DEFAULT_MODEL_NAME
    model: Any = None
    transform: Callable[[Any], Any] | None = None

    @classmethod
    def builtin(
        cls, name: str = DEFAULT_BACKBONE, weights: str | os.PathLike[str] | None = None, *, allow_download: bool = True
    ) -> CustomModel:
        """One of the :data:`BUILTIN_MODELS`; same as :func:`load_model`."""
        return load_model(name, weights, allow_download=allow_download)

    @classmethod
    def from_torchscript(
        cls,
        path: str | os.PathLike[str],
        name: str | None = None,
        transform: Callable[[Any], Any] | None = None,
        *,
        map_location: str = "cpu",
    ) -> CustomModel:
        """Load a TorchScript feature model (e.g. an exported SSCD copy-detection model).

        Args:
            path: the ``torch.jit.save`` file; the model must map (B, 3, H, W) to (B, D).
            name: model name; default: the file name without extension.
            transform: preprocessing; default: imagededup's (256x256 resize, 224 centre crop,
                ImageNet mean/std).
            map_location: device to load the weights onto.

        Raises:
            ModelUnavailableError: torch is missing or the file cannot be loaded.
        """
        require_torch()
        import torch

        file = Path(path)
        try:
            with warnings.catch_warnings():
                # torch >= 2.10 deprecates TorchScript; existing model files remain loadable
                warnings.filterwarnings("ignore", r"`torch\.jit\.load` is deprecated", FutureWarning)
                model = torch.jit.load(str(file), map_location=map_location)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ModelUnavailableError(f"cannot load TorchScript model {file}: {exc}") from exc
        return cls(name=name or file.stem, model=model.eval(), transform=transform or _default_transform())

    @classmethod
    def from_export(
        cls, path: str | os.PathLike[str], name: str | None = None, transform: Callable[[Any], Any] | None = None
    ) -> CustomModel:
        """Load a ``torch.export`` program (``.pt2``, TorchScript's successor); as :meth:`from_torchscript`.

        Export it with a dynamic batch dimension so that batches of any size run.
        """
        require_torch()
        import torch

        file = Path(path)
        try:
            model = torch.export.load(str(file)).module()
        except (OSError, RuntimeError, ValueError) as exc:
            raise ModelUnavailableError(f"cannot load exported model {file}: {exc}") from exc
        return cls(name=name or file.stem, model=model, transform=transform or _default_transform())


def _default_transform() -> Callable[[Any], Any]:
    from dedupd.cnn_models.mobilenet import TRANSFORM

    return TRANSFORM


def load_model(
    name: str = DEFAULT_BACKBONE, weights: str | os.PathLike[str] | None = None, *, allow_download: bool = True
) -> CustomModel:
    """Build a built-in backbone with its ImageNet weights, in eval mode.

    Args:
        name: one of :data:`BUILTIN_MODELS`.
        weights: explicit weights file (a state dict for that architecture; for
            ``"efficientnet_lite0_copy"``, a head ``.npz`` written by ``tools/train_copy_head.py``).
        allow_download: MobileNetV3 only: when no local file is found, let torchvision download
            it (the library's default, as imagededup); the daemon passes False.

    Raises:
        ValueError: unknown name.
        ModelUnavailableError: torch or the weights are missing; the message says how to fix it.
    """
    if name not in BUILTIN_MODELS:
        raise ValueError(f"unknown model {name!r}: choose one of {', '.join(BUILTIN_MODELS)}")
    require_torch()
    if name == "mobilenet_v3_small":
        from dedupd.cnn_models import mobilenet as module
        model = module.build(weights, allow_download=allow_download)
    elif name == "efficientnet_lite0_copy":
        from dedupd.cnn_models import copy_head as module  # type: ignore[no-redef]
        model = module.build(weights)
    else:
        from dedupd.cnn_models import efficientnet_lite as module  # type: ignore[no-redef]
        model = module.build(weights)
    return CustomModel(name=name, model=model, transform=module.TRANSFORM)


def daemon_extractor(model: str, weights: str | None = None, *, num_threads: int | None = None) -> Any:
    """The daemon's CPU feature extractor: a built-in backbone name or a TorchScript/export file.

    Never downloads: missing weights raise :class:`ModelUnavailableError` saying how to provide them.
    """
    from dedupd.cnn_models.runtime import FeatureExtractor

    if model in BUILTIN_MODELS:
        config = load_model(model, weights, allow_download=False)
    elif str(model).endswith(".pt2"):
        config = CustomModel.from_export(model)
    else:
        config = CustomModel.from_torchscript(model)
    return FeatureExtractor(config, device="cpu", batch_size=16, num_threads=num_threads)
