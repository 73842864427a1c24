"""Loss plots (matplotlib, Agg backend: works without a display)."""

from __future__ import annotations

import os
import tempfile

from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

__all__ = ["plot_losses"]


def plot_losses(path: str, curves: dict, optimum: float | None = None,
                title: str = "", ylabel: str = "training MSE (user units)") -> str:
    """Write a PNG of per-epoch losses, one line per label, with the optimum as a dashed line.

    Written to a temporary file in the target folder and renamed, so a failed run never leaves
    a half-written plot.  Returns ``path``.
    """
    # a Figure of its own, not pyplot's: no global backend or figure state, renders with Agg
    fig = Figure(figsize=(6.4, 4.2), dpi=110)
    ax = fig.subplots()
    for label, ys in curves.items():
        ax.plot(range(1, len(ys) + 1), ys, marker="o", ms=3, label=label)
    if optimum is not None:
        ax.axhline(optimum, ls="--", color="k", lw=1, label="least-squares optimum")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    vals = [v for ys in curves.values() for v in ys if v > 0]
    if vals and max(vals) / min(vals) > 20:
        ax.set_yscale("log")
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".png", dir=folder)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
