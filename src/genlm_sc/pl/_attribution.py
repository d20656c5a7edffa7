"""Plots of attributions (:func:`genlm_sc.tl.attribute`) and variant effects
(:func:`genlm_sc.tl.variant_effects`)."""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes

from .._dna import BASES
from ..get import gene_index, haplotype_store, is_cohort
from ._labels import label_points

__all__ = ["attribution", "ism", "variant_effects"]


def _dataset(adata: ad.AnnData | xr.Dataset, gene: str | None, key: str) -> xr.Dataset:
    if isinstance(adata, xr.Dataset):
        return adata
    if gene is None:
        raise ValueError("give gene= with an AnnData")
    from ..get import attribution as stored

    return stored(adata, gene, key=key)


def _around(ds: xr.Dataset, center: int | None, flank: int) -> xr.Dataset:
    """The positions within ``flank`` of ``center`` (a reference coordinate)."""
    positions = ds["position"].values
    if center is None:
        center = int(positions[len(positions) // 2])
    near = np.abs(positions - int(center)) <= flank
    if not near.any():
        raise ValueError(f"position {center} is not in the window")
    return ds.isel(position=np.flatnonzero(near))


#: How each ``method`` of :func:`genlm_sc.tl.attribute` is named on axes.
METHOD_LABELS = {
    "ism": "ISM importance",
    "grad_x_input": "gradient × input",
    "integrated_gradients": "integrated gradients",
    "deeplift_shap": "DeepLIFT-SHAP",
}


def base_importance(ds: xr.Dataset, sequence: str = "reference") -> np.ndarray:
    """Height of each observed base: for ISM minus the mean change of the three
    substitutions (how much changing it costs), for gradient methods the position's
    attribution summed over the four bases (only the own base is non-zero for gradient ×
    input and a zero baseline)."""
    values = ds["attribution"].sel(sequence=sequence).values.astype(np.float64)
    observed = ds["observed"].sel(sequence=sequence).values
    out = np.full(len(observed), np.nan)
    for j, code in enumerate(observed):
        base = BASES.find(chr(code)) if code else -1
        if base < 0:
            continue
        if ds.attrs.get("method") == "ism":
            others = np.delete(values[j], base)
            out[j] = -np.mean(others)
        else:
            out[j] = np.nansum(values[j]) if np.isfinite(values[j]).any() else np.nan
    return out


def attribution(
    adata: ad.AnnData | xr.Dataset,
    *,
    gene: str | None = None,
    key: str = "gl_ism_expression",
    sequence: str = "reference",
    center: int | None = None,
    flank: int = 30,
    variants: bool = True,
    ax: Axes | None = None,
) -> Axes:
    """Sequence-logo track of attributions around a position, variants marked.

    Parameters
    ----------
    adata
        A cohort or panel after :func:`genlm_sc.tl.attribute` (with ``gene`` and ``key``),
        or the Dataset it returned.
    gene, key
        Which stored attribution to draw.
    sequence
        ``"reference"`` or a ``"haplotype_<index>"`` of the Dataset.
    center
        Reference coordinate (0-based) to centre on (default: the middle of the window).
    flank
        Bases shown on each side.
    variants
        Mark the cohort's variants in view (vertical line and ID) when ``adata`` is a
        cohort.
    ax
        Axes to draw into.

    Returns
    -------
    The Axes. Each position shows its own base, scaled by its importance: the position's
    attribution (summed over the four bases) for gradient × input, integrated gradients
    and DeepLIFT-SHAP, and for ISM minus the mean score change of the three
    substitutions (tall letters above the axis are bases the score depends on). The x
    axis is in reference coordinates, in gene orientation.
    """
    import logomaker

    ds = _around(_dataset(adata, gene, key), center, flank)
    heights = base_importance(ds, sequence)
    observed = ds["observed"].sel(sequence=sequence).values
    matrix = np.zeros((len(heights), 4))
    for j, code in enumerate(observed):
        base = BASES.find(chr(code)) if code else -1
        if base >= 0 and np.isfinite(heights[j]):
            matrix[j, base] = heights[j]
    frame = pd.DataFrame(matrix, columns=list(BASES))
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, len(frame) * 0.18), 2.6))
    logomaker.Logo(frame, ax=ax, color_scheme="classic", flip_below=False)
    ax.axhline(0, color="black", lw=0.6)
    positions = ds["position"].values
    ticks = np.linspace(0, len(positions) - 1, num=min(7, len(positions))).round().astype(int)
    ax.set_xticks(ticks, [f"{positions[t]:,}" for t in ticks])
    ax.set_ylabel("{}\n({})".format(*_method_label(ds)))
    ax.set_xlabel(f"position on {ds.attrs.get('chrom', '')} (0-based, gene orientation)")
    title = f"{_gene_label(ds)} · {sequence}"
    if variants and isinstance(adata, ad.AnnData) and is_cohort(adata):
        _mark_variants(ax, adata, ds)
    ax.set_title(title)
    return ax


def _mark_variants(ax: Axes, cohort: ad.AnnData, ds: xr.Dataset) -> None:
    store = haplotype_store(cohort)
    g, _, _ = gene_index(cohort, ds.attrs["gene"])
    rows = np.flatnonzero(store["variant_gene"].values == g)
    column = {int(p): j for j, p in enumerate(ds["position"].values)}
    top = ax.get_ylim()[1]
    for row in rows:
        j = column.get(int(store["variant_position"].values[row]))
        if j is None:
            continue
        ax.axvline(j, color="tab:red", lw=0.8, ls=":", zorder=0)
        ax.text(j, top, str(store["variant_id"].values[row]), rotation=90, fontsize=7,
                color="tab:red", ha="center", va="top")  # fmt: skip


def ism(
    adata: ad.AnnData | xr.Dataset,
    *,
    gene: str | None = None,
    key: str = "gl_ism_expression",
    sequence: str = "reference",
    center: int | None = None,
    flank: int = 50,
    ax: Axes | None = None,
) -> Axes:
    """Heatmap of attributions for every base at every position.

    Parameters are those of :func:`attribution`. Returns the Axes: rows A, C, G, T
    (gene orientation), columns the positions, a diverging colour scale centred on 0; the
    sequence's own base is outlined. For ISM each cell is the score change of writing
    that base (0 at the own base); for gradient methods the stored attribution (with
    a non-zero baseline such as integrated gradients' ``"uniform"`` or DeepLIFT-SHAP's,
    every base has one).
    """
    ds = _around(_dataset(adata, gene, key), center, flank)
    values = ds["attribution"].sel(sequence=sequence).values.T.astype(np.float64)
    limit = np.nanmax(np.abs(values)) if np.isfinite(values).any() else 1.0
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, values.shape[1] * 0.12), 2.2))
    image = ax.imshow(values, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit,
                      interpolation="nearest")  # fmt: skip
    observed = ds["observed"].sel(sequence=sequence).values
    for j, code in enumerate(observed):
        base = BASES.find(chr(code)) if code else -1
        if base >= 0:
            ax.add_patch(plt.Rectangle((j - 0.5, base - 0.5), 1, 1, fill=False, lw=0.6))
    ax.set_yticks(range(4), list(BASES))
    positions = ds["position"].values
    ticks = np.linspace(0, len(positions) - 1, num=min(7, len(positions))).round().astype(int)
    ax.set_xticks(ticks, [f"{positions[t]:,}" for t in ticks])
    ax.set_xlabel(f"position on {ds.attrs.get('chrom', '')} (0-based, gene orientation)")
    method = ds.attrs.get("method", "ism")
    name, details = _method_label(ds)
    name = "ISM" if method == "ism" else name
    ax.set_title(f"{_gene_label(ds)} · {sequence} · {name} ({details})")
    label = "score change" if method == "ism" else "attribution"
    ax.figure.colorbar(image, ax=ax, label=label, fraction=0.03, pad=0.01)
    return ax


def variant_effects(
    adata: ad.AnnData | pd.DataFrame,
    *,
    gene: str | None = None,
    x: str = "delta_expression",
    y: str = "eqtl_slope",
    key: str = "gl_variant_effects",
    label_top: int = 5,
    ax: Axes | None = None,
) -> Axes:
    """Predicted variant effects against measured (or planted) ones.

    Parameters
    ----------
    adata
        A cohort after :func:`genlm_sc.tl.variant_effects` (with ``gene``), or its table.
    x, y
        Columns to plot (e.g. ``"delta_expression"`` against ``"eqtl_slope"``, or a
        zero-shot ``"llr_masked"`` against a simulated effect column).
    key
        ``key_added`` of :func:`genlm_sc.tl.variant_effects`.
    label_top
        Label the variants with the largest ``|x|``.
    ax
        Axes to draw into.

    Returns
    -------
    The Axes: one point per variant allele with both values, sign-agreeing points in blue
    and the others in orange, axes through 0, the share with the same sign in the title.
    """
    if isinstance(adata, pd.DataFrame):
        table = adata
    else:
        store = adata.uns.get(key, {})
        found = [g for g in store if g == gene or g.split(".")[0] == str(gene).split(".")[0]]
        if not found and gene is not None and "gene_name" in adata.var.columns:
            ids = adata.var_names[adata.var["gene_name"].astype(str) == gene]
            found = [g for g in store if g in set(ids)]
        if not found:
            raise KeyError(f"no variant effects for {gene!r}; run gl.tl.variant_effects")
        table = store[found[0]]
    for column in (x, y):
        if column not in table:
            raise KeyError(f"no column {column!r} in the variant-effect table")
    both = table[np.isfinite(table[x].astype(float)) & np.isfinite(table[y].astype(float))]
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 4.2))
    agree = np.sign(both[x]) == np.sign(both[y])
    ax.scatter(both.loc[agree, x], both.loc[agree, y], s=18, color="tab:blue", label="same sign")
    ax.scatter(both.loc[~agree, x], both.loc[~agree, y], s=18, color="tab:orange",
               label="opposite sign")  # fmt: skip
    ax.axhline(0, color="grey", lw=0.6)
    ax.axvline(0, color="grey", lw=0.6)
    top = both.loc[both[x].abs().sort_values(ascending=False).index[:label_top]]
    label_points(ax, top["variant_id"], top[x], top[y], avoid_x=both[x], avoid_y=both[y])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    share = agree.mean() if len(both) else np.nan
    ax.set_title(f"{gene or ''}  same sign {share:.0%} of {len(both)}")
    if len(both):
        ax.legend(fontsize=7, frameon=False)
    return ax


def _method_label(ds: xr.Dataset) -> tuple[str, str]:
    """The name of the stored result's method, and its target (with the baseline)."""
    method = str(ds.attrs.get("method", ""))
    baseline = ds.attrs.get("baseline")
    target = str(ds.attrs.get("target", ""))
    details = f"{baseline} baseline, {target}" if baseline else target
    return METHOD_LABELS.get(method, method), details


def _gene_label(ds: xr.Dataset) -> str:
    """The gene's name for titles (results stored before names were recorded: its id)."""
    return str(ds.attrs.get("gene_name") or ds.attrs.get("gene", ""))
