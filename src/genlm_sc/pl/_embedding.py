"""Plots of a panel's representations: 2-D embeddings and their agreement with labels."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import scanpy as sc
from matplotlib.axes import Axes

from ..tl.language_model.clustering import NULL_NAME

__all__ = ["cluster_agreement", "embedding"]

_HOW_TO_COMPUTE = {
    "umap": "sc.pp.neighbors(adata, use_rep='X_gl'); sc.tl.umap(adata)",
    "tsne": "sc.tl.tsne(adata, use_rep='X_gl')",
    "pca": "sc.pp.pca(adata)",
    "diffmap": "sc.pp.neighbors(adata, use_rep='X_gl'); sc.tl.diffmap(adata)",
    "draw_graph_fa": "sc.pp.neighbors(adata, use_rep='X_gl'); sc.tl.draw_graph(adata)",
}
_LABELS = {
    "nmi": "NMI",
    "ari": "ARI",
    "ami": "AMI",
    "asw": "ASW (rescaled)",
    "mean": "mean(NMI, ARI, ASW)",
    "probe_balanced_accuracy": "probe balanced acc.",
}
_COLORS = {"nmi": "tab:blue", "ari": "tab:orange", "ami": "tab:green"}

Results = ad.AnnData | pd.DataFrame


def embedding(
    adata: ad.AnnData,
    *,
    basis: str = "umap",
    color: str | Sequence[str] | None = None,
    ax: Axes | None = None,
    **kwargs: Any,
) -> Axes | list[Axes]:
    """Scatter plot of a 2-D embedding of the panel, :func:`scanpy.pl.embedding` style.

    Nothing is computed here: run e.g. ``sc.pp.neighbors(adata, use_rep="X_gl")`` and
    ``sc.tl.umap(adata)`` first.

    Parameters
    ----------
    adata
        Observations with ``obsm["X_" + basis]`` (or ``obsm[basis]``).
    basis
        The embedding: ``"umap"``, ``"tsne"``, ``"pca"``, or any ``obsm`` key.
    color
        ``obs`` column(s) to colour by, as in :func:`scanpy.pl.embedding`.
    ax
        Axes to draw into (a new figure when ``None``).
    **kwargs
        Passed to :func:`scanpy.pl.embedding`.

    Returns
    -------
    The Axes (a list of Axes when several colours are given without ``ax``).
    """
    if basis not in adata.obsm and f"X_{basis}" not in adata.obsm:
        how = _HOW_TO_COMPUTE.get(basis, f"store a 2-D array in adata.obsm['X_{basis}']")
        raise KeyError(
            f"no embedding obsm['X_{basis}'] (have {list(adata.obsm)}); compute it first: {how}"
        )
    with warnings.catch_warnings():  # scanpy's own use of a matplotlib call being retired
        warnings.filterwarnings("ignore", "The set_bad function", PendingDeprecationWarning)
        return sc.pl.embedding(adata, basis, color=color, ax=ax, show=False, **kwargs)


def cluster_agreement(
    adata: Results | Mapping[str, Results],
    *,
    key: str = "gl_cluster_agreement",
    metrics: Sequence[str] = ("nmi", "ari", "ami", "probe_balanced_accuracy"),
    title: str | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Agreement of clusters with labels, from :func:`genlm_sc.tl.cluster_agreement`.

    Parameters
    ----------
    adata
        An AnnData with the results in ``uns[key]``, or the results table itself: NMI,
        ARI and AMI against the leiden resolution (lines), the random null dashed, the
        best-NMI resolution marked. Or a mapping name → AnnData or table, to compare
        representations: grouped bars of the summary ``metrics``, each with its random
        null as a black tick and the probe's chance level dotted.
    key
        Key of the results in ``uns``.
    metrics
        Summary metrics compared (mapping input): columns of the results table.
    title
        Title (default: what is shown); the single-representation plot adds the summary
        metrics under it.
    ax
        Axes to draw into (a new figure when ``None``).

    Returns
    -------
    The Axes.
    """
    if isinstance(adata, Mapping):
        tables = {name: _results(value, key) for name, value in adata.items()}
        return _compare(tables, metrics=metrics, title=title, ax=ax)
    return _sweep(_results(adata, key), title=title, ax=ax)


def _results(value: Results, key: str) -> pd.DataFrame:
    if isinstance(value, pd.DataFrame):
        return value
    if key not in value.uns:
        raise KeyError(f"no uns[{key!r}]; run genlm_sc.tl.cluster_agreement first")
    stored = value.uns[key]
    return stored["results"] if isinstance(stored, Mapping) else stored


def _split(table: pd.DataFrame) -> tuple[str, pd.DataFrame, pd.DataFrame | None]:
    """Name and rows of the evaluated representation, and the null's rows (if any)."""
    names = [n for n in pd.unique(table["representation"]) if n != NULL_NAME]
    if not names:
        raise ValueError("the results table has no representation besides the random null")
    null = table[table["representation"] == NULL_NAME]
    return names[0], table[table["representation"] == names[0]], (null if len(null) else None)


def _summary(rows: pd.DataFrame) -> pd.Series:
    return rows[rows["kind"] == "summary"].iloc[0]


def _sweep(table: pd.DataFrame, *, title: str | None, ax: Axes | None) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 5))
    name, rows, null = _split(table)
    for rep, style in ((rows, "-"), (null, "--")):
        if rep is None:
            continue
        leiden = rep[rep["kind"] == "leiden"]
        for metric, color in _COLORS.items():
            label = _LABELS[metric] + (" (random null)" if rep is null else "")
            ax.plot(leiden["resolution"], leiden[metric], style, color=color, label=label)
    best = _summary(rows)
    ax.axvline(best["resolution"], color="grey", ls=":", lw=1)
    ax.plot([best["resolution"]] * 3, best[list(_COLORS)], "o", color="k", ms=4)
    ax.set_xlabel("leiden resolution")
    ax.set_ylabel("agreement with labels")
    heading = title or f"Clusters of {name} vs labels"
    summary = _summary_text(best, None if null is None else _summary(null))
    ax.set_title(f"{heading}\n{summary}", fontsize=9)
    ncols = 3 if null is None else 2  # a column of solid lines, one of dashed
    ax.legend(fontsize=7, ncols=ncols, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    return ax


def _summary_text(best: pd.Series, null: pd.Series | None) -> str:
    """Two lines: the best clustering, then the resolution-free metrics."""
    lines = [
        f"{int(best['n_obs'])} labelled; best NMI (dotted) at resolution {best['resolution']:g} "
        f"({int(best['n_clusters'])} clusters)",
        f"ASW {best['asw']:.3f}, mean {best['mean']:.3f}",
    ]
    if np.isfinite(best["probe_balanced_accuracy"]):
        lines[1] += f"; probe bal. acc. {best['probe_balanced_accuracy']:.3f}"
        if null is not None and np.isfinite(null["probe_balanced_accuracy"]):
            lines[1] += f" (null {null['probe_balanced_accuracy']:.3f})"
        lines[1] += f", chance {best['chance']:.3f}"
    return "\n".join(lines)


def _compare(
    tables: Mapping[str, pd.DataFrame],
    *,
    metrics: Sequence[str],
    title: str | None,
    ax: Axes | None,
) -> Axes:
    if ax is None:
        _, ax = plt.subplots(figsize=(1.5 + 0.6 * len(metrics) * max(len(tables), 2), 4.6))
    metrics = list(metrics)
    width = 0.8 / len(tables)
    centres = np.arange(len(metrics))
    for i, (name, table) in enumerate(tables.items()):
        _, rows, null = _split(table)
        x = centres - 0.4 + width * (i + 0.5)
        values = _summary(rows)[metrics].to_numpy(dtype=float)
        ax.bar(x, values, width * 0.9, label=name, color=f"C{i}")
        tops = values
        if null is not None:
            null_values = _summary(null)[metrics].to_numpy(dtype=float)
            label = "random null (same shape)" if i == 0 else None
            ax.scatter(x, null_values, marker="_", s=250, color="k", lw=2, label=label, zorder=3)
            tops = np.fmax(values, null_values)
        for xi, value, top in zip(x, values, tops, strict=True):
            text = f"{value:.3f}".replace("-0.000", "0.000")
            ax.annotate(
                text,
                (xi, max(top, 0)),
                xytext=(0, 3),
                textcoords="offset points",
                ha="center",
                fontsize=6,
            )
    if "probe_balanced_accuracy" in metrics:
        at = metrics.index("probe_balanced_accuracy")
        chance = _summary(next(iter(tables.values())))["chance"]
        ax.hlines(chance, at - 0.45, at + 0.45, colors="grey", linestyles=":", label="chance")
    ax.set_xticks(centres, [_LABELS.get(m, m) for m in metrics], fontsize=8)
    ax.set_ylabel("at the best-NMI resolution (probe: mean over folds)", fontsize=8)
    ax.set_title(title or "Agreement with labels, by representation", fontsize=10)
    ax.legend(fontsize=7, loc="upper left", framealpha=0.9)
    return ax
