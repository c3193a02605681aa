"""imagededup-compatible utilities: ``from dedupd.utils import plot_duplicates, CustomModel``.

matplotlib is imported only when a plot is drawn; torch only when ``CustomModel`` or
:mod:`dedupd.utils.models` (the model classes) is asked for.
"""

from __future__ import annotations

from typing import Any

from dedupd.utils.plotter import PlotArgumentError, plot_duplicates

__all__ = ["CustomModel", "PlotArgumentError", "plot_duplicates"]


def __getattr__(name: str) -> Any:
    if name == "CustomModel":
        from dedupd.cnn_models import CustomModel

        return CustomModel
    if name == "models":
        import importlib

        return importlib.import_module("dedupd.utils.models")
    raise AttributeError(f"module 'dedupd.utils' has no attribute {name!r}")
