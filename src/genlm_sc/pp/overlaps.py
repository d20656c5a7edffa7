"""Sequences that overlap: exact shared k-mers on both strands, and overlap groups.

Every ``k``-base window of every sequence is hashed (a polynomial hash modulo 2**64, so a
window's hash does not depend on where it sits), on both strands; a window and its reverse
complement get the same, *canonical* hash (the smaller of the two). Sorting the windows by
hash puts equal k-mers next to each other: :class:`KmerIndex` holds them so, and finds the
pairs of sequences that share one (:func:`shared_kmer_pairs`). Hashes only propose
pairs: every pair is confirmed by comparing the bases themselves, so two sequences are
never paired because of a hash collision, and a collision that could hide a pair is
detected and the search redone with another hash base. Memory peaks at about 60 bytes per
base of all sequences together (3.4 GB for a 56-Mbp corpus and five GUE tasks).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .haplotypes import reverse_complement

__all__ = [
    "KmerIndex",
    "as_codes",
    "overlap_groups",
    "shared_kmer_pairs",
]

#: Odd multipliers of the polynomial hash; the next one is tried after a collision.
_HASH_BASES = (0x9E3779B97F4A7C15, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9)
_BATCH_BASES = 1 << 22  # bases hashed at once (bounds the temporary arrays)
_UPPER = np.frombuffer(bytes(range(256)).upper(), dtype=np.uint8)


def as_codes(sequence: str | bytes | np.ndarray) -> np.ndarray:
    """A sequence as upper-case ASCII codes (``uint8``)."""
    if isinstance(sequence, str):
        sequence = sequence.encode("ascii")
    if isinstance(sequence, bytes):
        sequence = np.frombuffer(sequence, dtype=np.uint8)
    return _UPPER[np.asarray(sequence, dtype=np.uint8)]


@dataclass
class KmerIndex:
    """The canonical k-mers of a list of sequences, sorted by hash.

    Attributes
    ----------
    k
        Window length.
    text
        All sequences, concatenated (upper-case ASCII codes).
    offsets
        ``text[offsets[i]:offsets[i + 1]]`` is sequence ``i``.
    hashes
        Canonical hash of every window, sorted.
    where
        For each hash, ``2 * start + strand``: the window's start in ``text`` and whether
        the canonical k-mer is its reverse complement (``1``).
    """

    k: int
    text: np.ndarray
    offsets: np.ndarray
    hashes: np.ndarray
    where: np.ndarray

    @classmethod
    def build(
        cls, sequences: Sequence[np.ndarray], k: int, *, hash_base: int = _HASH_BASES[0]
    ) -> KmerIndex:
        """Index every ``k``-base window of ``sequences`` (upper-case ASCII codes)."""
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        lengths = np.array([len(s) for s in sequences], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(lengths)])
        text = np.concatenate(list(sequences)) if len(sequences) else np.zeros(0, np.uint8)
        n_windows = np.maximum(lengths - k + 1, 0)
        hashes = np.empty(int(n_windows.sum()), dtype=np.uint64)
        where = np.empty(hashes.size, dtype=np.int64)
        filled = 0
        for first, last in _batches(lengths):
            lo, hi = int(offsets[first]), int(offsets[last])
            forward, backward = _window_hashes(text[lo:hi], k, hash_base)
            counts = n_windows[first:last]
            starts = np.repeat(offsets[first:last], counts) + _ranges(counts)
            local = starts - lo
            flip = backward[local] < forward[local]
            n = starts.size
            hashes[filled : filled + n] = np.where(flip, backward[local], forward[local])
            where[filled : filled + n] = 2 * starts + flip
            filled += n
        order = np.argsort(hashes)
        return cls(k=k, text=text, offsets=offsets, hashes=hashes[order], where=where[order])

    def sequence_of(self, where: np.ndarray) -> np.ndarray:
        """Which sequence each window (``where`` code) lies in."""
        return np.searchsorted(self.offsets, where // 2, side="right") - 1

    def sequence_pairs(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The distinct pairs of sequences that hold windows ``a[i]`` and ``b[i]``.

        Returns
        -------
        The pairs (``(n, 2)``, sorted) and, for each, the first ``i`` that gives it.
        """
        n = max(self.offsets.size - 1, 1)
        key = self.sequence_of(a) * n + self.sequence_of(b)
        key, first = np.unique(key, return_index=True)
        return np.stack([key // n, key % n], axis=1), first

    def kmer(self, where: int) -> bytes:
        """The canonical k-mer of one window."""
        start = int(where) // 2
        codes = self.text[start : start + self.k]
        return (reverse_complement(codes) if where % 2 else codes).tobytes()

    def neighbour_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Pairs of windows next to each other in hash order, with equal hashes, in two
        different sequences (enough to connect every group of equal k-mers).

        Returns
        -------
        Two arrays of ``where`` codes.
        """
        same = np.flatnonzero(self.hashes[1:] == self.hashes[:-1])
        a, b = self.where[same], self.where[same + 1]
        apart = self.sequence_of(a) != self.sequence_of(b)
        return a[apart], b[apart]

    def cross_pairs(self, left: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every pair of windows with equal hashes, one in a ``left`` sequence (a boolean per
        sequence) and one in a sequence that is not ``left``.

        Returns
        -------
        ``where`` codes of the left and of the right window of each pair.
        """
        if not self.hashes.size:
            return self.where[:0], self.where[:0]
        side = left[self.sequence_of(self.where)]
        starts = np.flatnonzero(np.concatenate([[True], self.hashes[1:] != self.hashes[:-1]]))
        sizes = np.diff(np.append(starts, self.hashes.size))
        n_left = np.add.reduceat(side.astype(np.int64), starts)
        both = (n_left > 0) & (n_left < sizes)  # runs of equal hashes with both sides
        kept = np.repeat(both, sizes)
        n_left, sizes = n_left[both], sizes[both]
        run = np.repeat(np.arange(sizes.size), sizes)
        order = np.lexsort((~side[kept], run))  # in each run, left windows first
        where = self.where[kept][order]
        starts = np.cumsum(sizes) - sizes
        n_right = sizes - n_left
        # every left window of a run against every right window of it
        reps = np.repeat(n_right, n_left)
        left_at = np.repeat(starts, n_left) + _ranges(n_left)
        left_at = np.repeat(left_at, reps)
        right_at = np.repeat(starts + n_left, n_left * n_right) + _ranges(reps)
        return where[left_at], where[right_at]


def shared_kmer_pairs(
    sequences: Sequence[np.ndarray], k: int, *, left: np.ndarray | None = None
) -> np.ndarray:
    """Pairs of sequences that share an exact ``k``-mer, on either strand.

    Parameters
    ----------
    sequences
        Upper-case ASCII codes (:func:`as_codes`).
    k
        Length of the shared stretch.
    left
        A boolean per sequence: return every pair of a ``left`` sequence and one that is
        not ``left`` that share a ``k``-mer, the ``left`` one first. ``None``: return
        enough pairs to connect every group of sequences that share ``k``-mers (not every
        pair).

    Returns
    -------
    ``(n, 2)`` sequence numbers, distinct pairs, each confirmed base by base.
    """
    for hash_base in _HASH_BASES:
        index = KmerIndex.build(sequences, k, hash_base=hash_base)
        a, b = index.neighbour_pairs() if left is None else index.cross_pairs(left)
        distinct, first = index.sequence_pairs(a, b)
        same = [index.kmer(x) == index.kmer(y) for x, y in zip(a[first], b[first], strict=True)]
        # a pair whose first windows differ collided: another hash base may hide a real pair
        if all(same):
            return distinct.reshape(-1, 2)
    raise RuntimeError(f"k-mer hash collisions with {len(_HASH_BASES)} hash bases")


def overlap_groups(sequences: Iterable[str | bytes | np.ndarray], *, k: int = 200) -> np.ndarray:
    """Group sequences that share a stretch of ``k`` bases, on either strand.

    Two sequences are linked when one holds a ``k``-base stretch that the other holds too,
    as it is or reverse-complemented; a group is everything linked, directly or through
    others (union–find over exact shared ``k``-mers). Hold out whole groups, not single
    sequences, when sequences repeat each other: a corpus with the same TSS at several
    window sizes puts them all in one group. Matches are exact (bases compared, not only
    hashes). A sequence shorter than ``k`` shares no ``k``-mer and is a group of its own.

    Parameters
    ----------
    sequences
        DNA sequences (strings, bytes or ASCII codes; any case; ``N`` matches only ``N``),
        or a :class:`~genlm_sc.pp.PretrainingCorpus`.
    k
        Length of the shared stretch that links two sequences.

    Returns
    -------
    A group number for every sequence (``int64``), numbered from 0 in order of each
    group's first sequence.

    Examples
    --------
    >>> import genlm_sc as gl
    >>> gl.pp.overlap_groups(["ACGTACGTAA", "TTACGTACGT", "GGGGGGGGGG"], k=8).tolist()
    [0, 0, 1]
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    codes = [as_codes(s) for s in getattr(sequences, "sequences", sequences)]
    n = len(codes)
    if not n:
        return np.zeros(0, dtype=np.int64)
    pairs = shared_kmer_pairs(codes, k)
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    _, first = np.unique(labels, return_index=True)
    renumber = np.empty(len(first), dtype=np.int64)
    renumber[labels[np.sort(first)]] = np.arange(len(first))
    return renumber[labels]


def _window_hashes(codes: np.ndarray, k: int, hash_base: int) -> tuple[np.ndarray, np.ndarray]:
    """Hashes of every ``k``-window of ``codes`` and of its reverse complement.

    ``hash(x) = sum_t x[t] * B**t`` modulo 2**64: from prefix sums of ``codes[j] * B**j``,
    each window's sum is divided by ``B**start`` (multiplied by the inverse; ``B`` is odd),
    so equal windows hash equally wherever they are. ``backward[i]`` is the hash of the
    reverse complement of the window starting at ``i``.
    """
    n = codes.size - k + 1
    if n <= 0:
        empty = np.zeros(0, dtype=np.uint64)
        return empty, empty
    powers = np.full(codes.size, hash_base, dtype=np.uint64)
    powers[0] = 1
    powers = np.cumprod(powers, dtype=np.uint64)
    inverse = np.full(n, pow(hash_base, -1, 2**64), dtype=np.uint64)
    inverse[0] = 1
    inverse = np.cumprod(inverse, dtype=np.uint64)

    def windows(values: np.ndarray) -> np.ndarray:
        prefix = np.zeros(values.size + 1, dtype=np.uint64)
        np.cumsum(values.astype(np.uint64) * powers, out=prefix[1:])
        return (prefix[k:] - prefix[:n]) * inverse

    forward = windows(codes)
    backward = windows(reverse_complement(codes))[::-1]
    return forward, backward


def _batches(lengths: np.ndarray) -> Iterable[tuple[int, int]]:
    """Consecutive runs of sequences holding about ``_BATCH_BASES`` bases each."""
    first, held = 0, 0
    for i, length in enumerate(lengths.tolist()):
        held += length
        if held >= _BATCH_BASES:
            yield first, i + 1
            first, held = i + 1, 0
    if first < len(lengths):
        yield first, len(lengths)


def _ranges(counts: np.ndarray) -> np.ndarray:
    """``concatenate([arange(c) for c in counts])``, without the loop."""
    counts = np.asarray(counts, dtype=np.int64)
    total = int(counts.sum())
    if not total:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(counts)
    return np.arange(total) - np.repeat(ends - counts, counts)
