"""Which genes can be predicted: separability in embedding space, diversity, cis-heritability."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Sequence
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd
from scipy import stats
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score

from .features import dosage_source, expression_values, resolve_genes

__all__ = ["best_silhouette", "cis_heritability", "common_variants", "predictability"]

#: ``uns`` key of the settings and the across-gene correlations.
UNS_KEY = "gl_predictability"
#: Default grid of k-means cluster numbers.
N_CLUSTERS = tuple(range(2, 9))
#: People beyond which the silhouette is computed on a random sample of this size.
MAX_SILHOUETTE_PEOPLE = 5000
#: Restarts of each k-means fit.
KMEANS_INIT = 4


def predictability(
    adata: ad.AnnData,
    *,
    use_rep: str = "X_gl",
    diploid: Literal["concat", "mean"] = "concat",
    n_clusters: Iterable[int] = N_CLUSTERS,
    method_key: str | None = None,
    genes: Sequence[str] | None = None,
    window: int = 1_000_000,
    min_maf: float = 0.05,
    random_state: int | None = 0,
    key_added: str = UNS_KEY,
    copy: bool = False,
) -> ad.AnnData | None:
    """Per gene: how separable people are in embedding space, and how heritable expression is.

    Three properties that may explain why a genotype-to-expression model works for some
    genes and not for others, and, given a fitted method, how they relate to the r it
    achieved:

    Separability (``silhouette``)
        People's person-level embeddings of the gene (:func:`genlm_sc.get.gene_view`,
        Euclidean distance, no scaling) are clustered by k-means for every k in
        ``n_clusters`` (k above the number of distinct embeddings is skipped); the best
        mean silhouette width over the grid is kept (Rousseeuw 1987), with its k. Near 1:
        people fall into tight, well-separated groups (typically carriers of a few common
        haplotypes); near 0: a continuum. People sharing a haplotype pair have identical
        embeddings, so genes with only a handful of haplotypes score high: read it next to
        ``n_haplotypes``. NaN when there are fewer than two distinct embeddings or the
        gene has no embedding.
    Diversity (``n_haplotypes``)
        Distinct haplotypes of the gene in the cohort (``var["n_haplotypes"]``).
    Cis-heritability (``cis_h2``)
        Haseman–Elston regression (Haseman & Elston 1972, *Behav. Genet.* 2:3–19; in its
        SNP-heritability form, Sham & Purcell 2014, *Nat. Rev. Genet.* 15:335–346, and
        GCTA's ``--HEreg``, Yang et al. 2011, *Am. J. Hum. Genet.* 88:76–82) of the
        gene's expression on a cis genetic relationship matrix; see
        :func:`cis_heritability`. The dosages are those of PrediXcan in
        :func:`genlm_sc.tl.fit_expression` (ALT allele counts of the variants within
        ``window`` bp of the anchor) with a minor allele frequency of at least
        ``min_maf``. NaN without expression in ``X`` or without such a variant.

    Parameters
    ----------
    adata
        A cohort embedded by :func:`genlm_sc.tl.embed`, with expression in ``X`` for the
        heritability.
    use_rep
        The haplotype embedding (``key_added`` of :func:`genlm_sc.tl.embed`).
    diploid
        How a person's two haplotype embeddings are combined (see
        :func:`genlm_sc.get.gene_view`).
    n_clusters
        Grid of k-means cluster numbers (each at least 2).
    method_key
        A fit of :func:`genlm_sc.tl.fit_expression` (its ``key_added`` or method) whose
        per-gene ``var["gl_" + method_key + "_r"]`` is compared with the properties.
    genes
        Gene ids or unique names (default: all).
    window
        Cis window of the heritability's dosages, in bp either side of the anchor.
    min_maf
        Smallest minor allele frequency of a variant in the heritability's relationship
        matrix (see :func:`cis_heritability`).
    random_state
        Seed of k-means (and of the people sampled for the silhouette of a large cohort).

    key_added
        The ``uns`` key of the results.
    copy
        Work on and return a copy of ``adata``.

    Returns
    -------
    ``None``, or the annotated copy when ``copy=True``. The table
    (:func:`genlm_sc.get.predictability`) is indexed by gene id with ``gene_name``,
    ``n_haplotypes``, ``silhouette``,
    ``silhouette_k`` (the best k), ``cis_h2`` (with ``cis_h2_outside_0_1`` flagging
    estimates outside [0, 1], with a warning), ``n_cis_variants`` (variants kept for
    it) and, with
    ``method_key``, ``r``. Sets ``adata.var`` columns ``gl_silhouette``,
    ``gl_silhouette_k``, ``gl_cis_h2`` and ``gl_n_cis_variants`` (NaN for genes not
    computed), and ``adata.uns[key_added]``: ``"table"``, ``"params"`` (the settings and
    ``r_column``, the ``var`` column of r or ``""``) and ``"correlations"``: a table of
    Spearman rho (with its p-value and the number of genes with both values) of r
    against silhouette, number of haplotypes and cis-h², and of silhouette against
    cis-h².
    """
    grid = sorted({int(k) for k in n_clusters})
    if not grid or grid[0] < 2:
        raise ValueError(f"n_clusters must be integers of at least 2, not {grid}")
    adata = adata.copy() if copy else adata
    r_column = _r_column(adata, method_key)
    gene_ids = resolve_genes(adata, genes)
    separability = _separability(adata, gene_ids, use_rep, diploid, grid, random_state)
    heritability = _heritability(adata, gene_ids, window, min_maf)

    var = adata.var.loc[gene_ids]
    table = pd.DataFrame(index=pd.Index(gene_ids, name="gene"))
    names = var["gene_name"] if "gene_name" in var else pd.Series(gene_ids, index=gene_ids)
    table["gene_name"] = names.astype(str).to_numpy()
    n_haplotypes = var["n_haplotypes"] if "n_haplotypes" in var else np.nan
    table["n_haplotypes"] = np.asarray(n_haplotypes, dtype=np.float64) * np.ones(len(gene_ids))
    table = table.join(separability).join(heritability)
    table["cis_h2_outside_0_1"] = (table["cis_h2"] < 0) | (table["cis_h2"] > 1)
    if table["cis_h2_outside_0_1"].any():
        outside = table.loc[table["cis_h2_outside_0_1"], "cis_h2"].round(2).to_dict()
        warnings.warn(
            f"cis-h² estimates outside [0, 1] for {len(outside)} gene(s) ({outside}): "
            "Haseman-Elston estimates are unconstrained and noisy with few people or "
            "variants; they are flagged in the column cis_h2_outside_0_1",
            UserWarning,
            stacklevel=2,
        )
    if r_column:
        table["r"] = var[r_column].astype(np.float64).to_numpy()

    for column, name in [
        ("silhouette", "gl_silhouette"),
        ("silhouette_k", "gl_silhouette_k"),
        ("cis_h2", "gl_cis_h2"),
        ("n_cis_variants", "gl_n_cis_variants"),
    ]:
        if name not in adata.var.columns:
            adata.var[name] = np.nan
        adata.var.loc[gene_ids, name] = table[column].to_numpy(dtype=np.float64)
    adata.uns[key_added] = {
        "table": table,
        "params": {
            "use_rep": use_rep,
            "diploid": diploid,
            "n_clusters": np.asarray(grid),
            "method_key": method_key or "",
            "r_column": r_column,
            "window": int(window),
            "min_maf": float(min_maf),
            "random_state": -1 if random_state is None else int(random_state),
        },
        "correlations": _correlations(table),
    }
    return adata if copy else None


def best_silhouette(
    x: np.ndarray, *, n_clusters: Iterable[int] = N_CLUSTERS, random_state: int | None = 0
) -> tuple[float, int]:
    """Best mean silhouette width of k-means clusterings of ``x`` over a grid of k.

    Parameters
    ----------
    x
        Observations × features (Euclidean distance).
    n_clusters
        The k tried; those above the number of distinct rows of ``x`` are skipped.
    random_state
        Seed of k-means (``n_init=4``) and of the sample of a large ``x``
        (more than ``MAX_SILHOUETTE_PEOPLE`` rows).

    Returns
    -------
    The best silhouette and its k; ``(nan, -1)`` when ``x`` has fewer than two distinct
    finite rows.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 3 or not np.isfinite(x).all():
        return np.nan, -1
    n_distinct = np.unique(x, axis=0).shape[0]
    sample = MAX_SILHOUETTE_PEOPLE if x.shape[0] > MAX_SILHOUETTE_PEOPLE else None
    best, best_k = np.nan, -1
    for k in sorted({int(k) for k in n_clusters}):
        if k < 2 or k > n_distinct or k >= x.shape[0]:
            continue
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            labels = KMeans(k, n_init=KMEANS_INIT, random_state=random_state).fit_predict(x)
        if np.unique(labels).size < 2:
            continue
        score = float(silhouette_score(x, labels, sample_size=sample, random_state=random_state))
        if not score <= best:  # also replaces the initial NaN
            best, best_k = score, k
    return best, best_k


def cis_heritability(dosages: np.ndarray, y: np.ndarray, *, min_maf: float = 0.05) -> float:
    """Haseman–Elston regression estimate of the heritability explained by ``dosages``.

    The genotypes are standardised per variant (``Z``, people × m) and define the genetic
    relationship matrix ``A = Z Zᵀ / m`` (GCTA's GRM, Yang et al. 2011); the phenotype is
    standardised to mean 0 and variance 1. Under the random-effects model
    ``y = Z b + e`` with ``b ~ N(0, h² / m)``, ``E[y_i y_j] = h² A_ij`` for ``i ≠ j``, so
    regressing the products ``y_i y_j`` of all pairs of distinct people on ``A_ij`` (with
    an intercept) estimates h² by its slope (Haseman & Elston 1972; Sham & Purcell 2014).
    The sums over pairs are taken from ``A`` in closed form, without listing pairs.

    The estimate is a method-of-moments one: unbiased but not constrained to [0, 1]
    (it is negative or above 1 by chance for small cohorts or few variants). Rare
    variants are left out (``min_maf``): a standardised variant carried by a handful of
    people has almost no off-diagonal relatedness to contribute (its signal sits on the
    diagonal that HE regression ignores), yet counts in ``m``, so each one would inflate
    the estimate by about ``m / (m - 1)`` (a factor of 2 for one common variant next to
    one singleton). Unequal LD of causal and non-causal variants biases it too, as for
    any GRM-based estimate of a sparse architecture.

    Parameters
    ----------
    dosages
        People × variants (allele counts or dosages, 0–2).
    y
        Phenotype of the people; people with a missing value (NaN) are left out.
    min_maf
        Smallest minor allele frequency (``mean dosage / 2``, folded, among the people with
        a phenotype) of a variant kept; monomorphic variants are always dropped.

    Returns
    -------
    The h² estimate, or NaN with fewer than 3 people, no variant kept or a constant
    phenotype.
    """
    x = np.asarray(dosages, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.ndim != 2 or x.shape[0] != y.size:
        raise ValueError(f"dosages {x.shape} and y ({y.size},) do not match people")
    known = np.isfinite(y)
    x, y = x[known], y[known]
    n = y.size
    if n < 3 or np.ptp(y) == 0:
        return np.nan
    x = common_variants(x, min_maf=min_maf)
    if x.shape[1] == 0:
        return np.nan
    z = (x - x.mean(axis=0)) / x.std(axis=0)
    a = z @ z.T / z.shape[1]
    y = (y - y.mean()) / y.std()
    diag = np.diag(a)
    pairs = n * (n - 1)
    sum_a = a.sum() - diag.sum()
    sum_aa = np.square(a).sum() - np.square(diag).sum()
    sum_p = y.sum() ** 2 - np.square(y).sum()
    sum_ap = y @ a @ y - diag @ np.square(y)
    variance = sum_aa - sum_a**2 / pairs
    if variance <= 0:
        return np.nan
    return float((sum_ap - sum_a * sum_p / pairs) / variance)


def common_variants(dosages: np.ndarray, *, min_maf: float) -> np.ndarray:
    """The polymorphic columns of ``dosages`` with a minor allele frequency of ``min_maf``+."""
    x = np.asarray(dosages, dtype=np.float64)
    if x.shape[1] == 0:
        return x
    frequency = x.mean(axis=0) / 2
    keep = (np.ptp(x, axis=0) > 0) & (np.minimum(frequency, 1 - frequency) >= min_maf)
    return x[:, keep]


def _r_column(adata: ad.AnnData, method_key: str | None) -> str:
    if method_key is None:
        return ""
    column = f"gl_{method_key}_r"
    if column not in adata.var.columns:
        raise KeyError(f"no var[{column!r}]; run gl.tl.fit_expression(key_added={method_key!r})")
    return column


def _separability(
    adata: ad.AnnData,
    genes: list[str],
    use_rep: str,
    diploid: str,
    grid: list[int],
    random_state: int | None,
) -> pd.DataFrame:
    from ...get import gene_view

    rows = []
    for gene in genes:
        x = gene_view(adata, gene, key=use_rep, diploid=diploid).obsm[use_rep]
        rows.append(best_silhouette(x, n_clusters=grid, random_state=random_state))
    table = pd.DataFrame(rows, index=genes, columns=["silhouette", "silhouette_k"])
    return table.astype({"silhouette": np.float64, "silhouette_k": np.int64})


def _heritability(adata: ad.AnnData, genes: list[str], window: int, min_maf: float) -> pd.DataFrame:
    table = pd.DataFrame(
        {"cis_h2": np.nan, "n_cis_variants": 0}, index=pd.Index(genes), dtype=np.float64
    )
    if adata.X is None or adata.n_vars == 0:
        return table
    dosages = dosage_source(adata, window=window)
    for gene in genes:
        x, y = dosages(gene)[0], expression_values(adata, gene)
        kept = common_variants(x[np.isfinite(y)], min_maf=min_maf).shape[1]
        table.loc[gene] = [cis_heritability(x, y, min_maf=min_maf), kept]
    return table.astype({"n_cis_variants": np.int64})


def _correlations(table: pd.DataFrame) -> pd.DataFrame:
    """Spearman rho across genes of r against each property, and of silhouette vs h²."""
    pairs = [("silhouette", "cis_h2")]
    if "r" in table:
        pairs = [("silhouette", "r"), ("n_haplotypes", "r"), ("cis_h2", "r"), *pairs]
    rows = []
    for x, y in pairs:
        both = table[[x, y]].astype(np.float64).dropna()
        rho, p = np.nan, np.nan
        if len(both) >= 3 and both[x].nunique() > 1 and both[y].nunique() > 1:
            result = stats.spearmanr(both[x], both[y])
            rho, p = float(result.statistic), float(result.pvalue)
        rows.append({"x": x, "y": y, "spearman": rho, "pvalue": p, "n_genes": len(both)})
    return pd.DataFrame(rows)
