"""Read-only accessors, in the spirit of ``scanpy.get``."""

from __future__ import annotations

import os
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd
import xarray as xr

from ._provenance import check_file_record
from .io.fasta import FastaReference
from .pp.haplotypes import reverse_complement, stored_reference_positions
from .store import open_haplotypes

__all__ = [
    "attention",
    "attribution",
    "cluster_agreement",
    "expression_results",
    "fixed_length_haplotypes",
    "gene_expression_results",
    "gene_id",
    "gene_index",
    "gene_name",
    "gene_view",
    "haplotype_store",
    "haplotypes",
    "is_cohort",
    "motif_matches",
    "predictability",
    "recorded_fasta",
    "reference_positions",
    "sample_rows",
    "sequences",
    "unique_haplotypes",
    "variant_effects",
]


def is_cohort(adata: ad.AnnData) -> bool:
    """Whether ``adata`` is a cohort (people × genes with a haplotype store) rather than a
    panel of genes or sequences (one observation per window)."""
    return bool(adata.uns.get("gl", {}).get("store"))


def gene_id(adata: ad.AnnData, gene: str) -> str:
    """The id of a gene given by id or by unique name.

    Parameters
    ----------
    adata
        A cohort (genes are its ``var``) or a panel (genes are its ``obs``; names are looked
        up in ``obs["gene_name"]``, then ``obs["name"]``).
    gene
        A gene id, or a name that only one gene has.

    Returns
    -------
    The gene id; an unknown or ambiguous name raises :class:`KeyError`.
    """
    table = adata.var if is_cohort(adata) or adata.n_vars else adata.obs
    if gene in table.index:
        return str(gene)
    for column in ("gene_name", "name"):
        if column in table.columns:
            hits = table.index[(table[column].astype(str) == str(gene)).to_numpy()]
            if len(hits) == 1:
                return str(hits[0])
    raise KeyError(f"unknown gene {gene!r} (give a gene id or a unique gene name)")


def gene_name(adata: ad.AnnData, gene: str) -> str:
    """The ``gene_name`` of a gene id (``var`` of a cohort, ``obs`` of a panel), else the id."""
    for table in (adata.var, adata.obs):
        if "gene_name" in table.columns and gene in table.index:
            return str(table.loc[gene, "gene_name"])
    return gene


def gene_index(adata: ad.AnnData, gene: str) -> tuple[int, int, int]:
    """Where a gene of a cohort lives in its haplotype store.

    Returns
    -------
    ``(g, first, stop)``: the gene's index along the store's ``gene`` dimension and the
    range ``first:stop`` of its distinct haplotypes along ``haplotype``.
    """
    ds = haplotype_store(adata)
    g = list(ds["gene"].values).index(gene_id(adata, gene))
    first = int(ds["gene_first_haplotype"].values[g])
    return g, first, first + int(ds["gene_n_haplotypes"].values[g])


def sample_rows(
    adata: ad.AnnData, *, samples: Sequence[str] | None = None
) -> tuple[list[str], np.ndarray]:
    """Sample ids (default: the cohort's, in its order) and their rows in the store."""
    names = list(adata.obs_names) if samples is None else list(samples)
    known = set(adata.obs_names)
    unknown = [s for s in names if s not in known]
    if unknown:
        raise KeyError(f"unknown samples: {unknown[:10]}")
    row = {s: i for i, s in enumerate(haplotype_store(adata)["sample"].values)}
    return names, np.array([row[s] for s in names], dtype=np.int64)


def haplotype_store(adata: ad.AnnData) -> xr.Dataset:
    """The cohort's haplotype Dataset (lazy, dask-backed), see ``docs/format.md``."""
    return open_haplotypes(adata)


def sequences(adata: ad.AnnData, *, fasta: str | os.PathLike | None = None) -> pd.Series:
    """Reference sequence of each window, in gene orientation.

    Parameters
    ----------
    adata
        A gene panel (:func:`genlm_sc.pp.gene_windows`), a panel of sequences
        (:func:`genlm_sc.pp.sequence_panel`, sequences in ``obs["sequence"]``) or a cohort
        (its ``var``).
    fasta
        The reference; default: the FASTA recorded in ``adata.uns["gl"]``.

    Returns
    -------
    Series of upper-case strings indexed by gene id; minus-strand windows are
    reverse-complemented, so the anchor (TSS) is at index ``width // 2``.
    """
    if "sequence" in adata.obs.columns:
        return adata.obs["sequence"].astype(str).str.upper().rename("sequence")
    table = adata.obs if {"chrom", "start", "end"} <= set(adata.obs.columns) else adata.var
    if fasta is None:
        fasta = recorded_fasta(adata)
    out = {}
    with FastaReference(fasta) as reference:
        for gene_id, row in table.iterrows():
            codes = reference.fetch(row["chrom"], int(row["start"]), int(row["end"]), pad=True)
            if row["strand"] == "-":
                codes = reverse_complement(codes)
            out[gene_id] = codes.tobytes().decode("ascii")
    return pd.Series(out, name="sequence")


def recorded_fasta(adata: ad.AnnData) -> str:
    """The path of the FASTA recorded in ``uns["gl"]``, checked against the size and
    fingerprint recorded with it (a replaced or edited file is an error, not silently used)."""
    record = adata.uns.get("gl", {}).get("fasta")
    if not record:
        raise KeyError("no FASTA recorded in adata.uns['gl']; pass fasta=")
    return check_file_record(record, what="FASTA")


def unique_haplotypes(adata: ad.AnnData, gene: str) -> pd.DataFrame:
    """The distinct haplotypes of one gene, most frequent first.

    Returns
    -------
    DataFrame with columns ``sequence`` (gene orientation), ``length`` and ``count``
    (person-haplotypes carrying it), indexed by haplotype number in the store.
    """
    ds = haplotype_store(adata)
    _, lo, hi = gene_index(adata, gene)
    lengths = ds["haplotype_length"][lo:hi].values
    codes = ds["sequence"][lo:hi].values
    return pd.DataFrame(
        {
            "sequence": [codes[i, :n].tobytes().decode("ascii") for i, n in enumerate(lengths)],
            "length": lengths,
            "count": ds["haplotype_count"][lo:hi].values,
        },
        index=pd.RangeIndex(lo, hi, name="haplotype"),
    )


def reference_positions(adata: ad.AnnData, gene: str) -> xr.DataArray:
    """Reference coordinate of every base of a gene's distinct haplotypes.

    Returns
    -------
    ``int32`` DataArray ``(haplotype, position)`` aligned with
    :func:`unique_haplotypes`: the 0-based reference coordinate each base was copied from
    (gene orientation, so coordinates decrease along minus-strand genes), ``-1`` for bases
    inserted by an indel and for padding. The store keeps this map run-length encoded
    (``segment_*`` variables); this expands it.
    """
    ds = haplotype_store(adata)
    g, lo, hi = gene_index(adata, gene)
    positions = stored_reference_positions(ds, g, lo, hi)
    return xr.DataArray(
        positions,
        dims=("haplotype", "position"),
        coords={"haplotype": np.arange(lo, hi)},
        name="reference_position",
    )


def haplotypes(
    adata: ad.AnnData, gene: str, *, samples: Sequence[str] | None = None
) -> pd.DataFrame:
    """Each person's two haplotype sequences of one gene, in gene orientation.

    Each sequence is what ``bcftools consensus -s SAMPLE -H 1`` (and ``-H 2``) writes for
    the gene's window (reverse-complemented on the minus strand): indels are applied, so
    lengths differ between people.

    Returns
    -------
    DataFrame indexed by sample with columns ``haplotype_1`` and ``haplotype_2``.
    """
    table = unique_haplotypes(adata, gene)
    ds = haplotype_store(adata)
    g, lo, _ = gene_index(adata, gene)
    names, rows = sample_rows(adata, samples=samples)
    index = ds["sample_haplotype"][:, g, :].values[rows] - lo
    seqs = table["sequence"].to_numpy()
    return pd.DataFrame(
        {"haplotype_1": seqs[index[:, 0]], "haplotype_2": seqs[index[:, 1]]},
        index=pd.Index(names, name="sample"),
    )


def fixed_length_haplotypes(
    adata: ad.AnnData,
    gene: str,
    *,
    length: int | None = None,
    samples: Sequence[str] | None = None,
    pad: str = "N",
) -> xr.DataArray:
    """Haplotypes of one gene cut or padded to one length, anchor-aligned (for models).

    Indels change haplotype lengths, so each haplotype is aligned on its anchor base (the
    TSS for a default panel): the base whose reference coordinate is the anchor goes to
    index ``length // 2``; bases beyond either end are trimmed and missing ones filled with
    ``pad``. When an indel removed the anchor base itself, the first reference base after
    it (in gene orientation) is used.

    Parameters
    ----------
    adata
        A cohort from :func:`genlm_sc.pp.personal_sequences`.
    gene
        Gene id or unique gene name.
    length
        Output length (default: the panel window width).
    samples
        Sample ids (default: all).
    pad
        Fill character.

    Returns
    -------
    ``uint8`` ASCII DataArray with dims ``(sample, ploidy, position)``.
    """
    ds = haplotype_store(adata)
    g, lo, hi = gene_index(adata, gene)
    start = int(ds["gene_window_start"].values[g])
    end = int(ds["gene_window_end"].values[g])
    length = end - start if length is None else int(length)
    minus = str(ds["gene_strand"].values[g]) == "-"
    anchor = anchor_coordinate(start, end, minus=minus)
    codes = ds["sequence"][lo:hi].values
    coords = reference_positions(adata, gene).values
    lengths = ds["haplotype_length"][lo:hi].values
    fixed = np.full((hi - lo, length), ord(pad), dtype=np.uint8)
    for i in range(hi - lo):
        n = lengths[i]
        at = anchor_index(coords[i, :n], anchor, minus=minus)
        src_lo = max(0, at - length // 2)
        dst_lo = src_lo - (at - length // 2)
        take = min(n - src_lo, length - dst_lo)
        fixed[i, dst_lo : dst_lo + take] = codes[i, src_lo : src_lo + take]
    names, rows = sample_rows(adata, samples=samples)
    index = ds["sample_haplotype"][:, g, :].values[rows] - lo
    return xr.DataArray(
        fixed[index],
        dims=("sample", "ploidy", "position"),
        coords={"sample": names, "ploidy": [0, 1]},
        name=str(ds["gene"].values[g]),
    )


def anchor_coordinate(start: int, end: int, *, minus: bool) -> int:
    """Reference coordinate (0-based) of the anchor of the window ``[start, end)``: its base
    at index ``width // 2`` in gene orientation (the TSS for a default panel)."""
    middle = (end - start) // 2
    return end - 1 - middle if minus else start + middle


def anchor_index(positions: np.ndarray, anchor: int, *, minus: bool) -> int:
    """Index of the anchor in a sequence whose bases come from reference ``positions`` (gene
    orientation, ``-1`` for inserted bases): the base copied from ``anchor`` or, when an
    indel removed it, the first reference base after it; the middle when there is none."""
    positions = np.asarray(positions)
    reached = positions <= anchor if minus else positions >= anchor
    candidates = np.flatnonzero(reached & (positions >= 0))
    return int(candidates[0]) if len(candidates) else len(positions) // 2


def gene_view(
    adata: ad.AnnData,
    gene: str,
    *,
    key: str = "X_gl",
    diploid: str = "concat",
) -> ad.AnnData:
    """People × one gene, with each person's haplotype embeddings as a representation.

    Parameters
    ----------
    adata
        A cohort whose haplotypes were embedded by :func:`genlm_sc.tl.embed`.
    gene
        Gene id or unique gene name.
    key
        The embedding (``key_added`` of :func:`genlm_sc.tl.embed`).
    diploid
        ``"concat"``: the two haplotype embeddings side by side, first then second as
        stored (UKBioBERT's recipe; phase order matters); ``"mean"``: their average
        (phase-invariant).

    Returns
    -------
    AnnData with ``obs`` = the cohort's people (with their columns, ``haplotype_1`` and
    ``haplotype_2``: indices of their haplotypes in the store, and ``expression`` when the
    cohort has expression for the gene), ``obsm[key]`` the person-level embedding and
    ``uns["gene"]`` the gene id. Scanpy runs on it directly
    (``sc.pp.neighbors(view, use_rep=key)``).
    """
    ds = haplotype_store(adata)
    if key not in ds:
        raise KeyError(f"the cohort has no haplotype embedding {key!r}; run gl.tl.embed first")
    g, lo, hi = gene_index(adata, gene)
    gene_id = str(ds["gene"].values[g])
    rows = ds["sample_haplotype"][:, g, :].values
    samples = [str(s) for s in ds["sample"].values]
    rows = pd.DataFrame(rows, index=samples).reindex(adata.obs_names).to_numpy()
    embeddings = ds[key][lo:hi].values
    obs = adata.obs.copy()
    obs["haplotype_1"], obs["haplotype_2"] = rows[:, 0], rows[:, 1]
    if gene_id in adata.var_names and adata.n_vars and adata.X is not None:
        column = adata[:, gene_id].X
        column = column.toarray() if hasattr(column, "toarray") else np.asarray(column)
        obs["expression"] = column.ravel()
    view = ad.AnnData(obs=obs)
    view.obsm[key] = _diploid_features(embeddings, rows - lo, diploid=diploid)
    view.uns["gene"] = gene_id
    view.uns["gl"] = {"embedding": key, "diploid": diploid}
    return view


def attribution(adata: ad.AnnData, gene: str, *, key: str = "gl_ism_expression") -> xr.Dataset:
    """Attributions of one gene computed by :func:`genlm_sc.tl.attribute`.

    Parameters
    ----------
    adata
        The cohort or panel they were computed on.
    gene
        Gene id (or, for a cohort, a unique gene name).
    key
        The ``key_added`` they were stored under (default ``"gl_<method>_<target>"``).

    Returns
    -------
    The Dataset :func:`genlm_sc.tl.attribute` returned.
    """
    return _gene_result(adata, gene, key)


def attention(adata: ad.AnnData, gene: str, *, key: str = "gl_attention") -> xr.Dataset:
    """Attention maps of one gene computed by :func:`genlm_sc.tl.attention`.

    Parameters
    ----------
    adata
        The cohort or panel they were computed on.
    gene
        Gene id (or, for a cohort, a unique gene name).
    key
        The ``key_added`` they were stored under.

    Returns
    -------
    The Dataset :func:`genlm_sc.tl.attention` described.
    """
    return _gene_result(adata, gene, key)


def _gene_result(adata: ad.AnnData, gene: str, key: str) -> xr.Dataset:
    from .store import read_result

    if adata.uns.get("gl", {}).get("store"):
        ds = haplotype_store(adata)
        gene = str(ds["gene"].values[gene_index(adata, gene)[0]])
    return read_result(adata, key, gene)


def _stored(adata: ad.AnnData, key: str, part: str, tool: str) -> pd.DataFrame:
    found = adata.uns.get(key)
    if not isinstance(found, dict) or part not in found:
        raise KeyError(f"no uns[{key!r}][{part!r}]; run gl.tl.{tool} first")
    return found[part]


def expression_results(adata: ad.AnnData, *, key: str = "gl_expression") -> pd.DataFrame:
    """The comparison table of every :func:`genlm_sc.tl.fit_expression` fit on a cohort.

    One row per gene and fit (``gene``, ``gene_name``, ``method``, ``r``, ``spearman``,
    ``r2``, ``n_train``, ``n_test``, ``n_features``, ``n_folds``, ``oracle_r``); see
    :func:`genlm_sc.tl.fit_expression`.
    """
    return _stored(adata, key, "results", "fit_expression")


def gene_expression_results(adata: ad.AnnData, *, key: str = "gl_gene_expression") -> pd.DataFrame:
    """The results table of every :func:`genlm_sc.tl.fit_gene_expression` fit on a panel."""
    return _stored(adata, key, "results", "fit_gene_expression")


def cluster_agreement(adata: ad.AnnData, *, key: str = "gl_cluster_agreement") -> pd.DataFrame:
    """The results table of :func:`genlm_sc.tl.cluster_agreement` (its ``key_added``)."""
    return _stored(adata, key, "results", "cluster_agreement")


def predictability(adata: ad.AnnData, *, key: str = "gl_predictability") -> pd.DataFrame:
    """The per-gene table of :func:`genlm_sc.tl.predictability` (its ``key_added``)."""
    return _stored(adata, key, "table", "predictability")


def _per_gene(adata: ad.AnnData, gene: str, key: str, tool: str) -> pd.DataFrame:
    found = adata.uns.get(key)
    if not isinstance(found, dict):
        raise KeyError(f"no uns[{key!r}]; run gl.tl.{tool} first")
    if gene not in found:
        gene = gene_id(adata, gene)
    if gene not in found:
        raise KeyError(f"no {tool} result for {gene!r} in uns[{key!r}]; run gl.tl.{tool}")
    return found[gene]


def variant_effects(
    adata: ad.AnnData, gene: str, *, key: str = "gl_variant_effects"
) -> pd.DataFrame:
    """The variant table of one gene from :func:`genlm_sc.tl.variant_effects`.

    Parameters
    ----------
    adata
        The cohort it was computed on.
    gene
        Gene id or unique gene name.
    key
        Its ``key_added``.
    """
    return _per_gene(adata, gene, key, "variant_effects")


def motif_matches(adata: ad.AnnData, gene: str, *, key: str = "gl_motifs") -> pd.DataFrame:
    """The motif table of one gene from :func:`genlm_sc.tl.motif_matches`.

    Parameters
    ----------
    adata
        The cohort it was computed on.
    gene
        Gene id or unique gene name.
    key
        Its ``key_added``.
    """
    return _per_gene(adata, gene, key, "motif_matches")


def _diploid_features(
    embeddings: np.ndarray, haplotype_index: np.ndarray, *, diploid: str
) -> np.ndarray:
    """Person-level features from per-haplotype embeddings.

    ``haplotype_index`` is ``(people, 2)``; ``diploid="concat"`` places the two haplotypes
    side by side (in stored ploidy order, as UKBioBERT does), ``"mean"`` averages them
    (phase-invariant).
    """
    first, second = embeddings[haplotype_index[:, 0]], embeddings[haplotype_index[:, 1]]
    if diploid == "concat":
        return np.concatenate([first, second], axis=1)
    if diploid == "mean":
        return (first + second) / 2
    raise ValueError(f"diploid must be 'concat' or 'mean', not {diploid!r}")
