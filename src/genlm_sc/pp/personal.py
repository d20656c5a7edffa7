"""A cohort: each person's haplotype sequences around each gene of a panel."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from .._engine import is_distributed
from .._provenance import file_record
from .._settings import show_progress
from ..io.bgen import BGEN_CALL_THRESHOLD
from ..io.contigs import match_contigs
from ..io.errors import InputFileError
from ..io.expression import read_expression
from ..io.fasta import FastaReference
from ..io.genotypes import open_genotypes
from ..io.samples import read_sample_panel
from ..store import CohortStoreWriter
from .cohort_parts import build_in_parts, parts_folder, remove_parts
from .gene_build import _Counts, build_genes
from .haplotypes import (
    MissingPolicy,
    UnphasedPolicy,
)
from .variant_filters import check_filter_options

logger = logging.getLogger(__name__)


def personal_sequences(
    genotypes: str | os.PathLike,
    *,
    fasta: str | os.PathLike,
    genes: ad.AnnData,
    samples: Sequence[str] | None = None,
    expression: str | os.PathLike | pd.DataFrame | None = None,
    panel: str | os.PathLike | pd.DataFrame | None = None,
    store: str | os.PathLike | None = None,
    unphased: UnphasedPolicy = "error",
    missing: MissingPolicy = "reference",
    ref_mismatch: str = "error",
    filter_pass: bool = False,
    min_maf: float = 0.0,
    min_r2: float = 0.0,
    bgen_threshold: float = BGEN_CALL_THRESHOLD,
    random_state: int = 0,
    progress: bool | None = None,
    client: Any = None,
    n_jobs: int | None = None,
) -> ad.AnnData:
    """Build each person's two haplotype sequences around every gene of a panel.

    Parameters
    ----------
    genotypes
        Phased genotypes of many samples, in any format :func:`genlm_sc.io.open_genotypes`
        reads: bgzipped and indexed VCF or indexed BCF, PLINK 2 ``.pgen`` (or its prefix, with
        ``.pvar`` and ``.psam`` next to it), a VCF Zarr folder (``.vcz``) or ``.bgen``. Every
        format gives the same haplotypes for the same calls.
    fasta
        The reference the genotypes were called against (every REF allele is checked
        against it).
    genes
        Gene panel from :func:`genlm_sc.pp.gene_windows`.
    samples
        Sample ids to keep (default: all samples of the genotype file).
    expression
        Expression table (path or samples × genes DataFrame, see
        :func:`genlm_sc.io.read_expression`). Only people with both genotypes and
        expression are kept; the others are listed in ``uns["gl"]["unmatched_samples"]``.
    panel
        1000 Genomes-style sample panel (path or DataFrame indexed by sample) adding
        population, super-population and sex to ``obs``.
    store
        Folder of the Zarr store to stream the haplotypes into (with the AnnData, written
        at the end). ``None`` keeps them in memory; :func:`genlm_sc.write` saves them later.
    unphased
        Policy for unphased heterozygous calls (``0/1``), whose haplotypes are undefined:
        ``"error"`` (default), ``"as_listed"`` (alleles in the order written, which is what
        ``bcftools consensus -H 1/-H 2`` does), ``"random"`` (a random phase, reproducible
        from ``random_state``) or ``"reference"`` (both haplotypes keep the reference allele).
    missing
        ``"reference"`` (default; like ``bcftools consensus``) keeps the reference allele
        on a haplotype whose allele is missing; ``"error"`` refuses missing calls.
    ref_mismatch
        ``"error"`` (default) refuses a record whose REF differs from the FASTA;
        ``"skip"`` leaves such records out and counts them in ``uns["gl"]``.
    filter_pass
        Keep only records whose ``FILTER`` is ``PASS`` or missing (``.``), as
        ``bcftools view -f .,PASS`` does (VCF, PGEN, VCF Zarr; an error for BGEN, which has
        no FILTER).
    min_maf
        Keep only records whose minor-allele frequency among the people being built (called
        alleles; for a multi-allelic record all alleles but the most frequent) is at least
        this, as ``bcftools view -q MIN_MAF:nonmajor`` does on those people. ``0`` keeps all.
    min_r2
        Keep only records whose imputation R² is at least this, read from ``INFO/R2``
        (minimac), ``DR2`` (Beagle) or ``INFO`` (IMPUTE), the first the file declares;
        records without a value are removed. A file with none of these fields is an error.
        ``0`` keeps all.
    bgen_threshold
        BGEN only: a haplotype of a phased variant takes the allele whose probability is at
        least this, else its allele is missing (``missing=`` applies); an unphased variant's
        genotype is called when its probability is at least this, else it is missing.
    random_state
        Seed of the ``"random"`` phase policy.
    progress
        Show a progress bar (default: when there are more than 20 genes).
    client
        A :class:`distributed.Client`: the genes are built as tasks over gene groups on its
        cluster (each task writes a part store beside ``store``; the parts are then copied
        into the store by tasks that each own whole chunks). A killed run, called again
        with the same inputs, keeps the groups it finished. Needs ``store``.
    n_jobs
        Build on a local cluster of this many worker processes (one thread each), made
        for the call; ignored when ``client`` is given. ``None`` or 1: in this process.

    Returns
    -------
    AnnData with ``obs`` = people, ``var`` = genes (the panel's columns plus
    ``n_variants``, ``n_haplotypes`` (unique) and ``n_skipped_overlapping``; with
    expression also ``has_expression``, false for genes missing from the table, whose ``X``
    column is NaN), ``X`` = expression when given, and ``uns["gl"]`` with provenance,
    policies, filters and counts (records removed by each filter under
    ``counts["filtered_not_pass"]``, ``["filtered_low_r2"]``, ``["filtered_low_maf"]``,
    a record counted under the first that removes it). The haplotype tensors are in the store (see
    :func:`genlm_sc.get.haplotype_store`, :func:`genlm_sc.get.haplotypes`).

    Notes
    -----
    Haplotypes follow ``bcftools consensus`` exactly (``-H 1`` and ``-H 2``): records whose
    ``POS`` lies in the window are applied in file order, SNVs, MNPs and indels alike; see
    ``docs/format.md`` for the overlap rule. Minus-strand genes are reverse-complemented.
    Each distinct haplotype is built and stored once.
    """
    if ref_mismatch not in ("error", "skip"):
        raise ValueError(f"ref_mismatch must be 'error' or 'skip', got {ref_mismatch!r}")
    _check_panel(genes)
    expression_table = _load_expression(expression)
    unmatched: dict[str, list[str]] = {}
    if expression_table is not None:
        samples, unmatched = _match_expression_samples(
            genotypes, samples, expression_table, expression, bgen_threshold
        )
    reader = open_genotypes(genotypes, samples=samples, bgen_threshold=bgen_threshold)
    try:
        check_filter_options(reader, filter_pass=filter_pass, min_maf=min_maf, min_r2=min_r2)
    except BaseException:
        reader.close()
        raise
    filters = {"filter_pass": filter_pass, "min_maf": min_maf, "min_r2": min_r2}
    if not reader.has_records():
        warnings.warn(
            f"{reader.path}: the genotype file holds no variant records (a header only), so every "
            "haplotype is the reference sequence",
            UserWarning,
            stacklevel=2,
        )
    reference = FastaReference(fasta)
    obs = genes.obs
    contig_map = match_contigs(obs["chrom"].unique(), reader.contig_names(), path=reader.path)
    counts = _Counts()
    writer = CohortStoreWriter(store, samples=reader.samples, genes=list(obs.index))
    show = show_progress(progress, len(obs) > 20)
    policies = {"unphased": unphased, "missing": missing, "ref_mismatch": ref_mismatch,
                "random_state": random_state, "filters": filters}  # fmt: skip
    distributed = is_distributed(client, n_jobs)
    try:
        if distributed:
            (n_variants, n_haplotypes, n_skipped), parts = build_in_parts(
                writer, genotypes=genotypes, genotype_files=reader.files, fasta=fasta,
                samples=reader.samples, obs=obs, contig_map=contig_map, counts=counts,
                policies=policies, bgen_threshold=bgen_threshold, client=client,
                n_jobs=n_jobs, progress=show,
            )  # fmt: skip
        else:
            n_variants, n_haplotypes, n_skipped = build_genes(
                writer, reader, reference, obs, contig_map, counts, counted_before=set(),
                progress=show, **policies,
            )  # fmt: skip
        counts.skipped_overlapping = int(sum(n_skipped))
        cohort = _cohort_anndata(
            reader.samples, genes, expression_table, panel, n_variants, n_haplotypes, n_skipped
        )
        cohort.uns["gl"] = _provenance(
            fasta, genes, expression, panel, reader, counts, unmatched, filters,
            unphased=unphased, missing=missing, ref_mismatch=ref_mismatch,
            random_state=random_state, bgen_threshold=bgen_threshold,
        )  # fmt: skip
        cohort.uns["gl"]["store"] = writer.location
        if distributed:
            cohort.uns["gl"]["parts"] = parts
        writer.finish(
            cohort if store is not None else None,
            gene_variables={
                "gene_chrom": obs["chrom"].to_numpy(dtype=object),
                "gene_window_start": obs["start"].to_numpy(dtype=np.int64),
                "gene_window_end": obs["end"].to_numpy(dtype=np.int64),
                "gene_strand": obs["strand"].to_numpy(dtype=object),
            },
        )
    except BaseException:
        writer.abort()
        raise
    finally:
        reader.close()
        reference.close()
    if distributed:
        remove_parts(parts_folder(writer.final_path))
    logger.info(
        "built %d unique haplotypes for %d people x %d genes",
        sum(n_haplotypes),
        cohort.n_obs,
        cohort.n_vars,
    )
    return cohort


def _check_panel(genes: ad.AnnData) -> None:
    needed = {"chrom", "start", "end", "strand"}
    if not isinstance(genes, ad.AnnData) or not needed <= set(genes.obs.columns):
        raise TypeError(
            "genes must be a gene panel from gl.pp.gene_windows (an AnnData whose obs has "
            f"columns {sorted(needed)})"
        )
    if genes.obs.index.duplicated().any():
        raise ValueError("the gene panel has duplicate gene ids")


def _load_expression(expression) -> pd.DataFrame | None:
    if expression is None:
        return None
    if isinstance(expression, pd.DataFrame):
        return expression
    return read_expression(expression)


def _match_expression_samples(genotypes, samples, table: pd.DataFrame, source, bgen_threshold):
    """Samples with both genotypes and expression, and those left out on each side."""
    if samples is None:
        with open_genotypes(genotypes, bgen_threshold=bgen_threshold) as reader:
            genotyped = reader.samples
    else:
        genotyped = list(samples)
    expressed = set(map(str, table.index))
    kept = [s for s in genotyped if s in expressed]
    if not kept:
        raise InputFileError(
            source if not isinstance(source, pd.DataFrame) else None,
            f"no expression sample matches a genotype sample of {os.fspath(genotypes)} "
            f"(expression ids start {list(table.index[:3])}, genotype ids start "
            f"{genotyped[:3]})",
        )
    unmatched = {
        "genotype_only": [s for s in genotyped if s not in expressed],
        "expression_only": sorted(expressed - set(genotyped)),
    }
    return kept, unmatched


def _match_expression_genes(table: pd.DataFrame, var: pd.DataFrame) -> pd.Series:
    """For each panel gene, the expression column that holds it (by id, bare id or name)."""
    columns = list(map(str, table.columns))
    by_bare = {c.split(".")[0]: c for c in columns}
    names = set(columns)
    found = {}
    for gene_id, name in zip(var.index, var["gene_name"], strict=True):
        if gene_id in names:
            found[gene_id] = gene_id
        elif gene_id.split(".")[0] in by_bare:
            found[gene_id] = by_bare[gene_id.split(".")[0]]
        elif name in names:
            found[gene_id] = name
    return pd.Series(found, dtype=object)


def _cohort_anndata(samples, genes, expression, panel, n_variants, n_haplotypes, n_skipped):
    var = genes.obs.copy()
    var["n_variants"] = np.asarray(n_variants, dtype=np.int64)
    var["n_haplotypes"] = np.asarray(n_haplotypes, dtype=np.int64)
    var["n_skipped_overlapping"] = np.asarray(n_skipped, dtype=np.int64)
    obs = pd.DataFrame(index=pd.Index(samples, dtype=str))
    if panel is not None:
        table = panel if isinstance(panel, pd.DataFrame) else read_sample_panel(panel)
        obs = obs.join(table, how="left")
        for column in obs.columns:
            obs[column] = obs[column].astype("category")
    X = None
    if expression is not None:
        matched = _match_expression_genes(expression, var)
        if matched.empty:
            raise InputFileError(
                None,
                "no gene of the panel is in the expression table (matched by id, id without "
                f"version, and name); expression genes start {list(expression.columns[:3])}",
            )
        X = np.full((len(samples), len(var)), np.nan, dtype=np.float32)
        columns = var.index.get_indexer(matched.index)
        X[:, columns] = expression.loc[samples, matched.to_numpy()].to_numpy(dtype=np.float32)
        var["has_expression"] = var.index.isin(matched.index)
    return ad.AnnData(X=X, obs=obs, var=var)


def _provenance(fasta, genes, expression, panel, reader, counts, unmatched, filters, **policies):
    def describe(source):
        if source is None:
            return ""
        if isinstance(source, pd.DataFrame):
            return "DataFrame"
        return file_record(source)

    counts_dict = {k: v for k, v in counts.__dict__.items() if k != "mismatches"}
    from .._version import __version__

    return {
        "kind": "cohort",
        "genlm_sc_version": __version__,
        "genome_build": reader.header_assembly() or "",
        "genotypes": {
            "format": reader.format,
            # keyed by file name: lists of mappings do not round-trip through h5ad
            "files": {Path(path).name: file_record(path) for path in reader.files},
        },
        "fasta": file_record(fasta),
        "expression": describe(expression),
        "panel": describe(panel),
        "gene_panel": dict(genes.uns.get("gl", {})),
        "policies": policies,
        "filters": dict(filters, r2_field=reader.r2_field or ""),
        "counts": counts_dict,
        "ref_mismatch_records": list(counts.mismatches),
        "unmatched_samples": unmatched or {"genotype_only": [], "expression_only": []},
        "coordinates": "0-based half-open; haplotypes in gene orientation",
    }
