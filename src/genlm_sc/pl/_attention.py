"""Base × base attention maps (:func:`genlm_sc.tl.attention`)."""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.patches import Rectangle

__all__ = ["attention"]


def attention(
    adata: ad.AnnData | xr.Dataset,
    *,
    gene: str | None = None,
    key: str = "gl_attention",
    layer: int | str = -1,
    head: int | str = "mean",
    motifs: pd.DataFrame | None = None,
    ax: Axes | None = None,
) -> Axes:
    """Heatmap of one head's (or the mean head's) attention between bases.

    Parameters
    ----------
    adata
        A cohort or panel after :func:`genlm_sc.tl.attention` (with ``gene`` and ``key``),
        or the Dataset it stored.
    gene, key
        Which stored attention to draw.
    layer
        Position among the stored layers (``-1``: the last) or ``"mean"``.
    head
        Head index or ``"mean"`` (over the heads).
    motifs
        Motif matches to mark as boxes on the diagonal: a table with ``start`` and ``end``
        (0-based half-open reference coordinates) and ``motif_name`` (or ``motif_id``),
        e.g. from :func:`genlm_sc.tl.scan_motifs` or :func:`genlm_sc.get.motif_matches`.
    ax
        Axes to draw into.

    Returns
    -------
    The Axes: query bases down, key bases across, both labelled with reference
    coordinates in gene orientation; bases that differ from the reference (or the
    cohort's variant sites, for the reference window) are marked in red on both axes.
    """
    ds = adata if isinstance(adata, xr.Dataset) else _stored(adata, gene, key)
    weights = ds["attention"]
    weights = weights.mean("layer") if layer == "mean" else weights.isel(layer=int(layer))
    weights = weights.mean("head") if head == "mean" else weights.isel(head=int(head))
    matrix = weights.values.astype(np.float64)
    n = matrix.shape[0]
    if ax is None:
        _, ax = plt.subplots(figsize=(6.2, 5.4))
    finite = matrix[np.isfinite(matrix)]
    top = float(np.quantile(finite, 0.99)) if finite.size else 1.0
    image = ax.imshow(matrix, cmap="magma", vmin=0, vmax=max(top, 1e-9), interpolation="none")
    plt.colorbar(image, ax=ax, fraction=0.046, pad=0.03, label="attention (base to base)")
    positions = ds["position"].values
    ticks = np.linspace(0, n - 1, num=min(6, n)).round().astype(int)
    labels = [f"{positions[t]:,}" if positions[t] >= 0 else "ins" for t in ticks]
    ax.set_xticks(ticks, labels, rotation=30, ha="right", fontsize=7)
    ax.set_yticks(ticks, labels, fontsize=7)
    for j in np.flatnonzero(ds["variant"].values):  # a tick on each axis, a line across
        ax.axvline(j, color="tab:red", lw=0.6, ls=":", alpha=0.8)
        ax.axhline(j, color="tab:red", lw=0.6, ls=":", alpha=0.8)
        ax.plot([j, j], [-0.5, n * 0.03], color="tab:red", lw=2, clip_on=False)
        ax.plot([-0.5, n * 0.03], [j, j], color="tab:red", lw=2, clip_on=False)
    if motifs is not None:
        _mark_motifs(ax, motifs, positions)
    which = "mean of layers" if layer == "mean" else f"layer {int(ds['layer'].values[layer])}"
    heads = "mean of heads" if head == "mean" else f"head {int(head)}"
    name = ds.attrs.get("gene_name") or ds.attrs.get("gene", "")
    person = f" ({ds.attrs['sample']})" if ds.attrs.get("sample") else ""
    ax.set_title(f"{name} · {ds.attrs.get('sequence', '')}{person} · {which}, {heads}",
                 fontsize=9)  # fmt: skip
    ax.set_xlabel("key base (reference coordinate, gene orientation)")
    ax.set_ylabel("query base")
    return ax


def _stored(adata: ad.AnnData, gene: str | None, key: str) -> xr.Dataset:
    if gene is None:
        raise ValueError("give gene= with an AnnData")
    from ..get import attention as stored

    return stored(adata, gene, key=key)


def _mark_motifs(ax: Axes, motifs: pd.DataFrame, positions: np.ndarray) -> None:
    """A box on the diagonal over the bases of each match (in view)."""
    index = {int(p): j for j, p in enumerate(positions) if p >= 0}
    names = motifs["motif_name"] if "motif_name" in motifs else motifs["motif_id"]
    for start, end, name in zip(motifs["start"], motifs["end"], names, strict=True):
        columns = [index[p] for p in range(int(start), int(end)) if p in index]
        if not columns:
            continue
        lo, hi = min(columns), max(columns)
        ax.add_patch(Rectangle((lo - 0.5, lo - 0.5), hi - lo + 1, hi - lo + 1, fill=False,
                               edgecolor="cyan", lw=1.0))  # fmt: skip
        ax.text(hi + 1, lo, str(name), color="cyan", fontsize=7, va="bottom")
