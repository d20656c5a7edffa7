"""A cohort: each person's haplotype sequences around each gene of a panel."""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from .._engine import is_distributed
from .._provenance import file_record
from ..io.contigs import match_contigs
from ..io.errors import InputFileError
from ..io.expression import read_expression
from ..io.fasta import FastaReference
from ..io.samples import read_sample_panel
from ..io.vcf import VariantBlock, VariantFile, is_symbolic_allele, sort_and_index_hint
from ..store import CohortStoreWriter
from .cohort_parts import build_in_parts, parts_folder, remove_parts
from .haplotypes import (
    MissingPolicy,
    UnphasedPolicy,
    apply_genotype_policies,
    build_window_haplotypes,
)

logger = logging.getLogger(__name__)


@dataclass
class _Counts:
    records: int = 0
    snv: int = 0
    indel: int = 0
    other: int = 0
    multiallelic: int = 0
    symbolic_or_star: int = 0
    ref_mismatch_skipped: int = 0
    unphased_heterozygous: int = 0
    missing_alleles: int = 0
    haploid_calls: int = 0
    skipped_overlapping: int = 0
    mismatches: list[str] = field(default_factory=list)


@dataclass
class _Cluster:
    chrom: str
    start: int
    end: int
    reference: np.ndarray
    block: VariantBlock
    alleles: np.ndarray


def personal_sequences(
    vcf: str | os.PathLike,
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
    random_state: int = 0,
    progress: bool | None = None,
    client: Any = None,
    n_jobs: int | None = None,
) -> ad.AnnData:
    """Build each person's two haplotype sequences around every gene of a panel.

    Parameters
    ----------
    vcf
        Phased VCF/BCF with many samples, bgzipped and indexed.
    fasta
        The reference the VCF was called against (every REF allele is checked against it).
    genes
        Gene panel from :func:`genlm_sc.pp.gene_windows`.
    samples
        Sample ids to keep (default: all samples of the VCF).
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
    policies and counts. The haplotype tensors are in the store (see
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
        samples, unmatched = _match_expression_samples(vcf, samples, expression_table, expression)
    reader = VariantFile(vcf, samples=samples)
    if not reader.has_records():
        warnings.warn(
            f"{reader.path}: the VCF holds no variant records (a header only), so every "
            "haplotype is the reference sequence",
            UserWarning,
            stacklevel=2,
        )
    reference = FastaReference(fasta)
    obs = genes.obs
    contig_map = match_contigs(obs["chrom"].unique(), reader.contig_names(), path=vcf)
    counts = _Counts()
    writer = CohortStoreWriter(store, samples=reader.samples, genes=list(obs.index))
    show = progress if progress is not None else len(obs) > 20
    policies = {"unphased": unphased, "missing": missing, "ref_mismatch": ref_mismatch,
                "random_state": random_state}  # fmt: skip
    distributed = is_distributed(client, n_jobs)
    try:
        if distributed:
            (n_variants, n_haplotypes, n_skipped), parts = build_in_parts(
                writer, genotypes=vcf, fasta=fasta, samples=reader.samples, obs=obs,
                contig_map=contig_map, counts=counts, policies=policies, client=client,
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
            vcf, fasta, genes, expression, panel, reader, counts, unmatched,
            unphased=unphased, missing=missing, ref_mismatch=ref_mismatch,
            random_state=random_state,
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


def build_genes(
    writer: CohortStoreWriter,
    reader: VariantFile,
    reference: FastaReference,
    obs: pd.DataFrame,
    contig_map: dict[str, str],
    counts: _Counts,
    *,
    counted_before: set[tuple[str, int, int]],
    all_obs: pd.DataFrame | None = None,
    unphased: UnphasedPolicy,
    missing: MissingPolicy,
    ref_mismatch: str,
    random_state: int,
    progress: bool,
) -> tuple[list[int], list[int], list[int]]:
    """Build the haplotypes of the genes of ``obs`` (panel rows, in order) into ``writer``.

    ``all_obs`` is the whole panel when ``obs`` is one group of it (the windows of a span
    come from the whole panel, so a group reads the same records as a whole run), and
    ``counted_before`` the spans whose records earlier groups counted. Returns the number of
    variants, distinct haplotypes and skipped overlapping records of each gene.
    """
    panel = obs if all_obs is None else all_obs
    clusters = _clusters(panel)
    windows_of: dict[tuple[str, int, int], list[tuple[int, int]]] = {}
    for gene_id, span in clusters.items():
        windows_of.setdefault(span, []).append(
            (int(panel.at[gene_id, "start"]), int(panel.at[gene_id, "end"]))
        )
    counted = set(counted_before)
    n_variants, n_haplotypes, n_skipped = [], [], []
    cluster: _Cluster | None = None
    for gene_id, row in tqdm(obs.iterrows(), total=len(obs), disable=not progress, unit="gene"):
        start, end = int(row["start"]), int(row["end"])
        if cluster is None or not (
            cluster.chrom == row["chrom"] and cluster.start <= start and end <= cluster.end
        ):
            span = clusters[gene_id]
            cluster = _load_cluster(
                reader, reference, span, contig_map[span[0]], windows_of[span],
                counts, already_counted=[c for c in counted if c[0] == span[0]],
                unphased=unphased, missing=missing, ref_mismatch=ref_mismatch,
                random_state=random_state,
            )  # fmt: skip
            counted.add(span)
        offset = start - cluster.start
        window_reference = cluster.reference[offset : offset + (end - start)]
        lo, hi = np.searchsorted(cluster.block.positions, [start, end])
        block = cluster.block.slice(lo, hi)
        alleles = cluster.alleles[lo:hi]
        haplotypes = build_window_haplotypes(
            window_reference, start, block, alleles, strand=row["strand"]
        )
        writer.add_gene(
            haplotypes,
            positions=block.positions,
            ids=block.ids,
            refs=block.refs,
            alts=block.alts,
            alleles=alleles,
        )
        n_variants.append(len(block))
        n_haplotypes.append(len(haplotypes.lengths))
        n_skipped.append(haplotypes.n_skipped_overlaps)
    return n_variants, n_haplotypes, n_skipped


def _check_panel(genes: ad.AnnData) -> None:
    needed = {"chrom", "start", "end", "strand"}
    if not isinstance(genes, ad.AnnData) or not needed <= set(genes.obs.columns):
        raise TypeError(
            "genes must be a gene panel from gl.pp.gene_windows (an AnnData whose obs has "
            f"columns {sorted(needed)})"
        )
    if genes.obs.index.duplicated().any():
        raise ValueError("the gene panel has duplicate gene ids")


def _clusters(
    obs: pd.DataFrame, max_gap: int = 10_000, max_span: int = 250_000
) -> dict[str, tuple[str, int, int]]:
    """Group overlapping or nearby windows so each VCF region is parsed once.

    A group spans at most about ``max_span`` bases (plus one window), which bounds the
    genotypes held in memory at once however dense the genes are.
    """
    spans: dict[str, tuple[str, int, int]] = {}
    for chrom, table in obs.groupby("chrom", sort=False, observed=True):
        table = table.sort_values("start")
        members: list[str] = []
        lo = hi = None
        for gene_id, start, end in zip(table.index, table["start"], table["end"], strict=True):
            if hi is not None and (start > hi + max_gap or hi - lo > max_span):
                spans.update({m: (chrom, lo, hi) for m in members})
                members, lo, hi = [], None, None
            members.append(gene_id)
            lo = start if lo is None else lo
            hi = end if hi is None else max(hi, end)
        spans.update({m: (chrom, lo, hi) for m in members})
    return spans


def _load_cluster(
    reader: VariantFile,
    reference: FastaReference,
    span: tuple[str, int, int],
    vcf_chrom: str,
    windows: list[tuple[int, int]],
    counts: _Counts,
    *,
    already_counted: list[tuple[str, int, int]],
    unphased: UnphasedPolicy,
    missing: MissingPolicy,
    ref_mismatch: str,
    random_state: int,
) -> _Cluster:
    chrom, start, end = span
    block = reader.fetch(vcf_chrom, max(start, 0), end)
    unsorted = np.flatnonzero(np.diff(block.positions) < 0)
    if len(unsorted):
        raise InputFileError(
            reader.path,
            f"records are not sorted by position; {sort_and_index_hint(reader.path)}",
            record=block.record_name(int(unsorted[0]) + 1),
        )
    inside = np.zeros(len(block), dtype=bool)
    for window_start, window_end in windows:  # records no window uses are not checked
        inside |= (block.positions >= window_start) & (block.positions < window_end)
    if not inside.all():
        block = block.select(inside)
    seen = np.zeros(len(block), dtype=bool)  # records counted with an earlier group
    for _, lo, hi in already_counted:
        if lo < end and start < hi:
            seen |= (block.positions >= lo) & (block.positions < hi)

    longest_ref = max((len(r) for r in block.refs), default=1)
    sequence = reference.fetch(chrom, start, end + longest_ref, pad=True)
    contig_end = reference.lengths[chrom]
    keep = np.ones(len(block), dtype=bool)
    for i, (pos, ref, alts) in enumerate(zip(block.positions, block.refs, block.alts, strict=True)):
        observed = sequence[pos - start : pos - start + len(ref)].tobytes().decode()
        if observed != ref.upper() or pos + len(ref) > contig_end:
            if ref_mismatch == "error":
                raise InputFileError(
                    reader.path,
                    f"REF {ref} does not match the reference {reference.path.name} "
                    f"({observed or 'past the contig end'} at {chrom}:{pos + 1}); is the VCF "
                    "called on this genome build? pass ref_mismatch='skip' to leave such "
                    "records out",
                    record=block.record_name(i),
                )
            keep[i] = False
            if not seen[i]:
                counts.ref_mismatch_skipped += 1
                if len(counts.mismatches) < 20:
                    counts.mismatches.append(block.record_name(i))
            continue
        if not seen[i]:
            _count_record(counts, ref, alts)
    if not keep.all():
        block, seen = block.select(keep), seen[keep]
    alleles, policy_counts = apply_genotype_policies(
        block,
        unphased=unphased,
        missing=missing,
        samples=reader.samples,
        path=os.fspath(reader.path),
        random_state=random_state,
    )
    if seen.any():  # count only the records no earlier group counted
        _, policy_counts = apply_genotype_policies(
            block.select(~seen), unphased=unphased, missing=missing,
            samples=reader.samples, path=os.fspath(reader.path), random_state=random_state,
        )  # fmt: skip
    counts.unphased_heterozygous += policy_counts.unphased_heterozygous
    counts.missing_alleles += policy_counts.missing_alleles
    counts.haploid_calls += policy_counts.haploid_calls
    return _Cluster(chrom, start, end, sequence[: end - start], block, alleles)


def _count_record(counts: _Counts, ref: str, alts: list[str]) -> None:
    counts.records += 1
    if len(alts) > 1:
        counts.multiallelic += 1
    for alt in alts:
        if is_symbolic_allele(alt):
            counts.symbolic_or_star += 1
        elif len(alt) == len(ref) == 1:
            counts.snv += 1
        elif len(alt) != len(ref):
            counts.indel += 1
        else:
            counts.other += 1


def _load_expression(expression) -> pd.DataFrame | None:
    if expression is None:
        return None
    if isinstance(expression, pd.DataFrame):
        return expression
    return read_expression(expression)


def _match_expression_samples(vcf, samples, table: pd.DataFrame, source):
    """Samples with both genotypes and expression, and those left out on each side."""
    if samples is None:
        with VariantFile(vcf) as reader:
            genotyped = reader.samples
    else:
        genotyped = list(samples)
    expressed = set(map(str, table.index))
    kept = [s for s in genotyped if s in expressed]
    if not kept:
        raise InputFileError(
            source if not isinstance(source, pd.DataFrame) else None,
            f"no expression sample matches a genotype sample of {os.fspath(vcf)} "
            f"(expression ids start {list(table.index[:3])}, VCF ids start {genotyped[:3]})",
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


def _provenance(vcf, fasta, genes, expression, panel, reader, counts, unmatched, **policies):
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
        "vcf": file_record(vcf),
        "fasta": file_record(fasta),
        "expression": describe(expression),
        "panel": describe(panel),
        "gene_panel": dict(genes.uns.get("gl", {})),
        "policies": policies,
        "counts": counts_dict,
        "ref_mismatch_records": list(counts.mismatches),
        "unmatched_samples": unmatched or {"genotype_only": [], "expression_only": []},
        "coordinates": "0-based half-open; haplotypes in gene orientation",
    }
