"""Building the haplotypes of consecutive genes of a panel into a store writer.

Used by :func:`genlm_sc.pp.personal_sequences` in one process and by the tasks of
:mod:`genlm_sc.pp.cohort_parts` on a cluster.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from ..io.errors import InputFileError
from ..io.fasta import FastaReference
from ..io.variants import VariantBlock, is_symbolic_allele
from ..io.vcf import sort_and_index_hint
from ..store import CohortStoreWriter
from .haplotypes import (
    MissingPolicy,
    UnphasedPolicy,
    apply_genotype_policies,
    build_window_haplotypes,
)
from .variant_filters import FILTER_REASONS, filter_reasons


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
    filtered_not_pass: int = 0
    filtered_low_r2: int = 0
    filtered_low_maf: int = 0
    mismatches: list[str] = field(default_factory=list)


@dataclass
class _Cluster:
    chrom: str
    start: int
    end: int
    reference: np.ndarray
    block: VariantBlock
    alleles: np.ndarray


def build_genes(
    writer: CohortStoreWriter,
    reader,
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
    filters: dict,
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
                random_state=random_state, filters=filters,
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
    reader,
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
    filters: dict,
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
    reasons = filter_reasons(block, **filters)
    if (reasons >= 0).any():
        for index, name in enumerate(FILTER_REASONS):
            setattr(counts, name, getattr(counts, name) + int(((reasons == index) & ~seen).sum()))
        block, seen = block.select(reasons < 0), seen[reasons < 0]

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
