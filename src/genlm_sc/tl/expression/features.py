"""What the expression methods fit on: each gene's expression, cis dosages, embeddings,
covariates."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anndata as ad
import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse

from ...get import anchor_coordinate, gene_id, gene_view, haplotype_store

__all__ = [
    "covariate_matrix",
    "covariate_names",
    "dosage_source",
    "embedding_source",
    "expression_values",
    "resolve_genes",
    "variant_name",
    "window_anchor",
]


def resolve_genes(adata: ad.AnnData, genes: Sequence[str] | None) -> list[str]:
    """Gene ids of ``adata`` from ids or unique gene names (default: all)."""
    if genes is None:
        return list(adata.var_names)
    if isinstance(genes, str):
        genes = [genes]
    return [gene_id(adata, gene) for gene in genes]


def expression_values(adata: ad.AnnData, gene: str, *, layer: str | None = None) -> np.ndarray:
    """Expression of one gene (``X``'s column, or ``layer``'s) as float64, one value per person."""
    view = adata[:, gene]
    column = view.X if layer is None else view.layers[layer]
    column = column.toarray() if sparse.issparse(column) else np.asarray(column)
    return column.astype(np.float64).ravel()


def covariate_matrix(
    adata: ad.AnnData, covariates: Sequence[str] | pd.DataFrame | None
) -> np.ndarray | None:
    """Numeric people × covariates (categorical columns as indicators, first level dropped)."""
    if covariates is None:
        return None
    if isinstance(covariates, pd.DataFrame):
        missing = adata.obs_names.difference(covariates.index)
        if len(missing):
            raise KeyError(f"covariates lack {len(missing)} people, e.g. {list(missing[:5])}")
        table = covariates.loc[adata.obs_names]
    else:
        columns = [covariates] if isinstance(covariates, str) else list(covariates)
        unknown = [c for c in columns if c not in adata.obs.columns]
        if unknown:
            raise KeyError(f"no covariate columns {unknown} in obs")
        table = adata.obs[columns]
    if table.shape[1] == 0:
        return None
    table = pd.get_dummies(table, drop_first=True, dtype=np.float64)
    matrix = table.to_numpy(dtype=np.float64)
    if not np.isfinite(matrix).all():
        raise ValueError("covariates have missing or non-finite values")
    return matrix


def covariate_names(covariates: Sequence[str] | pd.DataFrame | None) -> np.ndarray:
    if covariates is None:
        return np.array([], dtype=str)
    if isinstance(covariates, pd.DataFrame):
        return np.asarray(covariates.columns, dtype=str)
    return np.asarray([covariates] if isinstance(covariates, str) else covariates, dtype=str)


def dosage_source(
    adata: ad.AnnData, *, window: int
) -> Callable[[str], tuple[np.ndarray, list[str]]]:
    """Gene → (people × ALT-allele dosages of its cis variants, their names)."""
    ds = haplotype_store(adata)
    store_gene = {str(g): i for i, g in enumerate(ds["gene"].values)}
    store_row = {str(s): i for i, s in enumerate(ds["sample"].values)}
    missing = [s for s in adata.obs_names if s not in store_row]
    if missing:
        raise KeyError(f"people missing from the haplotype store: {missing[:5]}")
    rows = np.array([store_row[s] for s in adata.obs_names], dtype=np.int64)
    variant_gene = ds["variant_gene"].values
    position = ds["variant_position"].values

    def dosages(gene: str) -> tuple[np.ndarray, list[str]]:
        g = store_gene[gene]
        index = np.flatnonzero(variant_gene == g)
        index = index[np.abs(position[index] - window_anchor(ds, g)) <= window]
        genotype = ds["genotype"].isel(variant=index).values[rows]
        columns, names = [], []
        for j, v in enumerate(index):
            alts = str(ds["variant_alt"].values[v]).split(",")
            for allele, alt in enumerate(alts, start=1):
                column = (genotype[:, j, :] == allele).sum(axis=1)
                if np.ptp(column) > 0:
                    columns.append(column)
                    names.append(variant_name(ds, v, alt, multiallelic=len(alts) > 1))
        x = np.column_stack(columns).astype(np.float64) if columns else np.empty((rows.size, 0))
        return x, names

    return dosages


def window_anchor(ds: xr.Dataset, g: int) -> int:
    """Reference coordinate of a window's anchor: index ``width // 2`` in gene orientation."""
    start = int(ds["gene_window_start"].values[g])
    end = int(ds["gene_window_end"].values[g])
    return anchor_coordinate(start, end, minus=str(ds["gene_strand"].values[g]) == "-")


def variant_name(ds: xr.Dataset, v: int, alt: str, *, multiallelic: bool) -> str:
    """The variant's ID (``chrom:pos:ref:alt`` when it has none), ``:alt`` if multi-allelic."""
    identifier = str(ds["variant_id"].values[v])
    if identifier in ("", "."):
        g = int(ds["variant_gene"].values[v])
        chrom = str(ds["gene_chrom"].values[g])
        position = int(ds["variant_position"].values[v]) + 1
        return f"{chrom}:{position}:{ds['variant_ref'].values[v]}:{alt}"
    return f"{identifier}:{alt}" if multiallelic else identifier


def embedding_source(
    adata: ad.AnnData, *, use_rep: str, diploid: str
) -> Callable[[str], tuple[np.ndarray, list[str]]]:
    """Gene → (people × person-level embedding features, their names)."""

    def embeddings(gene: str) -> tuple[np.ndarray, list[str]]:
        x = np.asarray(gene_view(adata, gene, key=use_rep, diploid=diploid).obsm[use_rep])
        return x.astype(np.float64), [f"{use_rep}_{i}" for i in range(x.shape[1])]

    return embeddings
