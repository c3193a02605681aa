"""EfficientNet-Lite0 with a trained copy-detection head: the ``"efficientnet_lite0_copy"`` model.

The backbone's pooled ImageNet features (1280-d) pass through a small head (standardise, linear,
ReLU, linear, L2-normalise; 256-d) trained by ``tools/train_copy_head.py`` to bring edited copies
of one photo together and push different photos apart (zoom and crop, flips and turns, colour and
lighting, noise, overlays, recompression). The head ships with the package as a NumPy ``.npz``
(float16 weights, no pickle) whose ``meta`` records how it was trained and the recommended
cosine threshold; ``bench/copy_embedding.py`` compares it with the plain backbone on held-out
photos.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dedupd.cnn_models import efficientnet_lite
from dedupd.errors import ModelUnavailableError

NAME = "efficientnet_lite0_copy"
FEATURE_DIM = 256
HEAD_FILE = Path(__file__).resolve().parent / "weights" / f"{NAME}.npz"
TRANSFORM = efficientnet_lite.TRANSFORM

_ARRAYS = ("mean", "std", "w1", "b1", "w2", "b2")


class CopyHead(nn.Module):
    """Standardise → Linear → ReLU → Linear → L2-normalise, on backbone features."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, in_dim: int, hidden: int, dim: int, *, mean: np.ndarray | None = None,
                 std: np.ndarray | None = None) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean if mean is not None else np.zeros(in_dim), dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std if std is not None else np.ones(in_dim), dtype=torch.float32))
        self.fc1 = nn.Linear(in_dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return F.normalize(self.fc2(F.relu(self.fc1(x))), dim=1)

    def quantize_(self) -> CopyHead:
        """Round the weights to float16 and back, as :meth:`save` stores them."""
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(p.half().float())
        return self

    def save(self, path: str | os.PathLike[str], meta: dict[str, Any]) -> None:
        arrays = {"mean": self.mean, "std": self.std, "w1": self.fc1.weight, "b1": self.fc1.bias,
                  "w2": self.fc2.weight, "b2": self.fc2.bias}
        out: dict[str, np.ndarray] = {k: v.detach().numpy().astype(np.float16) for k, v in arrays.items()}
        out["meta"] = np.asarray(json.dumps(meta))
        np.savez_compressed(path, allow_pickle=False, **out)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> CopyHead:
        """Read a head written by :meth:`save` (no pickle).

        Raises:
            ModelUnavailableError: missing or malformed file.
        """
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k].astype(np.float32) for k in _ARRAYS}
        except (OSError, KeyError, ValueError) as exc:
            raise ModelUnavailableError(f"cannot load the {NAME} head from {path}: {exc}; reinstall dedupd "
                                        "or retrain it with tools/train_copy_head.py") from exc
        hidden, in_dim = arrays["w1"].shape
        head = cls(in_dim, hidden, arrays["w2"].shape[0], mean=arrays["mean"], std=arrays["std"])
        with torch.no_grad():
            head.fc1.weight.copy_(torch.from_numpy(arrays["w1"]))
            head.fc1.bias.copy_(torch.from_numpy(arrays["b1"]))
            head.fc2.weight.copy_(torch.from_numpy(arrays["w2"]))
            head.fc2.bias.copy_(torch.from_numpy(arrays["b2"]))
        return head.eval()


def head_meta(path: str | os.PathLike[str] = HEAD_FILE) -> dict[str, Any]:
    """The training record stored with a head (threshold, seed, steps, minutes...)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            return dict(json.loads(str(data["meta"])))
    except (OSError, KeyError, ValueError) as exc:
        raise ModelUnavailableError(f"cannot read the {NAME} head's record from {path}: {exc}") from exc


class CopyDetector(nn.Module):
    """Backbone features → copy-detection embedding (B, 3, 224, 224) → (B, 256), unit length."""

    def __init__(self, backbone: nn.Module, head: CopyHead) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def build(head: str | os.PathLike[str] | None = None) -> CopyDetector:
    """The backbone with its packaged ImageNet weights plus the copy head (``head`` or the shipped one)."""
    return CopyDetector(efficientnet_lite.build(), CopyHead.load(head or HEAD_FILE)).eval()
