"""The house style: palette, fonts and saving (PNG at 300 dpi and SVG, written atomically)."""

from __future__ import annotations

import threading
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from gastrorad.io.atomic import atomic_write  # noqa: E402

#: Colour-blind-safe palette (Okabe-Ito), in the order models are drawn.
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
GREY = "#7F7F7F"

#: pyplot's figure registry and rcParams are process-wide: drawing and saving hold this lock, so
#: threads (the jobs of ``gastrorad serve``) cannot restyle or close each other's figures.
DRAW_LOCK = threading.RLock()

RC = {
    "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9, "legend.fontsize": 8, "xtick.labelsize": 8,
    "ytick.labelsize": 8, "axes.spines.top": False, "axes.spines.right": False, "axes.linewidth": 0.8,
    "lines.linewidth": 1.6, "legend.frameon": False, "svg.fonttype": "none", "figure.dpi": 100,
}


def styled(fn):
    """Run a plotting function inside the house style (fonts, spines, line widths)."""
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with DRAW_LOCK, plt.rc_context(RC):
            return fn(*args, **kwargs)
    return wrapper


def new_figure(width: float = 3.5, height: float = 3.3, **kw):
    """A figure and axes (sizes in inches; 3.5 in = one journal column); call inside :func:`styled`."""
    return plt.subplots(figsize=(width, height), **kw)


def colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


def save_figure(fig, stem: str | Path, *, dpi: int = 300) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.svg`` (atomically) and close it."""
    stem = Path(stem)
    paths = []
    with DRAW_LOCK:
        with plt.rc_context(RC):
            for ext in ("png", "svg"):
                path = stem.with_suffix(f".{ext}")
                with atomic_write(path, suffix=f".{ext}") as tmp:
                    fig.savefig(tmp, dpi=dpi if ext == "png" else None, bbox_inches="tight", format=ext)
                paths.append(path)
        plt.close(fig)
    return paths
