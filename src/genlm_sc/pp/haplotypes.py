"""Unique haplotypes of one window: genotype policies, deduplication, strand."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ..io.errors import InputFileError
from ..io.vcf import VariantBlock
from ._consensus import apply_variants, is_indel

UnphasedPolicy = Literal["error", "as_listed", "random", "reference"]
MissingPolicy = Literal["reference", "error"]

_COMPLEMENT = np.arange(256, dtype=np.uint8)
for _a, _b in zip(b"ACGTRYKMBVDHNSW", b"TGCAYRMKVBHDNSW", strict=True):
    _COMPLEMENT[_a] = _b


def reverse_complement(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of upper-case ASCII base codes (IUPAC aware)."""
    return _COMPLEMENT[codes[::-1]]


@dataclass
class WindowHaplotypes:
    """The distinct haplotype sequences of one window and who carries them.

    Attributes
    ----------
    sequences
        ``uint8`` ASCII ``(haplotype, position)``, in gene orientation, zero-padded.
    reference_positions
        ``int32`` ``(haplotype, position)``: 0-based reference coordinate of each base,
        ``-1`` for inserted bases and padding.
    lengths
        Number of bases of each haplotype.
    counts
        How many person-haplotypes carry each haplotype.
    assignment
        ``int32`` ``(sample, 2)``: index of each person's two haplotypes.
    n_skipped_overlaps
        Person-haplotype records skipped because they overlap an applied record.
    """

    sequences: np.ndarray
    reference_positions: np.ndarray
    lengths: np.ndarray
    counts: np.ndarray
    assignment: np.ndarray
    n_skipped_overlaps: int


@dataclass
class GenotypeCounts:
    """What the genotype policies met in a window."""

    unphased_heterozygous: int = 0
    missing_alleles: int = 0


def apply_genotype_policies(
    block: VariantBlock,
    *,
    unphased: UnphasedPolicy,
    missing: MissingPolicy,
    samples: list[str],
    path: str,
    seed: int = 0,
) -> tuple[np.ndarray, GenotypeCounts]:
    """Resolve unphased heterozygous calls and missing alleles.

    Returns the ``int8`` allele array ``(record, sample, 2)`` with every allele ``>= 0``
    and the counts of what was resolved. The ``"random"`` phase of a call depends only on
    ``seed``, the record and the sample, so overlapping windows agree.
    """
    alleles = block.alleles.copy()
    counts = GenotypeCounts()
    is_missing = alleles < 0
    counts.missing_alleles = int(is_missing.sum())
    if counts.missing_alleles:
        if missing == "error":
            r, s, _ = np.argwhere(is_missing)[0]
            raise InputFileError(
                path,
                f"missing genotype for sample {samples[s]} (pass missing='reference' to "
                "keep the reference allele, as bcftools consensus does)",
                record=block.record_name(int(r)),
            )
        alleles[is_missing] = 0
    unphased_het = ~block.phased & (alleles[..., 0] != alleles[..., 1])
    counts.unphased_heterozygous = int(unphased_het.sum())
    if counts.unphased_heterozygous:
        if unphased == "error":
            r, s = np.argwhere(unphased_het)[0]
            raise InputFileError(
                path,
                f"unphased heterozygous genotype for sample {samples[s]}: the haplotypes are "
                f"undefined. Choose a policy: unphased='as_listed' (alleles in the order "
                "written, as bcftools consensus -H 1/-H 2), 'random' (random phase, seeded by "
                "rng) or 'reference' (keep the reference allele on both haplotypes)",
                record=block.record_name(int(r)),
            )
        if unphased == "random":
            for r in np.flatnonzero(unphased_het.any(axis=1)):
                key = zlib.crc32(block.record_name(int(r)).encode())
                rng = np.random.default_rng([seed, key])
                swap = unphased_het[r] & (rng.random(unphased_het.shape[1]) < 0.5)
                alleles[r, swap] = alleles[r, swap][:, ::-1]
        elif unphased == "reference":
            alleles[unphased_het] = 0
        elif unphased != "as_listed":
            raise ValueError(f"unknown unphased policy {unphased!r}")
    return alleles, counts


_ROW_WEIGHTS = np.random.default_rng(20261120).integers(1, 2**63, size=1 << 16, dtype=np.uint64)


def unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows of a non-negative integer matrix, with inverse and counts.

    Rows are hashed to 64-bit keys (a random linear map, wrapping) and grouped by key; the
    grouping is then checked row by row, falling back to ``numpy.unique(axis=0)`` in the
    astronomically rare case of a collision. Much faster than sorting whole rows.
    """
    n_columns = rows.shape[1]
    if n_columns > len(_ROW_WEIGHTS):
        weights = np.random.default_rng(n_columns).integers(1, 2**63, n_columns, np.uint64)
    else:
        weights = _ROW_WEIGHTS[:n_columns]
    keys = rows.astype(np.uint64) @ weights
    _, first, inverse, counts = np.unique(
        keys, return_index=True, return_inverse=True, return_counts=True
    )
    patterns = rows[first]
    if not np.array_equal(patterns[inverse], rows):
        patterns, inverse, counts = np.unique(rows, axis=0, return_inverse=True, return_counts=True)
    return patterns, inverse.reshape(-1), counts


def _allele_tables(refs: list[str], alts: list[list[str]]):
    """Flatten REF and ALT alleles into the arrays the compiled kernel reads."""
    pointer = np.zeros(len(refs), dtype=np.int64)
    starts, lengths, indel, chunks = [], [], [], []
    total = 0
    for j, (ref, alt) in enumerate(zip(refs, alts, strict=True)):
        pointer[j] = len(starts)
        for allele in (ref, *alt):
            applicable = allele and allele[0] not in "<*" and allele != "."
            encoded = allele.upper().encode("ascii") if applicable else b""
            indel.append(bool(applicable) and is_indel(ref.upper(), allele.upper()))
            starts.append(total)
            lengths.append(len(encoded) if applicable else -1)
            chunks.append(encoded)
            total += len(encoded)
    allele_bytes = np.frombuffer(b"".join(chunks) or b"\0", dtype=np.uint8)
    return (
        pointer,
        np.asarray(starts, dtype=np.int64),
        np.asarray(lengths, dtype=np.int64),
        np.asarray(indel, dtype=np.bool_),
        allele_bytes,
    )


def build_window_haplotypes(
    reference: np.ndarray,
    window_start: int,
    block: VariantBlock,
    alleles: np.ndarray,
    *,
    strand: str = "+",
) -> WindowHaplotypes:
    """Build the distinct haplotypes of one window.

    Parameters
    ----------
    reference
        Reference bases of the window (upper-case ASCII codes).
    window_start
        0-based coordinate of the first base.
    block
        Records whose ``POS`` lies inside the window, in file order.
    alleles
        Resolved alleles ``(record, sample, 2)`` (see :func:`apply_genotype_policies`).
    strand
        ``"-"`` returns sequences reverse-complemented (gene orientation).

    Notes
    -----
    Work grows with the number of distinct allele patterns, not with people: the genotype
    matrix is deduplicated first, each distinct pattern is built once, and patterns that
    give the same sequence are merged.
    """
    n_records, n_samples, _ = alleles.shape
    by_haplotype = alleles.reshape(n_records, n_samples * 2).T
    carried = by_haplotype.any(axis=0)
    by_haplotype = np.ascontiguousarray(by_haplotype[:, carried])
    offsets = block.positions[carried] - window_start
    refs = [r for r, c in zip(block.refs, carried, strict=True) if c]
    alts = [a for a, c in zip(block.alts, carried, strict=True) if c]
    if by_haplotype.shape[1]:
        patterns, inverse, counts = unique_rows(by_haplotype)
    else:
        patterns = np.zeros((1, 0), dtype=np.int8)
        inverse = np.zeros(n_samples * 2, dtype=np.int64)
        counts = np.array([n_samples * 2])
    inverse = inverse.reshape(-1)
    pointer, starts, lengths, indel, allele_bytes = _allele_tables(refs, alts)
    ref_lengths = np.array([len(r) for r in refs], dtype=np.int64)
    growth = 0
    for j in range(len(refs)):
        longest = lengths[pointer[j] + 1 : pointer[j] + 1 + len(alts[j])].max(initial=0)
        growth += max(0, int(longest) - int(ref_lengths[j]))
    capacity = len(reference) + growth
    n = len(patterns)
    sequences = np.zeros((n, capacity), dtype=np.uint8)
    positions = np.full((n, capacity), -1, dtype=np.int32)
    out_length = np.zeros(n, dtype=np.int64)
    skipped = np.zeros(n, dtype=np.int64)
    apply_variants(
        reference,
        window_start,
        offsets.astype(np.int64),
        ref_lengths,
        pointer,
        starts,
        lengths,
        indel,
        allele_bytes,
        patterns,
        sequences,
        positions,
        out_length,
        skipped,
    )
    n_skipped = int((skipped * counts).sum())
    sequences, positions, out_length, counts, inverse = _merge_identical(
        sequences, positions, out_length, counts, inverse
    )
    order = np.lexsort((np.arange(len(counts)), -counts))
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    sequences, positions, out_length, counts = (
        sequences[order],
        positions[order],
        out_length[order],
        counts[order],
    )
    inverse = rank[inverse]
    width = int(out_length.max())
    sequences, positions = sequences[:, :width], positions[:, :width]
    if strand == "-":
        sequences, positions = _reverse_complement_rows(sequences, positions, out_length)
    return WindowHaplotypes(
        sequences=sequences,
        reference_positions=positions,
        lengths=out_length.astype(np.int32),
        counts=counts.astype(np.int32),
        assignment=inverse.reshape(n_samples, 2).astype(np.int32),
        n_skipped_overlaps=n_skipped,
    )


def _merge_identical(sequences, positions, lengths, counts, inverse):
    """Merge allele patterns that produce the same sequence (and coordinates)."""
    keys: dict[bytes, int] = {}
    keep: list[int] = []
    remap = np.empty(len(sequences), dtype=np.int64)
    for i in range(len(sequences)):
        n = lengths[i]
        key = sequences[i, :n].tobytes() + positions[i, :n].tobytes()
        j = keys.setdefault(key, len(keep))
        if j == len(keep):
            keep.append(i)
        remap[i] = j
    if len(keep) == len(sequences):
        return sequences, positions, lengths, counts, inverse
    keep_index = np.asarray(keep)
    merged_counts = np.bincount(remap, weights=counts, minlength=len(keep)).astype(np.int64)
    return (
        sequences[keep_index],
        positions[keep_index],
        lengths[keep_index],
        merged_counts,
        remap[inverse],
    )


def _reverse_complement_rows(sequences, positions, lengths):
    """Reverse-complement each row's first ``lengths[i]`` bases, keeping the padding last."""
    out_seq = np.zeros_like(sequences)
    out_pos = np.full_like(positions, -1)
    for i, n in enumerate(lengths):
        out_seq[i, :n] = reverse_complement(sequences[i, :n])
        out_pos[i, :n] = positions[i, :n][::-1]
    return out_seq, out_pos
