"""Property-based tests of the haplotype builder against ``bcftools consensus``.

Random references, overlapping SNVs, MNPs, insertions and deletions (several at one
position), multi-allelic records, missing calls and windows cutting through records.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bcftools_reference import consensus
from conftest import needs_bcftools, write_fasta, write_vcf
from genlm_sc.io.vcf import VariantFile
from genlm_sc.pp.haplotypes import apply_genotype_policies, build_window_haplotypes

CONTIG_LENGTH = 80
BASES = "ACGT"


@st.composite
def alt_allele(draw, ref: str) -> str:
    kind = draw(st.sampled_from(["snv", "insertion", "deletion", "mnp"]))
    if kind == "snv" or (kind == "deletion" and len(ref) == 1):
        return ref[0].replace(ref[0], draw(st.sampled_from([b for b in BASES if b != ref[0]])))
    if kind == "insertion":
        return ref[0] + draw(st.text(BASES, min_size=1, max_size=4))
    if kind == "deletion":
        return ref[0]
    return draw(st.text(BASES, min_size=len(ref), max_size=len(ref)).filter(lambda a: a != ref))


@st.composite
def cases(draw):
    reference = draw(st.text(BASES, min_size=CONTIG_LENGTH, max_size=CONTIG_LENGTH))
    n_records = draw(st.integers(0, 12))
    positions = sorted(draw(st.lists(st.integers(0, CONTIG_LENGTH - 6), min_size=n_records,
                                     max_size=n_records)))  # fmt: skip
    records = []
    for pos in positions:
        ref = reference[pos : pos + draw(st.integers(1, 4))]
        alts = draw(st.lists(alt_allele(ref), min_size=1, max_size=2, unique=True))
        records.append((pos, ref, alts))
    calls = []
    for _, _, alts in records:
        allele = st.sampled_from([str(a) for a in range(len(alts) + 1)] + ["."])
        row = [f"{draw(allele)}{draw(st.sampled_from('||/'))}{draw(allele)}" for _ in range(2)]
        calls.append(row)
    start = draw(st.integers(0, CONTIG_LENGTH - 10))
    end = draw(st.integers(start + 5, CONTIG_LENGTH))
    return reference, records, calls, start, end


def _write_inputs(folder, reference, records, calls):
    fasta = write_fasta(folder / "ref.fa", {"1": reference})
    pairs = enumerate(zip(records, calls, strict=True))
    rows = [("1", pos, f"v{i}", ref, ",".join(alts), row) for i, ((pos, ref, alts), row) in pairs]
    vcf = write_vcf(folder / "calls.vcf.gz", rows, samples=["S1", "S2"],
                    contigs={"1": CONTIG_LENGTH})  # fmt: skip
    return fasta, vcf


@needs_bcftools
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(case=cases())
def test_matches_bcftools_consensus(tmp_path_factory, case):
    reference, records, calls, start, end = case
    folder = tmp_path_factory.mktemp("case")
    fasta, vcf = _write_inputs(folder, reference, records, calls)
    reader = VariantFile(vcf)
    block = reader.fetch("1", start, end)
    alleles, _ = apply_genotype_policies(
        block, unphased="as_listed", missing="reference", samples=reader.samples, path=str(vcf)
    )
    window = np.frombuffer(reference[start:end].encode(), dtype=np.uint8)
    built = build_window_haplotypes(window, start, block, alleles)
    for s, sample in enumerate(reader.samples):
        for h in (1, 2):
            (expected,) = consensus(fasta, vcf, [f"1:{start + 1}-{end}"], sample, h)
            u = built.assignment[s, h - 1]
            got = built.sequences[u, : built.lengths[u]].tobytes().decode()
            assert got == expected, (sample, h, records, calls, start, end)
            # coordinates increase, and a base copied from outside every record's REF
            # span shows the reference base of its coordinate
            coords = built.reference_positions()[u, : built.lengths[u]]
            assert np.all(np.diff(coords[coords >= 0]) > 0)
            touched = np.zeros(CONTIG_LENGTH + 8, dtype=bool)
            for pos, ref, _ in records:
                touched[pos : pos + len(ref)] = True
            plain = (coords >= 0) & ~touched[np.maximum(coords, 0)]
            observed = np.frombuffer(got.encode(), dtype=np.uint8)[plain]
            expected_bases = np.frombuffer(reference.encode(), dtype=np.uint8)[coords[plain]]
            np.testing.assert_array_equal(observed, expected_bases)
            assert (coords >= 0).sum() + (coords < 0).sum() == len(got)


def test_text_and_cyvcf2_decoders_agree(example):
    reader = VariantFile(example.vcf, samples=["NA12878", "HG00096", "HG00097"])
    fast = reader.fetch("20", 1_000_000, 2_000_000)
    slow = reader._fetch_cyvcf2("20", 1_000_000, 2_000_000)
    assert len(fast) == len(slow) == 7568
    np.testing.assert_array_equal(fast.positions, slow.positions)
    np.testing.assert_array_equal(fast.alleles, slow.alleles)
    np.testing.assert_array_equal(fast.phased, slow.phased)
    assert fast.refs == slow.refs and fast.alts == slow.alts and fast.ids == slow.ids
    assert not fast.phased.all()  # the file holds unphased calls


@needs_bcftools
def test_haploid_calls_keep_the_reference_on_the_second_haplotype(tmp_path):
    reference = "ACGTACGTACGTACGTACGT"
    records = [(3, "T", ["G"]), (9, "C", ["CAA"])]
    calls = [["1", "0|1"], ["0", "1|1"]]  # S1 haploid, S2 diploid
    fasta, vcf = _write_inputs(tmp_path, reference, records, calls)
    reader = VariantFile(vcf)
    block = reader.fetch("1", 0, 20)
    alleles, counts = apply_genotype_policies(
        block, unphased="error", missing="error", samples=reader.samples, path=str(vcf)
    )
    assert counts.haploid_calls == 2 and counts.missing_alleles == 0
    built = build_window_haplotypes(np.frombuffer(reference.encode(), np.uint8), 0, block, alleles)
    for s, sample in enumerate(reader.samples):
        for h in (1, 2):
            u = built.assignment[s, h - 1]
            got = built.sequences[u, : built.lengths[u]].tobytes().decode()
            assert got == consensus(fasta, vcf, ["1:1-20"], sample, h)[0], (sample, h)


def test_random_phase_depends_on_the_sample_not_its_position(example):
    import genlm_sc as gl

    panel = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=4096)
    everyone = gl.pp.personal_sequences(
        example.vcf,
        fasta=example.fasta,
        genes=panel,
        unphased="random",
        random_state=3,
        progress=False,
    )
    some = list(everyone.obs_names[250:])
    part = gl.pp.personal_sequences(
        example.vcf, fasta=example.fasta, genes=panel, samples=some, unphased="random",
        random_state=3, progress=False,
    )  # fmt: skip
    for gene in panel.obs_names:
        a = gl.get.haplotypes(everyone, gene, samples=some).to_numpy()
        b = gl.get.haplotypes(part, gene).to_numpy()
        assert (a == b).all(), gene


def test_equal_sequences_from_different_records_are_one_haplotype():
    """An MNP and the two SNVs it is made of give one distinct haplotype."""
    from genlm_sc.io.vcf import VariantBlock

    reference = np.frombuffer(b"ACGTACGT", dtype=np.uint8)
    block = VariantBlock(
        chrom="1",
        positions=np.array([2, 2, 3]),
        ids=["mnp", "snv1", "snv2"],
        refs=["GT", "G", "T"],
        alts=[["CA"], ["C"], ["A"]],
        alleles=np.array([[[1, 0]], [[0, 1]], [[0, 1]]], dtype=np.int8),
        phased=np.ones((3, 1), dtype=bool),
    )
    built = build_window_haplotypes(reference, 0, block, block.alleles)
    assert len(built.lengths) == 1
    assert built.sequences[0].tobytes() == b"ACCAACGT"
    assert built.counts.tolist() == [2]
    assert built.assignment.tolist() == [[0, 0]]
