"""imagededup-compatible utilities: ``from dedupd.utils import plot_duplicates``.

matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

from dedupd.utils.plotter import PlotArgumentError, plot_duplicates

__all__ = ["PlotArgumentError", "plot_duplicates"]
