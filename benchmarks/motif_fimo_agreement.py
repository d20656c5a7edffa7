"""Motif p-values: ``gl.tl.scan_motifs`` against FIMO (memelite), same motifs and sequences.

All 879 JASPAR 2024 CORE vertebrate motifs are scanned over ``--sequences`` real promoters
(2,048 bp each, drawn with ``--seed`` from ``promoters/gene_promoters_hg38.tsv.gz``), both
strands, by our scanner and by memelite's FIMO (Schreiber's numba implementation of the
MEME suite's FIMO), each at p < 1e-3, and the placements are joined on motif, start and
strand. FIMO is run three ways:

``same matrices, bin 0.1``
    Our log-odds matrices (counts + pseudocount 0.8 spread over a uniform background)
    given to FIMO as probabilities, so both score every placement the same; only the
    p-value computation differs (FIMO's default score bins of 0.1 bit; ours 0.01 bit).
``same matrices, bin 0.01``
    The same at our resolution: two independent implementations of the same exact
    distribution.
``JASPAR probabilities, FIMO defaults``
    What a user running FIMO on the JASPAR matrices gets: probabilities without
    pseudocounts (FIMO adds 1e-4 before the logarithm), bins of 0.1 bit.

Per configuration (``results/motif_fimo_agreement.csv``): how many placements each
reports at p < 1e-4, the fraction of FIMO's that we report and of ours that FIMO reports,
and over placements below 1e-4 in either: Spearman correlation of -log10 p, median, 99th
percentile and largest absolute difference of log10 p, the largest score difference, and
for motifs of at most 9 columns the distance of each side's log10 p from the exact value
(all 4**9 k-mers enumerated, each side's own matrix). memelite gives p = 0 to some
placements at the very top of a motif's score range (its table of p-values stops short of
them); they are counted (``n_fimo_pvalue_zero``) and left out of the comparison.

    python benchmarks/motif_fimo_agreement.py --sequences 200

Needs ``memelite`` (``pip install memelite``; in the ``bench`` and ``test`` extras).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
from memelite import fimo
from scipy.stats import spearmanr

import genlm_sc as gl
from genlm_sc._dna import BASES
from genlm_sc.tl.motifs.scanner import compile_motifs, scan_compiled, scan_table

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("GENLM_SC_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
JASPAR = SHARED / "motifs" / "JASPAR2024_CORE_vertebrates_nonredundant.jaspar.gz"
KEYS = ["sequence", "motif_id", "start", "strand"]


def fimo_matrices(motifs, *, pseudocount: float) -> dict[str, np.ndarray]:
    """Letter probabilities (4 × length, A C G T) of each motif, counts + ``pseudocount``
    spread evenly (with 0.8, the matrices :func:`gl.tl.scan_motifs` scores with)."""
    per_letter = dict.fromkeys(BASES, pseudocount / 4)
    return {
        m.matrix_id: np.array([m.counts.normalize(pseudocounts=per_letter)[b] for b in BASES])
        for m in motifs
    }


def fimo_hits(
    sequences: list[str], matrices: dict[str, np.ndarray], *, threshold: float, **options
) -> pd.DataFrame:
    """memelite FIMO placements with p < ``threshold`` on both strands of equal-length
    sequences, one row each: ``sequence`` (index), ``motif_id``, ``start``, ``end``,
    ``strand``, ``score``, ``pvalue``."""
    codes = np.frombuffer("".join(sequences).upper().encode(), np.uint8)
    onehot = np.stack([codes == ord(b) for b in BASES]).astype(np.float32)
    onehot = onehot.reshape(4, len(sequences), -1).transpose(1, 0, 2)
    found = [h for h in fimo(matrices, onehot, threshold=threshold, **options) if len(h)]
    table = pd.concat(found) if found else pd.DataFrame(columns=["motif_name"])
    return pd.DataFrame(
        {
            "sequence": table["sequence_name"].astype(int).to_numpy(),
            "motif_id": table["motif_name"].to_numpy(),
            "start": table["start"].astype(int).to_numpy(),
            "end": table["end"].astype(int).to_numpy(),
            "strand": table["strand"].to_numpy(),
            "score": table["score"].astype(float).to_numpy(),
            "pvalue": table["p-value"].astype(float).to_numpy(),
        }
    )


def our_hits(sequences: list[str], motifs, *, threshold: float) -> pd.DataFrame:
    """:func:`gl.tl.scan_motifs`' placements, the motifs compiled once."""
    compiled = compile_motifs(motifs, None, 0.8)
    lengths = np.array([c.length for c in compiled])
    tables = []
    for i, sequence in enumerate(sequences):
        m, start, sign, score, p = scan_compiled(compiled, sequence.upper(), threshold)
        table = scan_table(compiled, sequence.upper(), m, start, sign, score, p, lengths[m])
        tables.append(table.assign(sequence=i))
    return pd.concat(tables, ignore_index=True)


def log_odds(matrices: dict[str, np.ndarray], *, eps: float = 0.0) -> dict[str, np.ndarray]:
    """Scores in bits against a uniform background, as FIMO computes them."""
    return {name: np.log2(m + eps) + 2 for name, m in matrices.items()}


def exact_pvalues(hits: pd.DataFrame, scores: dict[str, np.ndarray], max_length: int = 9):
    """P(score >= s) of a uniform random k-mer, by enumerating all of them, for motifs of
    at most ``max_length`` columns (NaN for longer ones)."""
    out = pd.Series(np.nan, index=hits.index)
    for motif_id, rows in hits.groupby("motif_id").groups.items():
        matrix = scores[motif_id]
        if matrix.shape[1] > max_length:
            continue
        totals = np.zeros(1)
        for column in matrix.T:
            totals = (totals[:, None] + column[None, :]).ravel()
        totals = np.sort(totals)
        below = np.searchsorted(totals, hits.loc[rows, "score"].to_numpy() - 1e-9)
        out[rows] = (totals.size - below) / totals.size
    return out


def agreement(
    ours: pd.DataFrame, theirs: pd.DataFrame, exact: tuple[dict, dict], *, pvalue: float = 1e-4
) -> dict:
    """How our placements and p-values compare with FIMO's (both scanned below a looser
    threshold, so that a placement just above ``pvalue`` in one is still found), and with
    exact p-values of short motifs (``exact``: our and FIMO's score matrices)."""
    joined = ours.merge(theirs, on=KEYS, how="outer", suffixes=("_ours", "_fimo"))
    ours_hit, fimo_hit = joined["pvalue_ours"] < pvalue, joined["pvalue_fimo"] < pvalue
    either = joined[(ours_hit | fimo_hit)]
    both = either.dropna(subset=["pvalue_ours", "pvalue_fimo"])
    zero = both["pvalue_fimo"] == 0  # memelite's table ends below some top scores
    both = both[~zero]
    log_ours, log_fimo = np.log10(both["pvalue_ours"]), np.log10(both["pvalue_fimo"])
    difference = (log_ours - log_fimo).abs()
    ours_exact = np.log10(exact_pvalues(both.rename(columns={"score_ours": "score"}), exact[0]))
    fimo_exact = np.log10(exact_pvalues(both.rename(columns={"score_fimo": "score"}), exact[1]))
    short = ours_exact.notna()
    return {
        "n_fimo": int(fimo_hit.sum()),
        "n_ours": int(ours_hit.sum()),
        "fimo_hits_we_report": float(ours_hit[fimo_hit].mean()),
        "our_hits_fimo_reports": float(fimo_hit[ours_hit].mean()),
        "n_compared": len(both),
        "n_missing_in_one": len(either) - len(both) - int(zero.sum()),
        "n_fimo_pvalue_zero": int(zero.sum()),
        "spearman_log10p": float(spearmanr(log_ours, log_fimo).statistic),
        "median_abs_dlog10p": float(difference.median()),
        "p99_abs_dlog10p": float(difference.quantile(0.99)),
        "max_abs_dlog10p": float(difference.max()),
        "max_abs_dscore": float((both["score_ours"] - both["score_fimo"]).abs().max()),
        "n_short_motif_placements": int(short.sum()),
        "ours_vs_exact_p95_abs_dlog10p": float((log_ours - ours_exact)[short].abs().quantile(0.95)),
        "ours_vs_exact_max_abs_dlog10p": float((log_ours - ours_exact)[short].abs().max()),
        "fimo_vs_exact_p95_abs_dlog10p": float((log_fimo - fimo_exact)[short].abs().quantile(0.95)),
        "fimo_vs_exact_max_abs_dlog10p": float((log_fimo - fimo_exact)[short].abs().max()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "motif_fimo_agreement.csv")
    args = parser.parse_args()
    promoters = pd.read_csv(SHARED / "promoters" / "gene_promoters_hg38.tsv.gz", sep="\t")
    promoters = promoters[promoters["seq_len"] == 2048]
    picked = promoters.sample(args.sequences, random_state=args.seed)
    sequences = picked["sequence"].str.upper().tolist()
    motifs = gl.io.read_motifs(JASPAR)
    start = time.perf_counter()
    ours = our_hits(sequences, motifs, threshold=1e-3)
    ours_s = time.perf_counter() - start
    same = fimo_matrices(motifs, pseudocount=0.8)
    configurations = {
        "same matrices, bin 0.1": (same, {"eps": 0.0, "bin_size": 0.1}),
        "same matrices, bin 0.01": (same, {"eps": 0.0, "bin_size": 0.01}),
        "JASPAR probabilities, FIMO defaults": (fimo_matrices(motifs, pseudocount=0.0), {}),
    }
    rows = []
    for name, (matrices, options) in configurations.items():
        start = time.perf_counter()
        theirs = fimo_hits(sequences, matrices, threshold=1e-3, **options)
        fimo_s = time.perf_counter() - start
        exact = (log_odds(same), log_odds(matrices, eps=options.get("eps", 1e-4)))
        rows.append({"fimo": name, **agreement(ours, theirs, exact), "fimo_s": fimo_s,
                     "ours_s": ours_s, "n_sequences": len(sequences),
                     "n_bases": sum(map(len, sequences)), "n_motifs": len(motifs)})  # fmt: skip
        print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out, index=False)
    print(table.to_markdown(index=False, floatfmt=".4g"))


if __name__ == "__main__":
    main()
