"""Plots of expression predictions from :func:`genlm_sc.tl.fit_expression`."""

from __future__ import annotations

from collections.abc import Sequence

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from scipy import sparse

from ..get import gene_id, gene_name
from ..tl.expression.cross_validation import UNS_KEY

__all__ = ["gene_performance", "prediction"]


def prediction(adata: ad.AnnData, *, gene: str, method: str, ax: Axes | None = None) -> Axes:
    """Observed against out-of-fold predicted expression of one gene.

    Parameters
    ----------
    adata
        A cohort after :func:`genlm_sc.tl.fit_expression`.
    gene
        Gene id or unique gene name.
    method
        The fit's name (``key_added`` of :func:`genlm_sc.tl.fit_expression`, by default
        the method).
    ax
        Axes to draw into (a new figure when ``None``).

    Returns
    -------
    The Axes: one point per tested person, the identity line dashed, the out-of-fold
    Pearson r in the title. With covariates, the observed values are the
    covariate-adjusted ones the predictions were scored against.
    """
    layer = f"gl_pred_{method}"
    if layer not in adata.layers:
        raise KeyError(f"no layers[{layer!r}]; run gl.tl.fit_expression(method={method!r})")
    gene = gene_id(adata, gene)
    column = adata.var_names.get_loc(gene)
    predicted = np.asarray(adata.layers[layer][:, column], dtype=np.float64)
    adjusted = f"gl_adjusted_{method}"
    source = adata.layers[adjusted] if adjusted in adata.layers else adata.X
    observed = source[:, column]
    observed = observed.toarray() if sparse.issparse(observed) else np.asarray(observed)
    observed = observed.astype(np.float64).ravel()
    tested = np.isfinite(predicted) & np.isfinite(observed)
    if not tested.any():
        raise ValueError(f"{gene!r} has no out-of-fold predictions for {method!r}")
    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.scatter(predicted[tested], observed[tested], s=8, alpha=0.6, color="tab:blue")
    lo = min(predicted[tested].min(), observed[tested].min())
    hi = max(predicted[tested].max(), observed[tested].max())
    ax.plot([lo, hi], [lo, hi], ls="--", color="grey", lw=1)
    r = adata.var.get(f"gl_{method}_r", pd.Series(dtype=float)).get(gene, np.nan)
    ax.set_title(f"{gene_name(adata, gene)} · {method} · r = {r:.2f}")
    ax.set_xlabel("out-of-fold prediction")
    ax.set_ylabel(
        "observed expression" + (" (covariate-adjusted)" if adjusted in adata.layers else "")
    )
    return ax


def gene_performance(
    adata: ad.AnnData | pd.DataFrame,
    *,
    methods: Sequence[str] | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Out-of-fold r of each gene, methods side by side, with the oracle r when known.

    Parameters
    ----------
    adata
        A cohort after :func:`genlm_sc.tl.fit_expression` (or its results table).
    methods
        Fits to show (default: all in the table, in the order they were fitted).
    ax
        Axes to draw into (a new figure when ``None``).

    Returns
    -------
    The Axes: grouped bars of r per gene (genes ordered by their best r), and for
    simulated expression each gene's oracle r as a black marker: the correlation of the
    true genetic value with the expression in the same tested people (``oracle_r`` of
    :func:`genlm_sc.tl.fit_expression`; with several fits on other people, the first
    fit's).
    """
    table = _results(adata)
    chosen = list(pd.unique(table["method"])) if methods is None else list(methods)
    unknown = sorted(set(chosen) - set(table["method"]))
    if unknown:
        raise KeyError(f"no results for {unknown}; have {sorted(set(table['method']))}")
    table = table[table["method"].isin(chosen)]
    r = table.pivot_table(index="gene", columns="method", values="r", aggfunc="first")
    r = r.reindex(columns=chosen)
    r = r.loc[r.max(axis=1).sort_values(ascending=False, na_position="last").index]
    names = table.drop_duplicates("gene").set_index("gene")["gene_name"].reindex(r.index)
    new_figure = ax is None
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.12 * len(r) * len(chosen) + 2), 4.5))
    x = np.arange(len(r))
    width = 0.8 / len(chosen)
    for i, method in enumerate(chosen):
        ax.bar(x - 0.4 + width * (i + 0.5), r[method].fillna(0), width=width, label=method)
    oracle = table.drop_duplicates("gene").set_index("gene")["oracle_r"].reindex(r.index)
    if oracle.notna().any():
        label = "oracle r (true genetic value)"
        ax.plot(x, oracle, "_", color="k", ms=12, mew=2, ls="none", label=label)
    ax.axhline(0, color="grey", lw=0.8)
    labels = names.fillna(pd.Series(r.index, index=r.index))
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=7)
    ax.set_xlim(-0.6, len(r) - 0.4)
    ax.set_ylabel("out-of-fold Pearson r")
    ax.legend(fontsize=8, frameon=False)
    if new_figure:
        ax.figure.tight_layout()
    return ax


def _results(adata: ad.AnnData | pd.DataFrame) -> pd.DataFrame:
    if isinstance(adata, pd.DataFrame):
        return adata
    stored = adata.uns.get(UNS_KEY, {})
    if "results" not in stored:
        raise KeyError(f"no uns[{UNS_KEY!r}]['results']; run gl.tl.fit_expression first")
    return stored["results"]
