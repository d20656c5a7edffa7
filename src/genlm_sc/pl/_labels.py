"""Names next to scatter points, moved apart so that they overlap neither each other nor
the points (``adjustText``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes


def label_points(
    ax: Axes,
    names: Sequence[str],
    x: Sequence[float],
    y: Sequence[float],
    *,
    avoid_x: Sequence[float] | None = None,
    avoid_y: Sequence[float] | None = None,
    fontsize: float = 7,
) -> list:
    """Write ``names`` at ``(x, y)`` and move them apart, with a thin line to their point.

    ``avoid_x``/``avoid_y``: every point drawn (default: the labelled ones), which the
    labels keep clear of. Returns the text artists.
    """
    from adjustText import adjust_text

    texts = [
        ax.text(xi, yi, str(name), fontsize=fontsize)
        for name, xi, yi in zip(names, x, y, strict=True)
    ]
    if len(texts) > 1 or avoid_x is not None:
        adjust_text(
            texts,
            x=np.asarray(x if avoid_x is None else avoid_x, dtype=float),
            y=np.asarray(y if avoid_y is None else avoid_y, dtype=float),
            ax=ax,
            arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.5},
        )
    return texts
