"""Motif reading, scanning with exact p-values, and motifs broken or created by variants."""

from __future__ import annotations

import gzip
import itertools
import math
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from Bio.motifs import jaspar

import genlm_sc as gl
from conftest import SHARED, needs_shared, write_fasta, write_vcf
from genlm_sc.io import InputFileError
from genlm_sc.io.motifs import read_motifs
from genlm_sc.tl.motifs.scanner import SCORE_STEP, compile_motifs, scan_motifs
from genlm_sc.tl.motifs.variants import motif_matches

MOTIF_DIR = SHARED / "motifs"
JASPAR_FILE = MOTIF_DIR / "JASPAR2024_CORE_vertebrates_nonredundant.jaspar.gz"
MEME_FILE = MOTIF_DIR / "JASPAR2024_CORE_vertebrates_nonredundant.meme.gz"
BASES = "ACGT"
COMPLEMENT = str.maketrans("ACGT", "TGCA")

# An 8-bp motif with one allowed base per column: at p < 1e-4 only the exact consensus
# matches (p = 4**-8 = 1.5e-5; one mismatch: 25 * 4**-8 = 3.8e-4).
CONSENSUS = "TGACCTAG"
# A 10-bp motif whose column 4 allows A (12 of 20) and, less, C (8 of 20).
GRADED = "GCTAACGTCT"


def rc(sequence: str) -> str:
    return sequence.translate(COMPLEMENT)[::-1]


def motif_from(consensus: str, matrix_id: str, name: str, n: float = 20.0, **columns):
    """A JASPAR motif allowing only the consensus base, or the given counts per column."""
    counts = {b: [n if c == b else 0.0 for c in consensus] for b in BASES}
    for column, values in columns.items():
        for b, value in zip(BASES, values, strict=True):
            counts[b][int(column[1:])] = float(value)
    return jaspar.Motif(matrix_id, name, counts=counts)


def log_odds(count: float, total: float, background: float, pseudocount: float = 0.8) -> float:
    """log2 of (count + pseudocount * background) / (total + pseudocount), over background."""
    return math.log2((count + pseudocount * background) / (total + pseudocount) / background)


# --------------------------------------------------------------------------------------
# Scanning
# --------------------------------------------------------------------------------------


def random_sequence(n: int, seed: int, avoid: tuple[str, ...]) -> str:
    rng = np.random.default_rng(seed)
    while True:
        sequence = "".join(rng.choice(list(BASES), n))
        if not any(a in sequence or rc(a) in sequence for a in avoid):
            return sequence


def test_planted_instance_found_at_its_position_and_strand():
    motif = motif_from(CONSENSUS, "T0001.1", "planted")
    sequence = list(random_sequence(400, 1, (CONSENSUS,)))
    sequence[123:131] = CONSENSUS
    sequence[300:308] = rc(CONSENSUS)
    sequence = "".join(sequence).lower()  # case does not matter
    hits = scan_motifs(sequence, [motif])
    assert list(hits.columns) == [
        "motif_id", "motif_name", "start", "end", "strand", "score", "pvalue",
        "matched_sequence",
    ]  # fmt: skip
    assert hits[["start", "end", "strand"]].values.tolist() == [[123, 131, "+"], [300, 308, "-"]]
    assert (hits["motif_id"] == "T0001.1").all() and (hits["motif_name"] == "planted").all()
    assert (hits["matched_sequence"] == CONSENSUS).all()
    np.testing.assert_allclose(hits["pvalue"], 4.0**-8)
    np.testing.assert_allclose(hits["score"], 8 * log_odds(20, 20, 0.25))
    # one mismatch is not significant at 1e-4, but is at 1e-3 (p = 25 / 4**8)
    broken = sequence[:125] + ("a" if sequence[125] != "a" else "c") + sequence[126:]
    assert scan_motifs(broken, [motif])["start"].tolist() == [300]
    loose = scan_motifs(broken, [motif], pvalue=1e-3)
    row = loose.loc[loose["start"] == 123].iloc[0]
    assert row["pvalue"] == pytest.approx(25 * 4.0**-8)
    # placements over N are not scored
    assert scan_motifs(sequence[:126] + "N" + sequence[127:], [motif])["start"].tolist() == [300]


def test_score_is_the_hand_computed_log_odds():
    counts = {"A": [3, 0, 9, 1], "C": [5, 1, 0, 2], "G": [0, 8, 1, 3], "T": [2, 1, 0, 4]}
    motif = jaspar.Motif("T0002.1", "hand", counts=counts)
    background = {"A": 0.3, "C": 0.2, "G": 0.2, "T": 0.3}
    sequence = "TTTT" + "CGAT" + "TTTT"
    hits = scan_motifs(sequence, [motif], pvalue=1.0, background=background, pseudocount=0.5)
    row = hits.loc[(hits["start"] == 4) & (hits["strand"] == "+")].iloc[0]
    expected = sum(
        log_odds(counts[b][i], 10, background[b], pseudocount=0.5) for i, b in enumerate("CGAT")
    )
    assert row["score"] == pytest.approx(expected, abs=1e-9)
    # the minus strand scores the reverse complement of the same bases
    row = hits.loc[(hits["start"] == 4) & (hits["strand"] == "-")].iloc[0]
    assert row["matched_sequence"] == rc("CGAT")
    expected = sum(
        log_odds(counts[b][i], 10, background[b], pseudocount=0.5) for i, b in enumerate(rc("CGAT"))
    )
    assert row["score"] == pytest.approx(expected, abs=1e-9)


def enumerate_tail(motif, background: dict[str, float], pseudocount: float):
    """Scores of all k-mers and, for each, the exact P(score >= its score) by enumeration."""
    compiled = compile_motifs([motif], background, pseudocount)[0]
    kmers = np.array(list(itertools.product(range(4), repeat=compiled.length)))
    weight = np.array([background[b] for b in BASES])[kmers].prod(axis=1)
    scores = compiled.scores[np.arange(compiled.length), kmers].sum(axis=1)
    order = np.argsort(scores)
    sorted_scores = scores[order]
    tail = np.concatenate([np.cumsum(weight[order][::-1])[::-1], [0.0]])

    def at_least(s):
        return tail[np.searchsorted(sorted_scores, s, side="left")]

    words = ["".join(BASES[c] for c in kmer) for kmer in kmers]
    return words, scores, at_least


def scan_all_kmers(words, motif, **options) -> pd.Series:
    """p-value of the + strand placement of every word, scanning them all in one sequence."""
    k = len(words[0])
    hits = scan_motifs("N".join(words), [motif], pvalue=1.0, **options)
    hits = hits.loc[hits["strand"] == "+"]
    assert (hits["start"] % (k + 1) == 0).all()
    return pd.Series(hits["pvalue"].to_numpy(), index=hits["start"].to_numpy() // (k + 1))


def test_pvalues_equal_enumeration_when_scores_are_exact():
    # probabilities 1/2, 1/4, 1/8, 1/8 against a uniform background: integer log-odds,
    # so the rounded matrix is the matrix itself, with many tied scores
    counts = {
        "A": [4, 1, 2, 1, 2],
        "C": [2, 1, 2, 4, 1],
        "G": [1, 2, 2, 2, 4],
        "T": [1, 4, 2, 1, 1],
    }
    motif = jaspar.Motif("T0003.1", "exact", counts=counts)
    uniform = dict.fromkeys(BASES, 0.25)
    words, scores, at_least = enumerate_tail(motif, uniform, 0.0)
    assert np.allclose(scores, np.round(scores))
    pvalues = scan_all_kmers(words, motif, pseudocount=0.0)
    expected = at_least(scores - 1e-9)
    # every word is reported except those with the lowest score (p = 1, not < 1)
    assert set(range(len(words))) - set(pvalues.index) == set(np.flatnonzero(expected == 1.0))
    np.testing.assert_allclose(pvalues.to_numpy(), expected[pvalues.index], rtol=1e-12)


def test_pvalues_agree_with_enumeration_within_the_rounding():
    rng = np.random.default_rng(7)
    counts = {b: rng.integers(0, 30, size=7).astype(float).tolist() for b in BASES}
    motif = jaspar.Motif("T0004.1", "random", counts=counts)
    background = {"A": 0.3, "C": 0.2, "G": 0.2, "T": 0.3}
    words, scores, at_least = enumerate_tail(motif, background, 0.8)
    pvalues = scan_all_kmers(words, motif, background=background)
    # p is exact for the matrix rounded to SCORE_STEP: the observed and every other
    # score move by at most half a step per column
    delta = SCORE_STEP * len(words[0]) + 1e-9
    # left out: only the lowest rounded score, whose p-value is 1 (not < 1)
    missing = np.setdiff1d(np.arange(len(words)), pvalues.index)
    assert 0 < missing.size < 5
    np.testing.assert_allclose(at_least(scores[missing] - delta), 1.0)
    s = scores[pvalues.index]
    p = pvalues.to_numpy()
    assert np.all(p >= at_least(s + delta) * (1 - 1e-12))
    assert np.all(p <= at_least(s - delta) * (1 + 1e-12))
    exact = at_least(s - 1e-9)
    assert np.median(np.abs(np.log(p / exact))) < 0.01
    # the tail probabilities under this (strand-symmetric) background sum to one
    assert at_least(-np.inf) == pytest.approx(1.0)


def test_scan_rejects_bad_options():
    motif = motif_from(CONSENSUS, "T0001.1", "planted")
    with pytest.raises(ValueError, match="pvalue"):
        scan_motifs("ACGT" * 10, [motif], pvalue=0)
    with pytest.raises(ValueError, match="background"):
        scan_motifs("ACGT" * 10, [motif], background={"A": 1.0})
    with pytest.raises(ValueError, match="pseudocount"):
        scan_motifs("ACGT" * 10, [motif], pseudocount=-1)
    with pytest.raises(ValueError, match="pseudocount > 0"):
        scan_motifs("ACGT" * 10, [motif_from("ACG", "Z.1", "z", n=0.0)], pseudocount=0)
    with pytest.raises(TypeError, match="read_motifs"):
        scan_motifs("ACGT" * 10, ["ACGT"])
    assert scan_motifs("ACG", [motif]).empty  # shorter than the motif


# --------------------------------------------------------------------------------------
# Reading motif files
# --------------------------------------------------------------------------------------

JASPAR_TEXT = """>MA9991.1 ONE
A  [ 10  0  0  5 ]
C  [  0 10  0  5 ]
G  [  0  0 10  0 ]
T  [  0  0  0  0 ]
>MA9992.2 TWO
A  [  1  2  3 ]
C  [  3  2  1 ]
G  [  0  0  0 ]
T  [  0  0  0 ]
"""

MEME_TEXT = """MEME version 4

ALPHABET= ACGT

strands: + -

Background letter frequencies
A 0.25 C 0.25 G 0.25 T 0.25

MOTIF MA9991.1 ONE
letter-probability matrix: alength= 4 w= 4 nsites= 10 E= 0
1.0 0.0 0.0 0.0
0.0 1.0 0.0 0.0
0.0 0.0 1.0 0.0
0.5 0.5 0.0 0.0

MOTIF MA9992.2
letter-probability matrix: alength= 4 w= 3 nsites= 4 E= 0
0.25 0.75 0.0 0.0
0.5 0.5 0.0 0.0
0.75 0.25 0.0 0.0
"""


def test_read_small_jaspar_and_meme_files(tmp_path):
    plain = tmp_path / "two.jaspar"
    plain.write_text(JASPAR_TEXT)
    packed = tmp_path / "two.txt.gz"  # neither name nor compression decides: the content does
    packed.write_bytes(gzip.compress(JASPAR_TEXT.encode()))
    meme = tmp_path / "two.meme"
    meme.write_text(MEME_TEXT)
    for path in (plain, packed, meme):
        motifs = read_motifs(path)
        assert all(isinstance(m, jaspar.Motif) for m in motifs)
        assert [m.matrix_id for m in motifs] == ["MA9991.1", "MA9992.2"], path
        assert [len(m) for m in motifs] == [4, 3]
        assert motifs[0].counts["C"][3] == 5
    assert [m.name for m in read_motifs(plain)] == ["ONE", "TWO"]
    assert [m.name for m in read_motifs(meme)] == ["ONE", "MA9992.2"]  # no name: the id
    assert [m.matrix_id for m in read_motifs(plain, ids=["MA9992", "MA9991.1"])] == [
        "MA9992.2",
        "MA9991.1",
    ]
    with pytest.raises(KeyError, match=r"MA0000\.1"):
        read_motifs(plain, ids=["MA0000.1"])


@pytest.mark.parametrize(
    ("name", "text", "words", "record"),
    [
        ("missing.jaspar", None, ["no such file"], None),
        ("notes.txt", "hello\nworld\n", ["not a motif file"], "line 1"),
        ("empty.jaspar", "", ["no motifs found"], None),
        ("empty.txt", "", ["not a motif file", "empty"], "line 1"),
        (
            "letters.jaspar",
            ">MA1.1 X\nA [1 2]\nC [x 1]\nG [0 0]\nT [0 0]\n",
            ["cannot parse"],
            "MA1.1",
        ),
        ("short.jaspar", JASPAR_TEXT.rsplit("\n", 2)[0] + "\n", ["four rows"], "MA9992.2"),
        (
            "ragged.jaspar",
            ">MA1.1 X\nA [1 2]\nC [1]\nG [0 0]\nT [0 0]\n",
            ["inconsistent"],
            "MA1.1",
        ),
        ("nomeme.meme", MEME_TEXT.replace("MEME version 4", "MEMO"), ["MEME"], None),
        ("width.meme", MEME_TEXT.replace("w= 3", "w= 5"), ["w= 5"], "MA9992.2"),
    ],
)
def test_bad_motif_files_name_the_file_and_the_problem(tmp_path, name, text, words, record):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(InputFileError) as caught:
        read_motifs(path)
    err = caught.value
    assert err.path == str(path) and str(err).startswith(str(path))
    for word in words:
        assert word.lower() in str(err).lower(), str(err)
    if record is not None:
        assert record in (err.record or ""), str(err)


def test_offline_jaspar_database_is_pinned():
    pytest.importorskip("pyjaspar")
    (ctcf,) = read_motifs(ids=["MA0139"])
    assert (ctcf.matrix_id, ctcf.name) == ("MA0139.2", "CTCF")  # JASPAR 2024, not 2026's
    with pytest.raises(ValueError, match="unknown JASPAR release"):
        read_motifs(release="JASPAR1999")


@pytest.mark.shared_data
@needs_shared
def test_shared_jaspar_and_meme_files_hold_the_same_879_motifs():
    from_jaspar = read_motifs(JASPAR_FILE)
    from_meme = read_motifs(MEME_FILE)
    ids = [m.matrix_id for m in from_jaspar]
    assert len(ids) == len(set(ids)) == 879
    assert [m.matrix_id for m in from_meme] == ids
    assert [m.name for m in from_meme] == [m.name for m in from_jaspar]
    for a, b in zip(from_jaspar, from_meme, strict=True):
        pa = np.array([a.counts[x] for x in BASES], dtype=float)
        pb = np.array([b.counts[x] for x in BASES], dtype=float)
        # MEME holds probabilities to 6 decimals; Biopython rounds p * nsites to counts
        np.testing.assert_allclose(pa / pa.sum(0), pb / pb.sum(0), atol=0.02)
    try:
        import pyjaspar  # noqa: F401
    except ImportError:
        return
    from_database = read_motifs()
    assert [m.matrix_id for m in from_database] == ids
    for a, b in zip(from_jaspar, from_database, strict=True):
        for x in BASES:
            np.testing.assert_allclose(a.counts[x], b.counts[x], atol=0.005)  # 2 decimals


@pytest.mark.shared_data
@needs_shared
def test_scanning_a_real_window_with_all_jaspar_motifs(example):
    motifs = read_motifs(JASPAR_FILE)
    with gl.io.FastaReference(example.fasta) as reference:
        sequence = reference.fetch_str("20", 1_091_857, 1_095_953)  # 4,096 bp around PSMF1
    hits = scan_motifs(sequence, motifs)
    assert len(hits) > 100 and set(hits["strand"]) == {"+", "-"}
    assert (hits["pvalue"] < 1e-4).all()
    by_id = {m.matrix_id: m for m in motifs}
    for row in hits.sample(50, random_state=0).itertuples():
        bases = sequence[row.start : row.end]
        assert row.matched_sequence == (bases if row.strand == "+" else rc(bases))
        # Biopython scores the matched bases the same
        pssm = (
            by_id[row.motif_id].counts.normalize(pseudocounts=dict.fromkeys(BASES, 0.2)).log_odds()
        )
        assert float(pssm.calculate(row.matched_sequence)) == pytest.approx(row.score, abs=1e-4)


@pytest.mark.shared_data
@needs_shared
def test_pvalues_agree_with_fimo_on_a_real_window(example):
    """memelite's FIMO, given our matrices, finds the same placements with close p-values."""
    memelite = pytest.importorskip("memelite")
    from scipy.stats import spearmanr

    motifs = read_motifs(JASPAR_FILE)
    with gl.io.FastaReference(example.fasta) as reference:
        sequence = reference.fetch_str("20", 1_091_857, 1_095_953).upper()  # PSMF1
    ours = scan_motifs(sequence, motifs, pvalue=1e-3)
    per_letter = dict.fromkeys(BASES, 0.2)  # our pseudocount 0.8, uniform background
    matrices = {
        m.matrix_id: np.array([m.counts.normalize(pseudocounts=per_letter)[b] for b in BASES])
        for m in motifs
    }
    codes = np.frombuffer(sequence.encode(), np.uint8)
    onehot = np.stack([codes == ord(b) for b in BASES]).astype(np.float32)[None]
    hits = memelite.fimo(matrices, onehot, threshold=1e-3, eps=0.0, bin_size=SCORE_STEP)
    theirs = pd.concat([h for h in hits if len(h)]).rename(
        columns={"motif_name": "motif_id", "p-value": "fimo_pvalue", "score": "fimo_score"}
    )
    joined = ours.merge(theirs, on=["motif_id", "start", "strand"], how="outer")
    strong = joined[(joined["pvalue"] < 1e-4) | (joined["fimo_pvalue"] < 1e-4)]
    assert strong[["pvalue", "fimo_pvalue"]].notna().all().all()  # each finds the other's
    assert np.allclose(strong["score"], strong["fimo_score"], atol=1e-6)
    # memelite's p-value table stops short of some top scores: p = 0 there, even where a
    # short motif's best score has p = 4**-5
    compared = strong[strong["fimo_pvalue"] > 0]
    fimo_hits = compared[compared["fimo_pvalue"] < 1e-4]
    assert (fimo_hits["pvalue"] < 1e-4).mean() > 0.95  # the rest lie within rounding
    assert (fimo_hits["pvalue"] < 2e-4).all()
    ours_log, fimo_log = np.log10(compared["pvalue"]), np.log10(compared["fimo_pvalue"])
    assert spearmanr(ours_log, fimo_log).statistic > 0.98
    assert (ours_log - fimo_log).abs().median() < 0.01
    assert (ours_log - fimo_log).abs().max() < 0.5  # at most a factor of 3


# --------------------------------------------------------------------------------------
# Variants of a tiny cohort
# --------------------------------------------------------------------------------------

CONTIG = 3000
GENES_TSV = (
    "chrom\tstart0\tend\tgene_id\tgene_name\tgene_type\tstrand\ttss0\n"
    "1\t1500\t2000\tGP\tPLUS\tprotein_coding\t+\t1500\n"
    "1\t1000\t1501\tGM\tMINUS\tprotein_coding\t-\t1500\n"
)


def other(base: str) -> str:
    return "A" if base != "A" else "C"


def tiny_cohort(folder: Path) -> ad.AnnData:
    """A random 3-kb contig with planted motif instances and variants that hit them.

    ============  ==========================================================  =============
    variant       what it does                                                expected
    ============  ==========================================================  =============
    brk           SNV inside the consensus at 500 (+)                        breaks
    crt           SNV restoring the consensus at 800 (+), one base off       creates
    brk_minus     SNV inside the reverse complement at 1100 (- strand)       breaks
    del           1-bp deletion inside the consensus at 1300                 breaks
    ins           1-bp insertion completing the consensus at 1600            creates
    multi         two ALT bases inside the consensus at 1900                 breaks, twice
    weak, strong  GRADED column 4: A -> C at 2200, C -> A at 2400             weakens,
                                                                              strengthens
    none          SNV far from any instance (2700)                           nothing
    ============  ==========================================================  =============
    """
    ref = list(random_sequence(CONTIG, 3, (CONSENSUS, GRADED)))
    ref[500:508] = CONSENSUS
    near = CONSENSUS[:5] + other(CONSENSUS[5]) + CONSENSUS[6:]
    ref[800:808] = near
    ref[1100:1108] = rc(CONSENSUS)
    ref[1300:1308] = CONSENSUS
    ref[1600:1607] = CONSENSUS[:4] + CONSENSUS[5:]
    ref[1900:1908] = CONSENSUS
    ref[2200:2210] = GRADED
    ref[2400:2410] = GRADED[:4] + "C" + GRADED[5:]
    ref = "".join(ref)
    records = [
        ("brk", 503, ref[503], other(ref[503])),
        ("crt", 805, ref[805], CONSENSUS[5]),
        ("brk_minus", 1102, ref[1102], other(ref[1102])),
        ("del", 1302, ref[1302:1304], ref[1302]),
        ("ins", 1603, ref[1603], ref[1603] + CONSENSUS[4]),
        ("multi", 1904, ref[1904], ",".join(b for b in BASES if b != ref[1904])[:3]),
        ("weak", 2204, "A", "C"),
        ("strong", 2404, "C", "A"),
        ("none", 2700, ref[2700], other(ref[2700])),
    ]
    fasta = write_fasta(folder / "ref.fa", {"1": ref})
    rows = [("1", position, variant_id, ref_allele, alt, ["1|2" if "," in alt else "0|1", "0|0"])
            for variant_id, position, ref_allele, alt in records]  # fmt: skip
    vcf = write_vcf(folder / "calls.vcf.gz", rows, samples=["S1", "S2"], contigs={"1": CONTIG})
    genes = folder / "genes.tsv"
    genes.write_text(GENES_TSV)
    panel = gl.pp.gene_windows(genes, fasta=fasta, width=2800)
    return gl.pp.personal_sequences(vcf, fasta=fasta, genes=panel, progress=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_cohort(tmp_path_factory.mktemp("motif_cohort"))


@pytest.fixture(scope="module")
def tiny_motifs():
    return [
        motif_from(CONSENSUS, "T0001.1", "planted"),
        motif_from(GRADED, "T0005.1", "graded", c4=(12, 8, 0, 0)),
    ]


def test_variants_breaking_and_creating_planted_instances(tiny, tiny_motifs):
    motif_matches(tiny, gene="GP", motifs=tiny_motifs)
    table = gl.get.motif_matches(tiny, "GP")
    assert list(table.columns) == [
        "variant_id", "position", "ref", "alt", "motif_id", "motif_name", "strand", "start",
        "end", "ref_score", "alt_score", "ref_pvalue", "alt_pvalue", "effect",
        "ref_sequence", "alt_sequence",
    ]  # fmt: skip
    got = table[["variant_id", "alt", "motif_id", "strand", "start", "effect"]]
    got = [tuple(row) for row in got.itertuples(index=False)]
    multi_alts = [b for b in BASES if b != CONSENSUS[4]][:2]
    assert got == [
        ("brk", other(CONSENSUS[3]), "T0001.1", "+", 500, "breaks"),
        ("crt", CONSENSUS[5], "T0001.1", "+", 800, "creates"),
        ("brk_minus", other(rc(CONSENSUS)[2]), "T0001.1", "-", 1100, "breaks"),
        ("del", CONSENSUS[2], "T0001.1", "+", 1300, "breaks"),
        ("ins", CONSENSUS[3] + CONSENSUS[4], "T0001.1", "+", 1600, "creates"),
        ("multi", multi_alts[0], "T0001.1", "+", 1900, "breaks"),
        ("multi", multi_alts[1], "T0001.1", "+", 1900, "breaks"),
        ("weak", "C", "T0005.1", "+", 2200, "weakens"),
        ("strong", "A", "T0005.1", "+", 2400, "strengthens"),
    ]
    best = 8 * log_odds(20, 20, 0.25)
    one_off = 7 * log_odds(20, 20, 0.25) + log_odds(0, 20, 0.25)
    brk, crt, brk_minus, deletion, insertion = (table.iloc[i] for i in range(5))
    for row in (brk, brk_minus):
        assert row["ref_score"] == pytest.approx(best)
        assert row["alt_score"] == pytest.approx(one_off)
        assert row["ref_pvalue"] == pytest.approx(4.0**-8)
        assert row["alt_pvalue"] == pytest.approx(25 * 4.0**-8)
        assert row["ref_sequence"] == CONSENSUS
    assert brk_minus["end"] == 1108 and brk["position"] == 503
    assert (crt["ref_score"], crt["alt_score"]) == (pytest.approx(one_off), pytest.approx(best))
    assert brk_minus["alt_sequence"] == rc(
        rc(CONSENSUS)[:2] + other(rc(CONSENSUS)[2]) + rc(CONSENSUS)[3:]
    )
    assert crt["alt_sequence"] == CONSENSUS
    assert deletion["ref_sequence"] == CONSENSUS
    assert deletion["alt_sequence"][:3] == CONSENSUS[:3] and deletion["alt_pvalue"] > 1e-4
    assert insertion["alt_sequence"] == CONSENSUS and insertion["ref_pvalue"] > 1e-4
    weak, strong = table.iloc[-2], table.iloc[-1]
    assert weak["ref_score"] - weak["alt_score"] == pytest.approx(
        log_odds(12, 20, 0.25) - log_odds(8, 20, 0.25)
    )
    assert max(weak["ref_pvalue"], weak["alt_pvalue"], strong["ref_pvalue"]) < 1e-4
    assert tiny.uns["gl_motifs"]["GP"] is table


def test_results_are_on_the_reference_strand_for_minus_strand_genes(tiny, tiny_motifs):
    motif_matches(tiny, gene="GP", motifs=tiny_motifs)
    plus = gl.get.motif_matches(tiny, "GP")
    motif_matches(tiny, gene="MINUS", motifs=tiny_motifs)  # by name
    minus = gl.get.motif_matches(tiny, "MINUS")
    pd.testing.assert_frame_equal(plus, minus)
    assert set(tiny.uns["gl_motifs"]) == {"GP", "GM"}


def test_selecting_variants(tiny, tiny_motifs):
    motif_matches(tiny, gene="GP", motifs=tiny_motifs, variants=["crt", "none"])
    by_list = gl.get.motif_matches(tiny, "GP")
    assert by_list["variant_id"].tolist() == ["crt"]
    motif_matches(
        tiny, gene="GP", motifs=tiny_motifs, variants=pd.DataFrame({"variant_id": ["brk"]})
    )
    by_id = gl.get.motif_matches(tiny, "GP")
    motif_matches(tiny, gene="GP", motifs=tiny_motifs, variants=pd.DataFrame({"position": [503]}))
    by_position = gl.get.motif_matches(tiny, "GP")
    pd.testing.assert_frame_equal(by_id, by_position)
    assert by_id["variant_id"].tolist() == ["brk"]
    with pytest.raises(KeyError, match="rs404"):
        motif_matches(tiny, gene="GP", motifs=tiny_motifs, variants=["brk", "rs404"])
    with pytest.raises(KeyError, match="0-based"):
        motif_matches(
            tiny, gene="GP", motifs=tiny_motifs, variants=pd.DataFrame({"position": [504]})
        )
    with pytest.raises(ValueError, match="not both"):
        motif_matches(tiny, gene="GP", motifs=tiny_motifs, variants=["brk"], positions=[503])


def test_positions_report_reference_matches_covering_them(tiny, tiny_motifs):
    motif_matches(tiny, gene="GM", motifs=tiny_motifs, positions=[503, 1107, 700])
    table = gl.get.motif_matches(tiny, "GM")
    assert list(table.columns) == ["position", *list(scan_motifs("A", tiny_motifs).columns)]
    assert table[["position", "motif_id", "start", "end", "strand"]].values.tolist() == [
        [503, "T0001.1", 500, 508, "+"],
        [1107, "T0001.1", 1100, 1108, "-"],
    ]
    assert (table["matched_sequence"] == CONSENSUS).all()
    np.testing.assert_allclose(table["pvalue"], 4.0**-8)
    with pytest.raises(ValueError, match="0-based reference coordinates"):
        motif_matches(tiny, gene="GM", motifs=tiny_motifs, positions=[50])


def test_results_survive_writing(tiny, tiny_motifs, tmp_path):
    motif_matches(tiny, gene="GP", motifs=tiny_motifs, key_added="motif_test")
    table = gl.get.motif_matches(tiny, "GP", key="motif_test")
    gl.write(tiny, tmp_path / "c.zarr")
    back = gl.read(tmp_path / "c.zarr").uns["motif_test"]["GP"]
    pd.testing.assert_frame_equal(back.reset_index(drop=True), table, check_index_type=False)
    ad.AnnData(uns={"motif_test": {"GP": table}}).write_h5ad(tmp_path / "u.h5ad")
    back = ad.read_h5ad(tmp_path / "u.h5ad").uns["motif_test"]["GP"]
    pd.testing.assert_frame_equal(back.reset_index(drop=True), table, check_index_type=False)


def test_variant_of_the_real_example_breaks_a_motif_made_from_its_context(example):
    """A motif equal to the 8 reference bases around a real SNV: its ALT breaks it."""
    panel = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=4096, genes=["TMEM74B"])
    cohort = gl.pp.personal_sequences(
        example.vcf, fasta=example.fasta, genes=panel, samples=["HG00096", "HG00097"],
        unphased="as_listed", progress=False,
    )  # fmt: skip
    assert panel.obs["strand"].iloc[0] == "-"
    store = gl.get.haplotype_store(cohort)
    snv = next(
        i
        for i, (r, a) in enumerate(
            zip(store["variant_ref"].values, store["variant_alt"].values, strict=True)
        )
        if len(r) == 1 and len(a) == 1
    )
    position = int(store["variant_position"].values[snv])
    with gl.io.FastaReference(example.fasta) as reference:
        context = reference.fetch_str("20", position - 3, position + 5)
    assert context[3] == store["variant_ref"].values[snv]
    motif = motif_from(context, "T0006.1", "context", n=50)
    motif_matches(
        cohort, gene="TMEM74B", motifs=[motif], variants=[str(store["variant_id"].values[snv])]
    )
    table = gl.get.motif_matches(cohort, "TMEM74B")
    row = table.loc[table["strand"] == "+"].iloc[0]
    assert (row["start"], row["effect"], row["ref_sequence"]) == (position - 3, "breaks", context)


def overlapping(p0: int, changed: int, length: int) -> list[int]:
    """Starts of the placements including a changed base (none changed: spanning p0 - 1, p0)."""
    starts = np.arange(p0 - 20, p0 + 20)
    end = p0 + changed if changed else p0
    hit = (starts < end) & (starts + length > p0)
    return sorted(starts[hit].tolist())


def test_placements_cover_every_overlap_once_and_pair_alleles_by_shared_flank():
    """Each placement overlapping the change, once per allele; partners share a flank."""
    from genlm_sc.tl.motifs.variants import _Alleles, _placements

    cases = [(d, k) for d in range(5) for k in range(5) if d or k]
    half, p0 = 40, 1000
    alleles = _Alleles(
        rows=pd.DataFrame(index=range(len(cases))),
        changed=np.full(len(cases), p0),
        deleted=np.array([d for d, _ in cases]),
        inserted=np.array([k for _, k in cases]),
        ref_text=[],
        alt_text=[],
        half=half,
    )
    for length in (1, 2, 3, 6):
        place = _placements(alleles, length)
        for i, (d, k) in enumerate(cases):
            mine = place["allele"] == i
            ref = place["ref_offset"][mine] + p0 - half  # back to coordinates
            alt = place["alt_offset"][mine] + p0 - half
            has_ref, has_alt = place["ref_offset"][mine] >= 0, place["alt_offset"][mine] >= 0

            assert sorted(ref[has_ref].tolist()) == overlapping(p0, d, length), (d, k, length)
            assert sorted(alt[has_alt].tolist()) == overlapping(p0, k, length), (d, k, length)
            for s, a in zip(ref[has_ref & has_alt], alt[has_ref & has_alt], strict=True):
                same_start = s == a < p0
                same_downstream = (
                    s >= p0 and a >= p0 and s + length - (p0 + d) == a + length - (p0 + k)
                )
                assert same_start or same_downstream, (d, k, length, s, a)
            starts = place["start"][mine]
            np.testing.assert_array_equal(starts[has_ref], ref[has_ref])
