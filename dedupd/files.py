"""Directory walking and JSON output exactly as imagededup's API does them."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from dedupd.errors import ArgumentTypeError


def list_files(image_dir: str | os.PathLike[str], recursive: bool) -> list[Path]:
    """Absolute paths of the candidate files under ``image_dir``, in ``Path.glob`` order.

    As in the reference: hidden files (name starting with ``.``) and directories are skipped;
    every other file is a candidate whatever its extension (the decoder decides).
    """
    pattern = "**/*" if recursive else "*"
    return [p.absolute() for p in Path(image_dir).glob(pattern) if not (p.name.startswith(".") or p.is_dir())]


def relative_names(image_dir: str | os.PathLike[str], files: Sequence[Path]) -> list[str]:
    """Names relative to ``image_dir`` (the keys of every encoding and duplicate map)."""
    base = Path(image_dir).absolute()
    return [str(f.relative_to(base)) for f in files]


def check_dir(image_dir: Any) -> Path:
    """``image_dir`` as a Path; the reference's ValueError when it is not a directory.

    Raises:
        ArgumentTypeError: ``image_dir`` is None or not path-like (a ``TypeError``, as the reference's).
        ValueError: it is not an existing directory.
    """
    if image_dir is None or not isinstance(image_dir, str | bytes | int | os.PathLike):
        raise ArgumentTypeError(f"image_dir must be the path of a directory of images, got {type(image_dir).__name__}")
    if not os.path.isdir(image_dir):
        raise ValueError("Please provide a valid directory path!")
    return Path(str(image_dir)) if isinstance(image_dir, int) else Path(os.fsdecode(image_dir))


def save_json(results: Mapping[str, Any] | Sequence[Any], filename: str | os.PathLike[str]) -> None:
    """Write ``results`` as imagededup does: indent 2, keys sorted; tuples become lists, numpy scalars numbers."""
    with open(filename, "w") as f:
        json.dump(results, f, indent=2, sort_keys=True, default=_json_scalar)


def _json_scalar(value: Any) -> Any:
    """numpy scalars (CNN similarities are ``float32``) as the Python numbers they hold."""
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:
        return value.item()
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
