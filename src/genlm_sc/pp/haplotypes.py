"""Unique haplotypes of one window: genotype policies, deduplication, strand."""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..io.errors import InputFileError
from ..io.vcf import ABSENT, VariantBlock, is_symbolic_allele
from ._consensus import apply_variants, is_indel, reverse_complement_rows

UnphasedPolicy = Literal["error", "as_listed", "random", "reference"]
MissingPolicy = Literal["reference", "error"]

_COMPLEMENT = np.arange(256, dtype=np.uint8)
for _a, _b in zip(b"ACGTRYKMBVDHNSW", b"TGCAYRMKVBHDNSW", strict=True):
    _COMPLEMENT[_a] = _b
    _COMPLEMENT[_a + 32] = _b + 32  # lower case keeps its case


def reverse_complement(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of ASCII base codes (IUPAC aware, case kept)."""
    return _COMPLEMENT[codes[::-1]]


def reverse_complement_text(sequence: str) -> str:
    """:func:`reverse_complement` of a sequence string."""
    codes = np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)
    return reverse_complement(codes).tobytes().decode("ascii")


@dataclass
class WindowHaplotypes:
    """The distinct haplotype sequences of one window and who carries them.

    Attributes
    ----------
    sequences
        ``uint8`` ASCII ``(haplotype, position)``, in gene orientation, zero-padded.
    lengths
        Number of bases of each haplotype.
    counts
        How many person-haplotypes carry each haplotype (haplotypes are ordered by it,
        most frequent first).
    assignment
        ``int32`` ``(sample, 2)``: index of each person's two haplotypes.
    segment_haplotype, segment_offset, segment_length, segment_reference
        Where each base came from, run-length encoded in gene orientation: segment ``k``
        covers bases ``segment_offset[k]`` to ``segment_offset[k] + segment_length[k] - 1``
        of haplotype ``segment_haplotype[k]``; they copy reference coordinates
        ``segment_reference[k]``, ``+ step``, ``+ 2 step`` ... (``step`` is ``+1`` on the plus
        strand and ``-1`` on the minus strand), or are inserted bases when
        ``segment_reference[k] == -1``. See :func:`expand_reference_positions`.
    n_skipped_overlaps
        Person-haplotype records skipped because they overlap an applied record.
    """

    sequences: np.ndarray
    lengths: np.ndarray
    counts: np.ndarray
    assignment: np.ndarray
    segment_haplotype: np.ndarray
    segment_offset: np.ndarray
    segment_length: np.ndarray
    segment_reference: np.ndarray
    n_skipped_overlaps: int

    def reference_positions(self, step: int = 1) -> np.ndarray:
        """Per-base reference coordinates ``(haplotype, position)``; ``-1`` where inserted."""
        return expand_reference_positions(
            len(self.lengths),
            self.sequences.shape[1],
            self.segment_haplotype,
            self.segment_offset,
            self.segment_length,
            self.segment_reference,
            step=step,
        )


def expand_reference_positions(
    n_haplotypes: int,
    width: int,
    segment_haplotype: np.ndarray,
    segment_offset: np.ndarray,
    segment_length: np.ndarray,
    segment_reference: np.ndarray,
    *,
    step: int = 1,
) -> np.ndarray:
    """Expand reference-coordinate segments into an ``int32`` ``(haplotype, width)`` map.

    Bases inserted by an indel, and padding past a haplotype's end, get ``-1``.
    """
    out = np.full((n_haplotypes, width), -1, dtype=np.int32)
    total = int(np.sum(segment_length))
    if not total:
        return out
    owner = np.repeat(np.arange(len(segment_length)), segment_length)
    within = np.arange(total) - np.repeat(
        np.cumsum(segment_length) - segment_length, segment_length
    )
    start = segment_reference[owner]
    values = np.where(start >= 0, start + step * within, -1)
    out[segment_haplotype[owner], segment_offset[owner] + within] = values
    return out


def stored_reference_positions(ds: Any, g: int, first: int, stop: int) -> np.ndarray:
    """The ``(haplotype, position)`` reference-coordinate map of haplotypes ``first:stop``
    of gene ``g`` in a haplotype store (``segment_*`` variables, see ``docs/format.md``)."""
    segment_haplotype = ds["segment_haplotype"].values
    lo, hi = np.searchsorted(segment_haplotype, [first, stop])
    lengths = ds["haplotype_length"][first:stop].values
    return expand_reference_positions(
        stop - first,
        int(lengths.max()) if len(lengths) else 0,
        segment_haplotype[lo:hi] - first,
        ds["segment_offset"][lo:hi].values,
        ds["segment_length"][lo:hi].values,
        ds["segment_reference_start"][lo:hi].values,
        step=-1 if str(ds["gene_strand"].values[g]) == "-" else 1,
    )


@dataclass
class GenotypeCounts:
    """What the genotype policies met in a window."""

    unphased_heterozygous: int = 0
    missing_alleles: int = 0
    haploid_calls: int = 0


def apply_genotype_policies(
    block: VariantBlock,
    *,
    unphased: UnphasedPolicy,
    missing: MissingPolicy,
    samples: list[str],
    path: str,
    random_state: int = 0,
) -> tuple[np.ndarray, GenotypeCounts]:
    """Resolve unphased heterozygous calls and missing alleles.

    Returns the ``int8`` allele array ``(record, sample, 2)`` with every allele ``>= 0``
    and the counts of what was resolved. The ``"random"`` phase of a call depends only on
    ``random_state``, the record and the sample, so overlapping windows agree.
    """
    alleles = block.alleles  # copied before the first change
    counts = GenotypeCounts()
    haploid = alleles == ABSENT
    counts.haploid_calls = int(np.count_nonzero(haploid))
    if counts.haploid_calls:  # the second haplotype keeps the reference, as in bcftools
        alleles = alleles.copy()
        alleles[haploid] = 0
    is_missing = alleles < 0
    counts.missing_alleles = int(np.count_nonzero(is_missing))
    if counts.missing_alleles:
        if missing == "error":
            r, s, _ = np.argwhere(is_missing)[0]
            raise InputFileError(
                path,
                f"missing genotype for sample {samples[s]} (pass missing='reference' to "
                "keep the reference allele, as bcftools consensus does)",
                record=block.record_name(int(r)),
            )
        alleles = alleles.copy()
        alleles[is_missing] = 0
    if block.phased.all():
        return alleles, counts
    unphased_het = ~block.phased & (alleles[..., 0] != alleles[..., 1])
    counts.unphased_heterozygous = int(unphased_het.sum())
    if counts.unphased_heterozygous:
        if unphased == "error":
            r, s = np.argwhere(unphased_het)[0]
            raise InputFileError(
                path,
                f"unphased heterozygous genotype for sample {samples[s]}: the haplotypes are "
                f"undefined. Choose a policy: unphased='as_listed' (alleles in the order "
                "written, as bcftools consensus -H 1/-H 2), 'random' (random phase, drawn "
                "from random_state) or 'reference' (keep the reference allele on both haplotypes)",
                record=block.record_name(int(r)),
            )
        if unphased in ("random", "reference") and alleles is block.alleles:
            alleles = alleles.copy()
        if unphased == "random":
            sample_keys = np.array([zlib.crc32(name.encode()) for name in samples], np.uint64)
            for r in np.flatnonzero(unphased_het.any(axis=1)):
                record_key = zlib.crc32(block.record_name(int(r)).encode())
                swap = unphased_het[r] & _coin(random_state, record_key, sample_keys)
                alleles[r, swap] = alleles[r, swap][:, ::-1]
        elif unphased == "reference":
            alleles[unphased_het] = 0
        elif unphased != "as_listed":
            raise ValueError(f"unknown unphased policy {unphased!r}")
    return alleles, counts


def _coin(random_state: int, record_key: int, sample_keys: np.ndarray) -> np.ndarray:
    """A fair, reproducible coin per sample: a 64-bit hash of (seed, record, sample id)."""
    with np.errstate(over="ignore"):
        z = np.full(len(sample_keys), (random_state * 0x9E3779B97F4A7C15) % 2**64, dtype=np.uint64)
        z ^= np.uint64(record_key) * np.uint64(0xBF58476D1CE4E5B9)
        z ^= sample_keys * np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(63)).astype(bool)


_ROW_WEIGHTS = np.random.default_rng(20261120).integers(1, 2**63, size=1 << 16, dtype=np.uint64)


def _row_weights(n: int) -> np.ndarray:
    if n <= len(_ROW_WEIGHTS):
        return _ROW_WEIGHTS[:n]
    return np.random.default_rng(n).integers(1, 2**63, n, dtype=np.uint64)


def unique_rows(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows of a non-negative integer matrix, with inverse and counts.

    Rows are hashed to 64-bit keys (a random linear map, wrapping) and grouped by key; the
    grouping is then checked row by row, falling back to ``numpy.unique(axis=0)`` in the
    astronomically rare case of a collision. Much faster than sorting whole rows.
    """
    keys = rows.astype(np.uint64) @ _row_weights(rows.shape[1])
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
            applicable = not is_symbolic_allele(allele)
            encoded = allele.upper().encode("ascii") if applicable else b""
            indel.append(applicable and is_indel(ref.upper(), allele.upper()))
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
    by_record = alleles.reshape(n_records, n_samples * 2)
    carried = by_record.any(axis=1)
    by_haplotype = np.ascontiguousarray(by_record[carried].T)
    offsets = (block.positions[carried] - window_start).astype(np.int64)
    refs = [r for r, c in zip(block.refs, carried, strict=True) if c]
    alts = [a for a, c in zip(block.alts, carried, strict=True) if c]
    if by_haplotype.shape[1]:
        patterns, inverse, counts = unique_rows(by_haplotype)
    else:
        patterns = np.zeros((1, 0), dtype=np.int8)
        inverse = np.zeros(n_samples * 2, dtype=np.int64)
        counts = np.array([n_samples * 2])
    order = np.argsort(-counts, kind="stable")
    patterns, counts = patterns[order], counts[order]
    inverse = _rank(order)[inverse]
    pointer, starts, lengths, indel, allele_bytes = _allele_tables(refs, alts)
    ref_lengths = np.array([len(r) for r in refs], dtype=np.int64)
    growth = sum(
        max(0, int(lengths[pointer[j] + 1 : pointer[j] + 1 + len(alts[j])].max(initial=0)) - len(r))
        for j, r in enumerate(refs)
    )
    n, max_segments = len(patterns), 3 * len(refs) + 2
    capacity = -(-(len(reference) + growth) // 8) * 8  # whole 64-bit words, for hashing
    sequences = np.zeros((n, capacity), dtype=np.uint8)
    out_length = np.zeros(n, dtype=np.int64)
    skipped = np.zeros(n, dtype=np.int64)
    seg_offset = np.zeros((n, max_segments), dtype=np.int64)
    seg_length = np.zeros((n, max_segments), dtype=np.int64)
    seg_reference = np.zeros((n, max_segments), dtype=np.int64)
    seg_count = np.zeros(n, dtype=np.int64)
    apply_variants(
        reference, window_start, offsets, ref_lengths, pointer, starts, lengths, indel,
        allele_bytes, patterns, sequences, out_length, skipped,
        seg_offset, seg_length, seg_reference, seg_count,
    )  # fmt: skip
    may_repeat = _has_equal_rows(sequences)
    sequences = sequences[:, : int(out_length.max())]
    valid = np.arange(max_segments)[None, :] < seg_count[:, None]
    segments = (
        np.nonzero(valid)[0],
        seg_offset[valid],
        seg_length[valid],
        seg_reference[valid],
    )
    n_skipped = int((skipped * counts).sum())
    if may_repeat:
        sequences, out_length, counts, inverse, segments = _merge_identical(
            sequences, out_length, counts, inverse, segments
        )
    if strand == "-":
        sequences, segments = _reverse_complement(sequences, out_length, segments)
    return WindowHaplotypes(
        sequences=sequences,
        lengths=out_length.astype(np.int32),
        counts=counts.astype(np.int32),
        assignment=inverse.reshape(n_samples, 2).astype(np.int32),
        segment_haplotype=segments[0].astype(np.int32),
        segment_offset=segments[1].astype(np.int32),
        segment_length=segments[2].astype(np.int32),
        segment_reference=segments[3].astype(np.int64),
        n_skipped_overlaps=n_skipped,
    )


def _rank(order: np.ndarray) -> np.ndarray:
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    return rank


def _has_equal_rows(sequences: np.ndarray) -> bool:
    """Whether two rows may be equal: their 64-bit hashes (a random linear map) collide.

    Rows are zero-padded to whole words, so equal sequences always hash equal.
    """
    words = sequences.view(np.uint64)
    keys = words @ _row_weights(words.shape[1])
    return len(np.unique(keys)) < len(keys)


def _merge_identical(sequences, lengths, counts, inverse, segments):
    """Merge allele patterns that produce the same bases from the same coordinates."""
    haplotype, offset, length, reference = segments
    keys: dict[bytes, int] = {}
    remap = np.empty(len(sequences), dtype=np.int64)
    bounds = np.searchsorted(haplotype, np.arange(len(sequences) + 1))
    for i in range(len(sequences)):
        lo, hi = bounds[i], bounds[i + 1]
        key = (
            sequences[i, : lengths[i]].tobytes()
            + offset[lo:hi].tobytes()
            + length[lo:hi].tobytes()
            + reference[lo:hi].tobytes()
        )
        remap[i] = keys.setdefault(key, len(keys))
    if len(keys) == len(sequences):
        return sequences, lengths, counts, inverse, segments
    merged_counts = np.bincount(remap, weights=counts, minlength=len(keys)).astype(np.int64)
    first = np.unique(remap, return_index=True)[1]
    order = np.argsort(-merged_counts, kind="stable")
    rank = _rank(order)
    keep = first[order]
    position = np.full(len(sequences), -1)
    position[keep] = np.arange(len(keep))
    kept_segment = position[haplotype] >= 0
    new_haplotype = position[haplotype][kept_segment]
    segment_order = np.lexsort((offset[kept_segment], new_haplotype))
    segments = tuple(
        array[segment_order]
        for array in (
            new_haplotype,
            offset[kept_segment],
            length[kept_segment],
            reference[kept_segment],
        )
    )
    return (
        sequences[keep],
        lengths[keep],
        merged_counts[order],
        rank[remap[inverse]],
        segments,
    )


def _reverse_complement(sequences, lengths, segments):
    """Reverse-complement each haplotype (padding stays at the end) and its segments."""
    out = np.ascontiguousarray(sequences)
    reverse_complement_rows(out, lengths, _COMPLEMENT)
    haplotype, offset, length, reference = segments
    new_offset = lengths[haplotype] - offset - length
    new_reference = np.where(reference >= 0, reference + length - 1, -1)
    order = np.lexsort((new_offset, haplotype))
    return out, (haplotype[order], new_offset[order], length[order], new_reference[order])
