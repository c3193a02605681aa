"""imagededup-compatible façade: ``from dedupd.methods import PHash, AHash, DHash, WHash, CNN``.

The hash methods never import torch. ``CNN`` and ``CustomModel`` are resolved on first access, so
a hash-only install imports this package fine and gets a clear message only when it asks for CNN.
"""

from __future__ import annotations

from typing import Any

from dedupd.methods.hashing import AHash, DHash, Hashing, PHash, WHash

__all__ = ["AHash", "CNN", "CustomModel", "DHash", "Hashing", "PHash", "WHash"]


def __getattr__(name: str) -> Any:
    if name in ("CNN", "CustomModel"):
        from dedupd.methods import cnn

        return getattr(cnn, name)
    raise AttributeError(f"module 'dedupd.methods' has no attribute {name!r}")
