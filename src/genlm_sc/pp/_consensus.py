"""Apply variants to a reference window, one haplotype at a time (compiled with numba).

The rules are those of ``bcftools consensus -H 1``/``-H 2`` so that every haplotype equals
what that tool writes for the same window:

* records are applied in file order; only records whose ``POS`` lies inside the window;
* a record that overlaps the reference span of a record already applied to the same
  haplotype is skipped, except an indel whose first (anchor) base is shared with REF and is
  the last base of the previous record (not itself an insertion): then only the part after
  the anchor is applied, so ``T>C`` followed by ``TG>T`` gives ``C`` with the ``G`` deleted.
  "Indel" is meant as htslib classifies alleles (:func:`is_indel`): ``ACC>AA`` is not one;
* a REF that runs past the window end is clipped to the window, and so is an ALT longer
  than the clipped REF.

Where each output base came from is written as segments: runs of bases that copy
consecutive reference coordinates, and runs of inserted bases (reference ``-1``).
"""

from __future__ import annotations

import numba
import numpy as np

INSERTED = -1


@numba.njit(cache=True, nogil=True, inline="always")
def _extend(h, written, reference_start, count, seg_offset, seg_length, seg_reference, n, expected):
    """Add ``count`` bases starting at ``reference_start`` (-1: inserted) to the segments."""
    if count <= 0:
        return n, expected
    continues = n > 0 and (
        (reference_start >= 0 and reference_start == expected)
        or (reference_start < 0 and expected == INSERTED)
    )
    if continues:
        seg_length[h, n - 1] += count
    else:
        seg_offset[h, n] = written
        seg_length[h, n] = count
        seg_reference[h, n] = reference_start
        n += 1
    expected = reference_start + count if reference_start >= 0 else INSERTED
    return n, expected


@numba.njit(cache=True, nogil=True)
def apply_variants(
    reference: np.ndarray,
    window_start: int,
    offsets: np.ndarray,
    ref_lengths: np.ndarray,
    allele_pointer: np.ndarray,
    allele_start: np.ndarray,
    allele_length: np.ndarray,
    allele_indel: np.ndarray,
    allele_bytes: np.ndarray,
    patterns: np.ndarray,
    out_sequence: np.ndarray,
    out_length: np.ndarray,
    out_skipped: np.ndarray,
    seg_offset: np.ndarray,
    seg_length: np.ndarray,
    seg_reference: np.ndarray,
    seg_count: np.ndarray,
) -> None:
    """Build one haplotype per row of ``patterns``.

    Parameters
    ----------
    reference
        Window reference bases, ``uint8`` (length ``L``).
    window_start
        0-based coordinate of ``reference[0]``.
    offsets
        0-based offset of each record's ``POS`` inside the window (``0 <= offset < L``).
    ref_lengths
        Length of each record's REF allele.
    allele_pointer
        ``allele_pointer[j] + a`` indexes the allele tables for allele ``a`` of record ``j``
        (allele 0 is REF).
    allele_start, allele_length, allele_bytes
        Allele sequences, flattened; a negative length marks an allele that is never applied
        (symbolic alleles and ``*``).
    allele_indel
        Whether each allele is an insertion or deletion in htslib's sense.
    patterns
        ``int8`` array ``(haplotype, record)`` of allele indices; ``<= 0`` keeps the reference.
    out_sequence
        ``(haplotype, capacity)`` output bases.
    out_length
        Number of bases written per haplotype.
    out_skipped
        Number of overlapping records skipped per haplotype.
    seg_offset, seg_length, seg_reference, seg_count
        ``(haplotype, max segments)`` outputs: where each segment starts in the haplotype,
        how long it is and the reference coordinate of its first base (``-1``: inserted);
        ``seg_count`` holds the number of segments per haplotype.
    """
    window_length = reference.shape[0]
    n_records = patterns.shape[1]
    for h in range(patterns.shape[0]):
        cursor = 0  # next reference offset not yet written
        written = 0
        frozen = -1  # last reference offset covered by an applied record
        previous_is_insertion = False
        skipped = 0
        n = 0
        expected = -2
        for j in range(n_records):
            allele = patterns[h, j]
            if allele <= 0:
                continue
            k = allele_pointer[j] + allele
            alt_length = allele_length[k]
            if alt_length < 0:
                continue
            alt_begin = allele_start[k]
            ref_begin = allele_start[allele_pointer[j]]
            offset = offsets[j]
            ref_length = ref_lengths[j]
            shares_anchor = allele_indel[k] and allele_bytes[alt_begin] == allele_bytes[ref_begin]
            anchored = False
            if offset <= frozen:
                if offset < frozen or not shares_anchor or previous_is_insertion:
                    skipped += 1
                    continue
                anchored = True
            if ref_length > window_length - offset:
                ref_length = window_length - offset
                if alt_length > ref_length:
                    alt_length = ref_length
            if not anchored and offset > cursor:
                out_sequence[h, written : written + offset - cursor] = reference[cursor:offset]
                n, expected = _extend(
                    h, written, window_start + cursor, offset - cursor,
                    seg_offset, seg_length, seg_reference, n, expected,
                )  # fmt: skip
                written += offset - cursor
            first = 1 if anchored else 0
            for i in range(first, alt_length):
                out_sequence[h, written + i - first] = allele_bytes[alt_begin + i]
            substituted = min(alt_length, ref_length) - first
            n, expected = _extend(
                h, written, window_start + offset + first, substituted,
                seg_offset, seg_length, seg_reference, n, expected,
            )  # fmt: skip
            inserted = alt_length - max(ref_length, first)
            n, expected = _extend(
                h, written + max(substituted, 0), INSERTED, inserted,
                seg_offset, seg_length, seg_reference, n, expected,
            )  # fmt: skip
            written += max(alt_length - first, 0)
            if offset + ref_length > cursor:
                cursor = offset + ref_length
            previous_is_insertion = alt_length > ref_length
            frozen = offset + ref_length - 1
        if window_length > cursor:
            out_sequence[h, written : written + window_length - cursor] = reference[cursor:]
            n, expected = _extend(
                h, written, window_start + cursor, window_length - cursor,
                seg_offset, seg_length, seg_reference, n, expected,
            )  # fmt: skip
            written += window_length - cursor
        out_length[h] = written
        out_skipped[h] = skipped
        seg_count[h] = n


def is_indel(ref: str, alt: str) -> bool:
    """Whether htslib types ``ref>alt`` as an indel (``VCF_INDEL``).

    After the common prefix, either one allele is used up (``AC>A``, ``A>ACT``), or the
    alleles differ by one inserted or deleted stretch before a common suffix (``ATG>AG``).
    Substitutions with a length change such as ``ACC>AA`` are "other", not indels.
    """
    if len(ref) == 1 and len(alt) == 1:
        return False
    r = 0
    while r < len(ref) and r < len(alt) and ref[r] == alt[r]:
        r += 1
    if r == len(ref) or r == len(alt):
        return len(ref) != len(alt)
    ref_end, alt_end = len(ref) - 1, len(alt) - 1
    while ref[ref_end] == alt[alt_end] and ref_end > r and alt_end > r:
        ref_end -= 1
        alt_end -= 1
    if alt_end == r:
        return ref_end != r and ref[ref_end] == alt[alt_end]
    if ref_end == r:
        return ref[ref_end] == alt[alt_end]
    return False


@numba.njit(cache=True, nogil=True)
def reverse_complement_rows(sequences: np.ndarray, lengths: np.ndarray, table: np.ndarray) -> None:
    """Reverse-complement the first ``lengths[i]`` bases of each row, in place."""
    for i in range(sequences.shape[0]):
        lo, hi = 0, lengths[i] - 1
        while lo < hi:
            a, b = sequences[i, lo], sequences[i, hi]
            sequences[i, lo] = table[b]
            sequences[i, hi] = table[a]
            lo += 1
            hi -= 1
        if lo == hi:
            sequences[i, lo] = table[sequences[i, lo]]
