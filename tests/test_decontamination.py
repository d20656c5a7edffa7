"""Overlapping sequences: decontamination of corpora, overlap groups, held-out splits."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pandas as pd
import pytest

import genlm_sc as gl
from conftest import write_fasta
from genlm_sc.pp import PretrainingCorpus, overlaps
from genlm_sc.pp.haplotypes import reverse_complement_text
from genlm_sc.pp.overlaps import as_codes, shared_kmer_pairs


def random_dna(rng: np.random.Generator, n: int) -> str:
    return "".join(rng.choice(list("ACGT"), n))


def corpus_of(sequences: list[str]) -> PretrainingCorpus:
    corpus = PretrainingCorpus()
    for i, sequence in enumerate(sequences):
        corpus._add(as_codes(sequence), None, float(i + 1))
    return corpus


@pytest.fixture
def planted():
    """Labelled train/dev/test rows and a corpus that holds some of them."""
    rng = np.random.default_rng(7)
    rows = [random_dna(rng, 80) for _ in range(6)]
    labelled = pd.DataFrame(
        {
            "sequence": rows,
            "label": [1, 1, 1, 0, 0, 1],
            "split": ["test", "test", "train", "dev", "test", "train"],
        }
    )
    corpus = [
        random_dna(rng, 300) + rows[0] + random_dna(rng, 100),  # holds a test row
        random_dna(rng, 50) + reverse_complement_text(rows[1]) + random_dna(rng, 20),  # on - strand
        rows[2][5:70],  # inside a train row
        reverse_complement_text(rows[3][:60]),  # inside a dev row, - strand
        rows[0],  # the test row itself
        random_dna(rng, 400),  # unrelated
        rows[4][40:] + random_dna(rng, 200),  # shares 40 bases with a test row, no containment
        random_dna(rng, 250),  # unrelated
    ]
    return corpus_of(corpus), labelled


def test_contained_and_containing_sequences_go_on_either_strand(planted):
    corpus, labelled = planted
    clean, report = gl.pp.decontaminate(corpus, {"task": labelled})
    kept = [s.tobytes().decode() for s in clean.sequences]
    assert kept == [corpus.sequences[i].tobytes().decode() for i in (5, 6, 7)]
    assert clean.weights == [6.0, 7.0, 8.0]  # weights and masks travel with their sequence
    assert report.to_dict("records") == [
        {"labelled_set": "task", "n_labelled": 6, "n_labelled_found": 4, "n_corpus_removed": 5}
    ]
    record = clean.sources[-1]
    assert record["kind"] == "decontaminated" and record["n_sequences_removed"] == 5
    assert record["n_bases_removed"] == corpus.n_bases - clean.n_bases


def test_report_by_split_and_label_and_per_set(planted, caplog):
    corpus, labelled = planted
    unrelated = [random_dna(np.random.default_rng(1), 90)]
    with caplog.at_level(logging.INFO, logger="genlm_sc.pp.decontamination"):
        _, report = gl.pp.decontaminate(
            corpus, {"task": labelled, "other": unrelated}, by=["split", "label"]
        )
    rows = {tuple(r[:3]): tuple(r[3:]) for r in report.itertuples(index=False)}
    assert rows == {
        ("task", "all", "all"): (6, 4, 5),
        ("task", "dev", 0): (1, 1, 1),
        ("task", "test", 0): (1, 0, 0),  # a partial overlap does not count
        ("task", "test", 1): (2, 2, 3),  # row 0 is in two corpus sequences, row 1 in one
        ("task", "train", 1): (2, 1, 1),
        ("other", "all", "all"): (1, 0, 0),  # a plain list: its own row only
    }
    assert "removed 5 of 8 corpus sequences" in caplog.text


def test_min_overlap_also_removes_partial_overlaps(planted):
    corpus, labelled = planted
    clean, report = gl.pp.decontaminate(corpus, {"task": labelled}, min_overlap=40)
    assert len(clean) == 2 and report.loc[0, "n_corpus_removed"] == 6
    assert report.loc[0, "n_labelled_found"] == 5
    clean, _ = gl.pp.decontaminate(corpus, {"task": labelled}, min_overlap=41)
    assert len(clean) == 3  # 40 shared bases are not 41
    with pytest.raises(ValueError, match="min_overlap"):
        gl.pp.decontaminate(corpus, {"task": labelled}, min_overlap=0)


def test_fasta_corpus_and_task_folder(tmp_path, planted):
    corpus, labelled = planted
    records = {f"r{i}": s.tobytes().decode() for i, s in enumerate(corpus.sequences)}
    fasta = write_fasta(tmp_path / "corpus.fa", records, width=60)
    folder = tmp_path / "task"
    folder.mkdir()
    for split, part in labelled.groupby("split"):
        part[["sequence", "label"]].to_csv(folder / f"{split}.csv", index=False)
    clean, report = gl.pp.decontaminate(fasta, {"task": folder}, by=["split"])
    assert len(clean) == 3
    assert report.set_index("split")["n_labelled_found"].to_dict() == {
        "all": 4, "dev": 1, "test": 2, "train": 1,
    }  # fmt: skip
    assert clean.sources[-1]["against"] == {"task": str(folder)}
    with pytest.raises(ValueError, match="no column"):
        gl.pp.decontaminate(corpus, {"task": labelled[["sequence", "split"]]}, by=["label"])


@pytest.mark.parametrize("colliding", [False, True])
def test_shared_kmer_pairs_equal_brute_force(colliding, monkeypatch):
    if colliding:  # base 1 hashes a k-mer to the sum of its letters: anagrams collide
        bases = overlaps._HASH_BASES
        monkeypatch.setattr(overlaps, "_HASH_BASES", (1, *bases))
    rng = np.random.default_rng(11)
    texts = [random_dna(rng, int(n)) for n in rng.integers(3, 40, 30)]  # k = 5 shares often
    codes = [as_codes(t) for t in texts]

    def kmers(text: str) -> set[str]:
        both = (text, reverse_complement_text(text))
        return {s[i : i + 5] for s in both for i in range(len(s) - 4)}

    left = np.arange(len(texts)) < 10
    found = {tuple(p) for p in shared_kmer_pairs(codes, 5, left=left).tolist()}
    expected = {
        (i, j)
        for i, j in itertools.product(range(10), range(10, len(texts)))
        if kmers(texts[i]) & kmers(texts[j])
    }
    assert found == expected and expected


def test_sequences_sharing_200_bases_on_either_strand_are_one_group():
    rng = np.random.default_rng(5)
    core, other = random_dna(rng, 200), random_dna(rng, 200)
    sequences = [
        random_dna(rng, 100) + core + random_dna(rng, 50),
        random_dna(rng, 300),  # alone
        random_dna(rng, 30) + reverse_complement_text(core),  # with 0, on the other strand
        core[1:] + random_dna(rng, 300),  # 199 bases of the core only: alone
        core.lower() + random_dna(rng, 10) + other,  # with 0 (case does not matter)
        reverse_complement_text(other) + random_dna(rng, 40),  # with 4, so with 0
        random_dna(rng, 150),  # shorter than k
    ]
    assert gl.pp.overlap_groups(sequences).tolist() == [0, 1, 0, 2, 0, 0, 3]
    assert gl.pp.overlap_groups(sequences, k=199).tolist() == [0, 1, 0, 0, 0, 0, 2]
    assert gl.pp.overlap_groups([]).tolist() == []


def test_hold_out_keeps_overlapping_windows_together():
    rng = np.random.default_rng(2)
    corpus, groups = PretrainingCorpus(), []
    for tss in range(60):  # one promoter in three windows, as in a multi-width corpus
        promoter = random_dna(rng, 2048)
        for width in rng.permutation([2048, 1200, 456]):
            window = promoter[1024 - width // 2 : 1024 + width // 2]
            strand = window if rng.random() < 0.5 else reverse_complement_text(window)
            corpus._add(as_codes(strand), None, 1.0)
            groups.append(tss)
    train, held = corpus.hold_out(every=20)
    assert (len(train), len(held)) == (171, 9)  # 3 of 60 promoters, all three windows each
    assert held.sources[0]["n_groups"] == 60
    both = train.sequences + held.sequences
    left = np.arange(len(both)) >= len(train)
    assert shared_kmer_pairs(both, 200, left=left).size == 0
    naive_train, naive_held = corpus.hold_out(every=20, overlap=None)
    assert shared_kmer_pairs(naive_train.sequences + naive_held.sequences, 200,
                             left=np.arange(180) >= len(naive_train)).size  # fmt: skip
