"""Where torchvision ImageNet weights come from: an explicit file, an environment variable, the cache.

One rule for every torchvision backbone (MobileNetV3-small, EfficientNet-B4, ViT-B/16), in order:

1. the ``weights`` argument (a state-dict file);
2. the backbone's environment variable (e.g. ``DEDUPD_MOBILENET_WEIGHTS``);
3. torchvision's cache, ``<torch hub dir>/checkpoints/<file name of the weights URL>``
   (``$TORCH_HOME/hub``, default ``~/.cache/torch/hub``);
4. only with ``allow_download=True``: torchvision's download into that cache.

Otherwise :class:`~dedupd.errors.ModelUnavailableError` names every way to provide the file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dedupd.errors import ModelUnavailableError


@dataclass(frozen=True)
class HubWeights:
    """One torchvision weights entry and the setting that points at a local copy.

    Attributes:
        label: human name of the network, for messages ("MobileNetV3-small").
        weights: the torchvision ``WeightsEnum`` member (its URL names the file).
        env: environment variable that may hold the path of the file.
    """

    label: str
    weights: Any
    env: str

    @property
    def url(self) -> str:
        return str(self.weights.url)

    @property
    def filename(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def cached_path(self) -> Path:
        """Where torchvision keeps (or would download) the file."""
        return Path(torch.hub.get_dir()) / "checkpoints" / self.filename

    def unavailable_message(self, extra: str = "") -> str:
        """Every way to provide the file, for the error raised when none is found."""
        cache = self.cached_path()
        return (
            f"{self.label} ImageNet weights not found (looked for {cache}). Provide them in one of these ways: "
            f"(1) on a machine with internet, download {self.url} and copy it to {cache} "
            f"(the directory follows $TORCH_HOME, default ~/.cache/torch); "
            f"(2) set {self.env}=/path/to/{self.filename}; "
            f"(3) name the file: methods.cnn.weights in the daemon's config, weights=... in the library; "
            f"(4) in the library, allow torchvision to download it (allow_download=True){extra}."
        )

    def resolve(self, weights: str | os.PathLike[str] | None = None) -> Path | None:
        """The file to use: explicit path, then environment, then cache; None when there is none.

        Raises:
            ModelUnavailableError: an explicitly given path (argument or environment) is not a file.
        """
        for source, value in (("weights argument", weights), (self.env, os.environ.get(self.env) or None)):
            if value is not None:
                path = Path(value).expanduser()
                if not path.is_file():
                    raise ModelUnavailableError(f"{source} points to {path}, which is not a file")
                return path
        cache = self.cached_path()
        return cache if cache.is_file() else None

    def state_dict(
        self, weights: str | os.PathLike[str] | None = None, *, allow_download: bool = True, extra: str = ""
    ) -> dict[str, torch.Tensor]:
        """The state dict, from a local file or (if allowed) torchvision's download.

        Raises:
            ModelUnavailableError: no file and no download allowed, the download failed, or the file
                cannot be read.
        """
        path = self.resolve(weights)
        if path is None:
            if not allow_download:
                raise ModelUnavailableError(self.unavailable_message(extra))
            try:
                return self.weights.get_state_dict(progress=False, check_hash=True, map_location="cpu",
                                                   weights_only=True)
            except (OSError, RuntimeError, ValueError) as exc:  # URLError is an OSError
                raise ModelUnavailableError(f"download failed ({exc}). " + self.unavailable_message(extra)) from exc
        try:
            return torch.load(path, map_location="cpu", weights_only=True)
        except (OSError, RuntimeError, ValueError) as exc:
            raise ModelUnavailableError(f"cannot read {self.label} weights from {path}: {exc}") from exc


def load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], label: str) -> None:
    """``module.load_state_dict(state, strict=True)``, a mismatch reported as ModelUnavailableError."""
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelUnavailableError(f"the {label} weights do not fit the network: {exc}") from exc
