"""``plot_duplicates``: show a file and the duplicates found for it in one matplotlib figure.

matplotlib is imported inside the function, so importing :mod:`dedupd.utils` costs nothing. With
``outfile`` the figure is drawn on a private Agg canvas and saved, without touching pyplot's global
state or any display; without it, the figure goes through pyplot and ``plt.show()`` as in
imagededup.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from dedupd.errors import DedupdError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = logging.getLogger(__name__)

_NCOLS = 4  # duplicates per row; the query image spans the middle two columns of the first row
_FIGSIZE = (10, 14)


class PlotArgumentError(DedupdError, ValueError, AssertionError):
    """Bad arguments to :func:`plot_duplicates` (``ValueError`` and ``AssertionError`` alike, as the
    reference raised one or the other)."""


def _format_score(score: Any) -> str:
    """float32 similarities (the CNN's) to 3 decimals, anything else as it prints, as the reference."""
    import numpy as np

    return f"{score:.3f}" if isinstance(score, np.float32) else f"{score}"


def _entries(retrieved: Sequence[Any]) -> list[tuple[str, str]]:
    """``(filename, title)`` for each duplicate, whether or not the map carries scores."""
    out = []
    for entry in retrieved:
        if isinstance(entry, tuple):
            name, score = entry[0], entry[1]
            out.append((name, f"{name} ({_format_score(score)})"))
        else:
            out.append((entry, str(entry)))
    return out


def _validate(image_dir: str | os.PathLike[str], duplicate_map: Any, filename: str) -> tuple[Path, list]:
    directory = Path(image_dir)
    if not directory.is_dir():
        raise PlotArgumentError(
            f"image directory {str(directory)!r} does not exist or is not a directory; pass the "
            "directory the duplicate map's filenames are relative to"
        )
    if not isinstance(duplicate_map, Mapping):
        raise PlotArgumentError(
            f"duplicate_map must be a dict as returned by find_duplicates, got {type(duplicate_map).__name__}"
        )
    if filename not in duplicate_map:
        raise PlotArgumentError(f"{filename!r} is not a key of duplicate_map; pass one of its filenames")
    retrieved = list(duplicate_map[filename])
    if not retrieved:
        raise PlotArgumentError(f"{filename!r} has no duplicates in duplicate_map: nothing to plot")
    return directory, retrieved


def _draw(fig: Figure, image_dir: Path, filename: str, entries: list[tuple[str, str]]) -> None:
    nrows = math.ceil(len(entries) / _NCOLS) + 1
    grid = fig.add_gridspec(nrows=nrows, ncols=_NCOLS)
    panels: list[tuple[Any, str, str, dict[str, Any]]] = [
        (grid[0, 1:3], filename, f"Original Image: {filename}", {})
    ]
    panels += [
        (grid[i // _NCOLS + 1, i % _NCOLS], name, title, {"fontsize": 6})
        for i, (name, title) in enumerate(entries)
    ]
    for spec, name, title, title_kwargs in panels:
        ax = fig.add_subplot(spec)
        # any format Pillow reads, in its own mode, and Pillow's errors (FileNotFoundError,
        # UnidentifiedImageError, OSError for a truncated file), as in the reference
        with Image.open(image_dir / name) as img:
            img.load()
            ax.imshow(img, cmap="gray" if len(img.getbands()) == 1 else None)
        ax.set_title(title, **title_kwargs)
        ax.axis("off")


def plot_duplicates(
    image_dir: str | os.PathLike[str],
    duplicate_map: dict,
    filename: str,
    outfile: str | os.PathLike[str] | None = None,
) -> None:
    """Plot ``filename`` and its duplicates from ``duplicate_map`` in one figure.

    The query image sits at the top; its duplicates follow in rows of four, titled with their
    filename and, when the map has ``(filename, score)`` entries, the score.

    Args:
        image_dir: directory the map's filenames are relative to.
        duplicate_map: result of ``find_duplicates`` (with or without scores).
        filename: key of ``duplicate_map`` whose duplicates are plotted.
        outfile: where to save the figure (format from the extension, e.g. ``.png``). When given,
            nothing is displayed; when None, the figure is shown with ``plt.show()``.

    Raises:
        PlotArgumentError: ``image_dir`` is not a directory, ``duplicate_map`` is not a dict,
            ``filename`` is not one of its keys, or it has no duplicates.
        OSError: one of the images cannot be read (Pillow's ``FileNotFoundError``,
            ``UnidentifiedImageError``...).

    Example:
        >>> from dedupd.utils import plot_duplicates
        >>> plot_duplicates('photos', duplicates, 'cat.jpg', outfile='cat_dups.png')  # doctest: +SKIP
    """
    directory, retrieved = _validate(image_dir, duplicate_map, filename)
    entries = _entries(retrieved)
    if outfile is not None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=_FIGSIZE, layout="constrained")
        FigureCanvasAgg(fig)
        _draw(fig, directory, filename, entries)
        fig.savefig(outfile)
        logger.debug("saved duplicates of %s (%d) to %s", filename, len(entries), outfile)
        return

    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=_FIGSIZE, layout="constrained")
    try:
        _draw(fig, directory, filename, entries)
        plt.show()
    finally:
        plt.close(fig)
