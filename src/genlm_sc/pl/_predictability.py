"""Plot of achieved prediction accuracy against per-gene predictability."""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes
from scipy import stats

from ..tl.expression.predictability import UNS_KEY
from ._labels import label_points

__all__ = ["predictability"]

_LABELS = {
    "gl_silhouette": "separability (best k-means silhouette)",
    "gl_cis_h2": "cis-h² (Haseman–Elston)",
    "n_haplotypes": "distinct haplotypes",
}


def predictability(
    adata: ad.AnnData, *, x: str = "gl_silhouette", y: str | None = None, ax: Axes | None = None
) -> Axes:
    """Achieved r of each gene against a predictability property, one labelled point per gene.

    Parameters
    ----------
    adata
        A cohort after :func:`genlm_sc.tl.predictability`.
    x
        ``var`` column on the horizontal axis (``"gl_silhouette"``, ``"gl_cis_h2"``,
        ``"n_haplotypes"``, …).
    y
        ``var`` column on the vertical axis (default: the r of the fit given as
        ``method_key`` to :func:`genlm_sc.tl.predictability`).
    ax
        Axes to draw into (a new figure when ``None``).

    Returns
    -------
    The Axes: one point per gene with both values, labelled by gene name, the Spearman
    rho across genes in the title.
    """
    if y is None:
        y = adata.uns.get(UNS_KEY, {}).get("params", {}).get("r_column", "")
        if not y:
            raise KeyError(
                "no r to plot: run gl.tl.predictability(method_key=...) or give y (a var column)"
            )
    for column in (x, y):
        if column not in adata.var.columns:
            raise KeyError(f"no var[{column!r}]; run gl.tl.predictability first")
    values = adata.var[[x, y]].astype(np.float64)
    both = values.dropna()
    if both.empty:
        raise ValueError(f"no gene has both var[{x!r}] and var[{y!r}]")
    names = adata.var["gene_name"] if "gene_name" in adata.var else adata.var_names.to_series()
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 4.5))
    ax.scatter(both[x], both[y], s=24, color="tab:blue", edgecolor="k", lw=0.4)
    label_points(ax, names[both.index], both[x], both[y], fontsize=6)
    rho = np.nan
    if len(both) >= 3 and both[x].nunique() > 1 and both[y].nunique() > 1:
        rho = float(stats.spearmanr(both[x], both[y]).statistic)
    ax.set_title(f"Spearman rho = {rho:.2f} ({len(both)} genes)")
    ax.set_xlabel(_LABELS.get(x, x))
    ax.set_ylabel("out-of-fold Pearson r" if y.endswith("_r") else y)
    return ax
