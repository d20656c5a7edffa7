"""Transcription-factor motif scanning with exact p-values (FIMO's method).

Motifs are Biopython objects (:func:`genlm_sc.io.read_motifs`); their log-odds matrices are
built by Biopython (pseudocounts, background) and scanned with its C scorer
(:meth:`Bio.motifs.matrix.PositionSpecificScoringMatrix.calculate`, both strands as
``search(..., both=True)`` does). p-values follow FIMO: the probability that a random
sequence drawn from the background scores at least as high, from the exact distribution of
the score, computed by dynamic programming over the matrix rounded to ``0.01`` bit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..._dna import BASES
from ...pp.haplotypes import reverse_complement_text

__all__ = [
    "CompiledMotif",
    "check_pvalue",
    "compile_motifs",
    "encode",
    "scan_compiled",
    "scan_motifs",
    "scan_table",
    "scores_at",
]

#: Resolution of the score distribution, in bits: each log-odds entry is rounded to a
#: multiple of it for the p-value (the reported scores are not rounded).
SCORE_STEP = 0.01

_OTHER = 4  # code of any letter that is not A, C, G or T
_CODES = np.full(256, _OTHER, dtype=np.intp)
for _code, _base in enumerate(BASES):
    _CODES[ord(_base)] = _code
    _CODES[ord(_base.lower())] = _code
_RC_COLUMNS = [3, 2, 1, 0, 4]  # A C G T other -> T G C A other
_NEVER = -(2**40)  # rounded score of a letter the matrix forbids (log-odds -inf)

SCAN_COLUMNS = (
    "motif_id",
    "motif_name",
    "start",
    "end",
    "strand",
    "score",
    "pvalue",
    "matched_sequence",
)


# --------------------------------------------------------------------------------------
# Compiled motifs: log-odds matrices and their exact score distributions
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompiledMotif:
    """One motif ready to scan: its matrices on both strands and its score tail."""

    motif_id: str
    name: str
    length: int
    pssm: object  # Biopython PSSM, forward strand
    pssm_rc: object  # and of the reverse complement
    scores: np.ndarray  # (length, 5) log-odds, columns A C G T other (NaN)
    units: np.ndarray  # (length, 5) log-odds rounded to SCORE_STEP, int64 (other: 0)
    lowest: int  # smallest finite total of ``units``
    tail: np.ndarray  # tail[u - lowest] = P(total units >= u) under the background

    def pvalues(self, units: np.ndarray) -> np.ndarray:
        """P(score >= s) under the background for totals of rounded scores ``units``."""
        index = np.asarray(units, dtype=np.int64) - self.lowest
        out = np.ones(index.shape)
        inside = index >= 0  # below: a forbidden letter (-inf), p = 1
        out[inside] = self.tail[np.minimum(index[inside], self.tail.size - 1)]
        return out

    def threshold(self, pvalue: float) -> int | None:
        """Smallest total of rounded scores whose p-value is below ``pvalue`` (None: none)."""
        # tail is non-increasing: the first index where it drops below pvalue
        i = int(np.searchsorted(-self.tail, -pvalue, side="right"))
        return None if i >= self.tail.size else self.lowest + i

    def oriented(self, strand: str) -> tuple[np.ndarray, np.ndarray]:
        """``scores`` and ``units`` of the matrix read on ``strand`` of the forward sequence."""
        if strand == "+":
            return self.scores, self.units
        return self.scores[::-1, _RC_COLUMNS], self.units[::-1, _RC_COLUMNS]


def _background(background: Mapping[str, float] | float | None) -> dict[str, float]:
    """Background letter probabilities, averaged with their complement (both strands)."""
    if background is None:
        values = dict.fromkeys(BASES, 0.25)
    elif isinstance(background, Mapping):
        missing = [b for b in BASES if b not in background]
        if missing:
            raise ValueError(f"background lacks letters {missing}; give A, C, G and T")
        values = {b: float(background[b]) for b in BASES}
    else:
        gc = float(background)
        if not 0 < gc < 1:
            raise ValueError(f"background GC content must be between 0 and 1, got {gc}")
        values = {"A": (1 - gc) / 2, "C": gc / 2, "G": gc / 2, "T": (1 - gc) / 2}
    if any(not np.isfinite(v) or v <= 0 for v in values.values()):
        raise ValueError(f"background probabilities must be positive, got {values}")
    total = sum(values.values())
    at = (values["A"] + values["T"]) / (2 * total)
    cg = (values["C"] + values["G"]) / (2 * total)
    return {"A": at, "C": cg, "G": cg, "T": at}


def _as_motif_list(motifs) -> list:
    if isinstance(motifs, str | os.PathLike):
        from ...io.motifs import read_motifs

        return read_motifs(motifs)
    if hasattr(motifs, "counts"):
        return [motifs]
    motifs = list(motifs)
    if not motifs:
        raise ValueError("no motifs given")
    for i, motif in enumerate(motifs):
        if getattr(motif, "counts", None) is None:
            raise TypeError(
                f"motifs[{i}] is a {type(motif).__name__}, not a Bio.motifs motif with counts "
                "(read motifs with gl.io.read_motifs)"
            )
    return motifs


def compile_motifs(
    motifs, background: Mapping[str, float] | float | None, pseudocount: float
) -> list[CompiledMotif]:
    """Log-odds matrices (Biopython) and exact score tails of every motif."""
    if not np.isfinite(pseudocount) or pseudocount < 0:
        raise ValueError(f"pseudocount must be non-negative, got {pseudocount}")
    bg = _background(background)
    probabilities = np.array([bg[b] for b in BASES])
    letter_pseudocounts = {b: pseudocount * bg[b] for b in BASES}
    out = []
    for i, motif in enumerate(_as_motif_list(motifs)):
        motif_id = str(getattr(motif, "matrix_id", None) or motif.name or f"motif_{i}")
        if sorted(motif.counts.alphabet) != list(BASES):
            raise ValueError(f"motif {motif_id} is not a DNA motif (alphabet {motif.alphabet})")
        try:
            pssm = motif.counts.normalize(pseudocounts=letter_pseudocounts).log_odds(bg)
        except ZeroDivisionError as err:
            raise ValueError(
                f"motif {motif_id} has a column without counts; use a pseudocount > 0"
            ) from err
        length = int(pssm.length)
        scores = np.full((length, 5), np.nan)
        scores[:, :4] = np.array([pssm[b] for b in BASES], dtype=float).T
        finite = np.isfinite(scores[:, :4])
        units = np.zeros((length, 5), dtype=np.int64)
        units[:, :4] = np.where(
            finite, np.rint(np.where(finite, scores[:, :4], 0) / SCORE_STEP), _NEVER
        )
        lowest, tail = _score_tail(units[:, :4], finite, probabilities)
        out.append(
            CompiledMotif(
                motif_id=motif_id,
                name=str(getattr(motif, "name", "") or motif_id),
                length=length,
                pssm=pssm,
                pssm_rc=pssm.reverse_complement(),
                scores=scores,
                units=units,
                lowest=lowest,
                tail=tail,
            )
        )
    return out


def _score_tail(
    units: np.ndarray, finite: np.ndarray, probabilities: np.ndarray
) -> tuple[int, np.ndarray]:
    """Exact distribution of the total rounded score of a background sequence.

    Dynamic programme over positions: the probability of every attainable total, one
    column at a time (four shifted, weighted copies of the previous distribution). Letters
    with log-odds ``-inf`` take their probability mass out of every finite total.

    Returns
    -------
    The smallest finite total and ``tail[t] = P(total >= lowest + t)``.
    """
    low = np.where(finite, units, np.iinfo(np.int64).max).min(axis=1)
    shift = np.where(finite, units - low[:, None], -1)
    density = np.ones(1)
    for column, weight in zip(shift, finite, strict=True):
        grown = np.zeros(density.size + int(column.max()))
        for letter in np.flatnonzero(weight):
            d = int(column[letter])
            grown[d : d + density.size] += probabilities[letter] * density
        density = grown
    tail = np.cumsum(density[::-1])[::-1]
    return int(low.sum()), tail


# --------------------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------------------


def encode(sequence: str) -> np.ndarray:
    return _CODES[np.frombuffer(sequence.encode("ascii", errors="replace"), dtype=np.uint8)]


def scores_at(
    compiled: CompiledMotif, strand: str, codes: np.ndarray, starts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Log-odds scores and p-values of the placements starting at ``starts`` of ``codes``.

    A placement over a letter other than A, C, G, T gets NaN for both.
    """
    scores, units = compiled.oriented(strand)
    window = codes[starts[:, None] + np.arange(compiled.length)]
    rows = np.arange(compiled.length)
    score = scores[rows, window].sum(axis=1)
    pvalue = compiled.pvalues(units[rows, window].sum(axis=1))
    pvalue[np.isnan(score)] = np.nan
    return score, pvalue


def scan_compiled(
    compiled: list[CompiledMotif], sequence: str, pvalue: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every placement with p < ``pvalue`` on either strand of an upper-case ``sequence``.

    Biopython's C scorer gives every score; those within rounding of the threshold are
    rescored exactly. Returns motif index, start, strand (``+1``/``-1``), score, p-value.
    """
    text = sequence.encode("ascii", errors="replace")
    codes = _CODES[np.frombuffer(text, dtype=np.uint8)]
    found: list[tuple] = []
    for m, motif in enumerate(compiled):
        if codes.size < motif.length:
            continue
        cut = motif.threshold(pvalue)
        if cut is None:  # even the best score is not that rare (a short motif)
            continue
        # a placement whose rounded total reaches ``cut`` scores at least this much
        floor = (cut - 0.5 * motif.length) * SCORE_STEP - 1e-3
        for sign, pssm, strand in ((1, motif.pssm, "+"), (-1, motif.pssm_rc, "-")):
            raw = np.atleast_1d(pssm.calculate(text))
            starts = np.flatnonzero(raw >= floor)
            if not starts.size:
                continue
            score, p = scores_at(motif, strand, codes, starts)
            keep = p < pvalue
            if keep.any():
                n = int(keep.sum())
                found.append((np.full(n, m), starts[keep], np.full(n, sign), score[keep], p[keep]))
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, np.zeros(0), np.zeros(0)
    return tuple(np.concatenate(parts) for parts in zip(*found, strict=True))  # type: ignore[return-value]


def scan_motifs(
    sequence: str,
    motifs,
    *,
    pvalue: float = 1e-4,
    background: Mapping[str, float] | float | None = None,
    pseudocount: float = 0.8,
) -> pd.DataFrame:
    """Find motif matches on both strands of a sequence, with exact p-values (as FIMO).

    Parameters
    ----------
    sequence
        DNA sequence (any case). Placements over letters other than A, C, G, T (``N``)
        are not scored.
    motifs
        Motifs from :func:`genlm_sc.io.read_motifs` (a list, one motif, or a JASPAR/MEME
        file path).
    pvalue
        Report placements whose p-value is below this (strictly).
    background
        Letter probabilities of the background model: ``None`` (uniform), a mapping over
        ``A``, ``C``, ``G``, ``T``, or a GC fraction. Both strands are scanned, so it is
        averaged with its complement (A with T, C with G), as the MEME suite does.
    pseudocount
        Total pseudocount added to each column of counts, shared among the letters in
        proportion to the background (JASPAR's and TFBSTools' convention; 0.2 per letter
        for the default 0.8 and a uniform background).

    Returns
    -------
    DataFrame with one row per match, sorted by start, strand and motif:

    ``motif_id``, ``motif_name``
        JASPAR matrix id and TF name.
    ``start``, ``end``
        The placement, 0-based half-open, in the coordinates of ``sequence``.
    ``strand``
        ``"+"``: the motif matches ``sequence`` as given; ``"-"``: its reverse complement.
    ``score``
        Log-odds score in bits: sum over positions of ``log2(p(letter) / background)``,
        ``p`` from the counts plus pseudocounts.
    ``pvalue``
        Probability that a background sequence of the motif's length scores at least as
        high (one strand, like FIMO; no correction for the number of placements). Exact
        for the log-odds matrix rounded to :data:`SCORE_STEP` (0.01 bit) per entry, so it
        lies between the exact probabilities of scoring at least ``score ± 0.01 * length``
        bits; against enumeration of all 8- and 9-mers for 20 JASPAR motifs, 95 % of the
        p-values between 1e-5 and 1e-3 are within 1.7 % of the exact value.
    ``matched_sequence``
        The matched bases, read on the match's strand.

    Examples
    --------
    >>> import genlm_sc as gl
    >>> motifs = gl.io.read_motifs(ids=["MA0139"])  # doctest: +SKIP
    >>> gl.tl.scan_motifs(gl.get.sequences(panel).iloc[0], motifs)  # doctest: +SKIP
    """
    check_pvalue(pvalue)
    compiled = compile_motifs(motifs, background, pseudocount)
    text = str(sequence).upper()
    m, start, sign, score, p = scan_compiled(compiled, text, pvalue)
    lengths = np.array([c.length for c in compiled], dtype=np.int64)[m]
    table = scan_table(compiled, text, m, start, sign, score, p, lengths)
    return (
        table.sort_values(["start", "strand", "motif_index"], kind="stable")
        .drop(columns="motif_index")
        .reset_index(drop=True)
    )


def scan_table(compiled, text, m, start, sign, score, p, lengths) -> pd.DataFrame:
    matched = [text[s : s + n] for s, n in zip(start.tolist(), lengths.tolist(), strict=True)]
    matched = [
        seq if g > 0 else reverse_complement_text(seq)
        for seq, g in zip(matched, sign.tolist(), strict=True)
    ]
    return pd.DataFrame(
        {
            "motif_id": pd.Series([compiled[i].motif_id for i in m], dtype=object),
            "motif_name": pd.Series([compiled[i].name for i in m], dtype=object),
            "start": start.astype(np.int64),
            "end": (start + lengths).astype(np.int64),
            "strand": pd.Series(np.where(sign > 0, "+", "-"), dtype=object),
            "score": score.astype(float),
            "pvalue": p.astype(float),
            "matched_sequence": pd.Series(matched, dtype=object),
            "motif_index": m.astype(np.int64),
        }
    )


def check_pvalue(pvalue: float) -> None:
    if not 0 < pvalue <= 1:
        raise ValueError(f"pvalue must be in (0, 1], got {pvalue}")
