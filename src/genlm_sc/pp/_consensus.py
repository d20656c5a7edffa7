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

Every output base carries the 0-based reference coordinate it came from; bases inserted by
an indel carry ``-1``.
"""

from __future__ import annotations

import numba
import numpy as np

INSERTED = -1


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
    out_position: np.ndarray,
    out_length: np.ndarray,
    out_skipped: np.ndarray,
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
    out_sequence, out_position
        ``(haplotype, capacity)`` outputs: bases and their reference coordinates.
    out_length
        Number of bases written per haplotype.
    out_skipped
        Number of overlapping records skipped per haplotype.
    """
    window_length = reference.shape[0]
    n_records = patterns.shape[1]
    for h in range(patterns.shape[0]):
        cursor = 0  # next reference offset not yet written
        written = 0
        frozen = -1  # last reference offset covered by an applied record
        previous_is_insertion = False
        skipped = 0
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
            if not anchored:
                for i in range(cursor, offset):
                    out_sequence[h, written] = reference[i]
                    out_position[h, written] = window_start + i
                    written += 1
            first = 1 if anchored else 0
            for i in range(first, alt_length):
                out_sequence[h, written] = allele_bytes[alt_begin + i]
                out_position[h, written] = window_start + offset + i if i < ref_length else -1
                written += 1
            if offset + ref_length > cursor:
                cursor = offset + ref_length
            previous_is_insertion = alt_length > ref_length
            frozen = offset + ref_length - 1
        for i in range(cursor, window_length):
            out_sequence[h, written] = reference[i]
            out_position[h, written] = window_start + i
            written += 1
        out_length[h] = written
        out_skipped[h] = skipped


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
