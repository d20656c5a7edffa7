"""Plots of a cohort's haplotypes."""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.axes import Axes

from ._labels import label_points


def haplotype_diversity(adata: ad.AnnData, *, label: int = 4, ax: Axes | None = None) -> Axes:
    """Distinct haplotypes per gene against the number of variants in its window.

    Parameters
    ----------
    adata
        A cohort from :func:`genlm_sc.pp.personal_sequences`.
    label
        Name this many genes at each end (most and fewest distinct haplotypes).
    ax
        Axes to draw into (a new figure when ``None``).

    Returns
    -------
    The Axes. The dashed line is the number of person-haplotypes (``2 × people``), the
    most there could be; the gap to it is the work saved by embedding each distinct
    haplotype once.
    """
    var = adata.var
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4.5))
    colors = np.where(var["strand"] == "-", "tab:orange", "tab:blue")
    ax.scatter(var["n_variants"], var["n_haplotypes"], c=colors, s=28, edgecolor="k", lw=0.4)
    ax.axhline(2 * adata.n_obs, ls="--", c="grey", lw=1)
    ax.text(
        ax.get_xlim()[0], 2 * adata.n_obs, f" 2 × {adata.n_obs} people", va="bottom", fontsize=8
    )
    ranked = var.sort_values("n_haplotypes")
    ends = np.unique(np.r_[: min(label, len(ranked)), max(len(ranked) - label, 0) : len(ranked)])
    named = ranked.iloc[ends] if label else ranked.iloc[:0]
    ax.set_yscale("log")  # before the labels are placed: they are moved in display space
    label_points(ax, named["gene_name"], named["n_variants"], named["n_haplotypes"],
                 avoid_x=var["n_variants"], avoid_y=var["n_haplotypes"])  # fmt: skip
    ax.set_xlabel("variants in window")
    ax.set_ylabel("distinct haplotypes")
    ax.set_title("Haplotype diversity per gene (blue: + strand, orange: − strand)", fontsize=9)
    return ax
