"""CpG islands from sequence alone (Gardiner-Garden and Frommer, 1987).

A stretch of DNA is a CpG island when it is at least ``min_length`` bases long, at least
``min_gc`` of its bases are G or C, and its CpG observed/expected ratio
``n_CpG × length / (n_C × n_G)`` is at least ``min_observed_expected``. The rule here
marks every base covered by a ``min_length``-base window that meets both thresholds; the
marked runs (overlapping windows merged) are the islands, so every island is at least
``min_length`` bases long. The default thresholds are Gardiner-Garden and Frommer's
(200 bp, GC 50 %, obs/exp 0.6); Takai and Jones' stricter ones (500 bp, 55 %, 0.65) are a
call away.
"""

from __future__ import annotations

import numpy as np

from .overlaps import as_codes

__all__ = ["cpg_islands"]


def cpg_islands(
    sequence: str | bytes | np.ndarray,
    *,
    min_length: int = 200,
    min_gc: float = 0.5,
    min_observed_expected: float = 0.6,
) -> np.ndarray:
    """Which bases of a sequence lie in a CpG island.

    Parameters
    ----------
    sequence
        DNA as text, bytes or ``uint8`` ASCII codes (either case; ``N`` counts as neither
        C nor G).
    min_length
        Window length, and so the shortest island.
    min_gc, min_observed_expected
        Thresholds a window must meet (both, inclusive).

    Returns
    -------
    ``bool`` array, one entry per base. A sequence shorter than ``min_length`` has none.

    Examples
    --------
    >>> import genlm_sc as gl
    >>> gl.pp.cpg_islands("CG" * 150).all()
    np.True_
    >>> gl.pp.cpg_islands("AT" * 150).any()
    np.False_
    """
    if min_length < 2:
        raise ValueError(f"min_length must be at least 2, got {min_length}")
    codes = as_codes(sequence)  # upper case
    n = len(codes)
    out = np.zeros(n, dtype=bool)
    if n < min_length:
        return out
    is_c, is_g = codes == ord("C"), codes == ord("G")
    is_cpg = is_c[:-1] & is_g[1:]

    def window_sums(flags: np.ndarray, width: int) -> np.ndarray:
        total = np.concatenate([[0], np.cumsum(flags, dtype=np.int64)])
        return total[width:] - total[:-width]

    c = window_sums(is_c, min_length)
    g = window_sums(is_g, min_length)
    # CpGs whose C and G both lie in the window starting at each position
    cpg = window_sums(is_cpg, min_length - 1)
    gc_ok = (c + g) >= min_gc * min_length
    ratio_ok = cpg * min_length >= min_observed_expected * c * g
    passing = gc_ok & ratio_ok & (c > 0) & (g > 0)
    starts = np.flatnonzero(passing)
    if starts.size:
        cover = np.zeros(n + 1, dtype=np.int64)
        np.add.at(cover, starts, 1)
        np.add.at(cover, starts + min_length, -1)
        out = np.cumsum(cover[:-1]) > 0
    return out
