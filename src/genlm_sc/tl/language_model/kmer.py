"""k-mer frequency profiles of a panel's sequences: the classical baseline representation."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

import anndata as ad
import numpy as np

from ... import get
from ..._dna import BASES

__all__ = ["kmer_profile"]

_INVALID = 4
_CODES = np.full(256, _INVALID, dtype=np.uint8)
for _code, _base in enumerate(BASES):
    _CODES[ord(_base)] = _code
    _CODES[ord(_base.lower())] = _code

# Cells (sequences x features) counted by one bincount: small enough to stay in cache.
_BATCH_CELLS = 2**18


def kmer_profile(
    adata: ad.AnnData,
    *,
    k: int | Iterable[int] = (3, 4, 5, 6),
    key_added: str = "X_kmer",
    canonical: bool = False,
    normalize: Literal["frequency", "counts"] = "frequency",
    copy: bool = False,
) -> ad.AnnData | None:
    """k-mer frequency profile of every sequence of a panel.

    The classical alignment-free representation of a sequence, the baseline that
    language-model embeddings are compared against.

    Parameters
    ----------
    adata
        A panel with sequences (:func:`genlm_sc.pp.sequence_panel`,
        :func:`genlm_sc.pp.gene_windows`); they are read with :func:`genlm_sc.get.sequences`.
    k
        One k-mer length or several; the profiles of each length are concatenated in the
        order given.
    key_added
        The profile goes to ``adata.obsm[key_added]``, its description to
        ``adata.uns[key_added]``.
    canonical
        Count a k-mer and its reverse complement together, under the lexicographically
        smaller of the two (strand-agnostic profile): ``(4**k + 4**(k//2)) / 2`` features
        for even ``k``, ``4**k / 2`` for odd ``k``.
    normalize
        ``"frequency"``: for each ``k``, counts divided by the number of valid k-mers of
        the sequence (those without ``N`` or any other non-ACGT letter), so each block
        sums to 1 (0 for a sequence with no valid k-mer). ``"counts"``: raw counts.
    copy
        Return an annotated copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the annotated copy when ``copy=True``. Sets

    ``adata.obsm[key_added]``
        ``float32`` array ``(n_obs, n_features)``.
    ``adata.uns[key_added]``
        ``{"features": k-mer of each column (str array), "k": lengths,
        "canonical": ..., "normalize": ...}``. Features of one ``k`` are in
        lexicographic order (``AAA``, ``AAC``, …).
    """
    ks = _as_lengths(k)
    if normalize not in ("frequency", "counts"):
        raise ValueError(f"normalize must be 'frequency' or 'counts', not {normalize!r}")
    adata = adata.copy() if copy else adata
    kmers = _Kmers(get.sequences(adata).tolist(), max(ks))
    blocks = [_features(length, canonical=canonical) for length in ks]
    out = np.empty((adata.n_obs, sum(f.size for f, _ in blocks)), dtype=np.float32)
    names, at = [], 0
    for length, (features, column) in zip(ks, blocks, strict=True):
        block = out[:, at : at + features.size]
        kmers.count(length, column, block, frequency=normalize == "frequency")
        names.extend(_kmer_name(f, length) for f in features)
        at += features.size
    adata.obsm[key_added] = out
    adata.uns[key_added] = {
        "features": np.array(names, dtype=str),
        "k": np.array(ks, dtype=np.int64),
        "canonical": canonical,
        "normalize": normalize,
    }
    return adata if copy else None


def _as_lengths(k: int | Iterable[int]) -> list[int]:
    ks = [int(k)] if np.isscalar(k) else [int(x) for x in k]
    if not ks or min(ks) < 1 or max(ks) > 12:
        raise ValueError(f"k must be one or more lengths between 1 and 12, got {k!r}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"repeated k in {k!r}")
    return ks


class _Kmers:
    """The k-mers of all sequences, concatenated one invalid base apart.

    Base codes: A, C, G, T = 0..3, anything else 4. ``index`` holds the base-4 index of the
    k-mer starting at every position, built up one length at a time.
    """

    def __init__(self, sequences: Sequence[str], max_k: int):
        lengths = np.fromiter((len(s) for s in sequences), dtype=np.int64, count=len(sequences))
        joined = "N".join(sequences).encode("ascii", errors="replace") + b"N" * max_k
        self.codes = _CODES[np.frombuffer(joined, dtype=np.uint8)]
        self.starts = np.concatenate([[0], np.cumsum(lengths + 1)])
        n = int(self.starts[-1])
        self.sequence = np.repeat(np.arange(len(sequences), dtype=np.int32), lengths + 1)
        positions = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
        next_invalid = np.where(self.codes[:n] == _INVALID, positions, n)
        next_invalid = np.minimum.accumulate(next_invalid[::-1])[::-1]
        self.room = next_invalid - positions  # valid bases from each position on
        self.index = np.zeros(n, dtype=np.int32)  # 4**12 fits
        self.k = 0

    def _extend(self, k: int) -> None:
        n = self.index.size
        while self.k < k:
            self.index *= 4
            self.index += self.codes[self.k : self.k + n] & 3
            self.k += 1

    def count(self, k: int, column: np.ndarray | None, out: np.ndarray, *, frequency: bool) -> None:
        """Write the k-mer counts (or frequencies) of every sequence into ``out``.

        ``column`` maps k-mer index to column of ``out`` (``None``: the identity).
        """
        if k < self.k:
            self.index[:] = 0
            self.k = 0
        self._extend(k)
        n_seq, width = out.shape
        batch = max(1, _BATCH_CELLS // width)
        for lo in range(0, n_seq, batch):
            hi = min(lo + batch, n_seq)
            window = slice(self.starts[lo], self.starts[hi])
            keep = self.room[window] >= k
            flat = (self.sequence[window][keep] - lo).astype(np.int64) * width
            index = self.index[window][keep]
            flat += index if column is None else column[index]
            counts = np.bincount(flat, minlength=(hi - lo) * width).reshape(-1, width)
            if frequency:
                out[lo:hi] = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
            else:
                out[lo:hi] = counts


def _features(k: int, *, canonical: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """Index of each feature of the block of length ``k``, and the column of every k-mer.

    Without ``canonical`` every k-mer is its own feature (column ``None``: the identity);
    with it, a k-mer and its reverse complement share the column of the smaller one.
    """
    index = np.arange(4**k)
    if not canonical:
        return index, None
    smaller = np.minimum(index, _reverse_complement_index(index, k))
    features, column = np.unique(smaller, return_inverse=True)
    return features, column.astype(np.int64)


def _reverse_complement_index(index: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros_like(index)
    rest = index.copy()
    for _ in range(k):
        out = out * 4 + (3 - rest % 4)
        rest //= 4
    return out


def _kmer_name(index: int, k: int) -> str:
    letters = []
    for _ in range(k):
        letters.append(BASES[index % 4])
        index //= 4
    return "".join(reversed(letters))
