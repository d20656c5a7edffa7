"""Haplotypes equal ``bcftools consensus`` base for base: every person, every example gene."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

import genlm_sc as gl
from bcftools_reference import consensus
from conftest import missing_tools_outcome, needs_bcftools, pytest_runtest_setup
from genlm_sc.pp.haplotypes import reverse_complement


def _rc(sequence: str) -> str:
    import numpy as np

    codes = np.frombuffer(sequence.encode(), dtype=np.uint8)
    return reverse_complement(codes).tobytes().decode()


@needs_bcftools
def test_every_person_every_gene_matches_bcftools(example, cohort):
    var = cohort.var
    regions = [
        f"{c}:{s + 1}-{e}" for c, s, e in zip(var["chrom"], var["start"], var["end"], strict=True)
    ]
    ours = {gene: gl.get.haplotypes(cohort, gene) for gene in var.index}

    def check(sample: str) -> list[str]:
        problems = []
        for h in (1, 2):
            theirs = consensus(example.fasta, example.vcf, regions, sample, h)
            for gene, strand, expected in zip(var.index, var["strand"], theirs, strict=True):
                expected = _rc(expected) if strand == "-" else expected
                got = ours[gene].loc[sample, f"haplotype_{h}"]
                if got != expected:
                    problems.append(f"{sample} H{h} {gene}: {len(got)} vs {len(expected)} bp")
        return problems

    with ThreadPoolExecutor(max_workers=4) as pool:
        problems = [p for ps in pool.map(check, cohort.obs_names) for p in ps]
    assert not problems, problems[:10]
    # the data hold indels, so some haplotypes differ in length from the window
    lengths = gl.get.haplotype_store(cohort)["haplotype_length"].values
    assert (lengths != 4096).any()


def test_work_grows_with_unique_haplotypes(cohort):
    ds = gl.get.haplotype_store(cohort)
    n_unique = int(ds.sizes["haplotype"])
    assert n_unique == int(cohort.var["n_haplotypes"].sum())
    # far fewer distinct sequences than person-haplotypes
    assert n_unique < 0.2 * cohort.n_obs * 2 * cohort.n_vars
    counts = ds["haplotype_count"].values
    assert counts.sum() == cohort.n_obs * 2 * cohort.n_vars


def test_unique_haplotypes_are_distinct(cohort):
    for gene in cohort.var_names[:5]:
        table = gl.get.unique_haplotypes(cohort, gene)
        assert table["sequence"].is_unique
        assert table["count"].is_monotonic_decreasing


@pytest.mark.parametrize("gene", ["FKBP1A", "PSMF1"])
def test_reference_haplotype_equals_window(cohort, gene):
    reference = gl.get.sequences(cohort)[cohort.var.index[cohort.var["gene_name"] == gene][0]]
    table = gl.get.unique_haplotypes(cohort, gene)
    assert reference in set(table["sequence"])


def test_doubling_the_people_does_not_add_haplotypes(example, tmp_path):
    """Cost follows distinct haplotypes: the same people twice build nothing new."""
    import gzip

    import pysam

    lines = gzip.open(example.vcf, "rt").read().splitlines()
    doubled = []
    for line in lines:
        if line.startswith("##"):
            doubled.append(line)
            continue
        fields = line.split("\t")
        if line.startswith("#CHROM"):
            copies = [f"{s}_copy" for s in fields[9:]]
            doubled.append("\t".join(fields + copies))
        elif 1_340_000 <= int(fields[1]) <= 1_480_000:
            doubled.append("\t".join(fields + fields[9:]))
    text = tmp_path / "doubled.vcf"
    text.write_text("\n".join(doubled) + "\n")
    vcf = tmp_path / "doubled.vcf.gz"
    pysam.tabix_compress(str(text), str(vcf))
    pysam.tabix_index(str(vcf), preset="vcf")
    genes = ["FKBP1A", "NSFL1C", "SIRPB2"]
    panel = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=4096, genes=genes)
    once = gl.pp.personal_sequences(example.vcf, fasta=example.fasta, genes=panel,
                                    unphased="as_listed")  # fmt: skip
    twice = gl.pp.personal_sequences(vcf, fasta=example.fasta, genes=panel, unphased="as_listed")
    assert twice.n_obs == 2 * once.n_obs
    assert (twice.var["n_haplotypes"] == once.var["n_haplotypes"]).all()
    ds_once, ds_twice = gl.get.haplotype_store(once), gl.get.haplotype_store(twice)
    assert ds_twice.sizes["haplotype"] == ds_once.sizes["haplotype"]
    assert (ds_twice["haplotype_count"].values == 2 * ds_once["haplotype_count"].values).all()
    for gene in genes:
        first = gl.get.haplotypes(twice, gene)
        original = first.loc[once.obs_names]
        copies = first.loc[[f"{s}_copy" for s in once.obs_names]]
        assert (original.to_numpy() == copies.to_numpy()).all()


def test_missing_tools_skip_on_a_workstation_and_fail_on_ci(monkeypatch):
    assert missing_tools_outcome([], {"CI": "true"}) == "run"
    assert missing_tools_outcome(["bcftools"], {}) == "skip"
    assert missing_tools_outcome(["bcftools"], {"CI": "false"}) == "skip"
    assert missing_tools_outcome(["samtools"], {"CI": "true"}) == "fail"
    assert missing_tools_outcome(["samtools"], {"CI": "TRUE"}) == "fail"
    assert missing_tools_outcome(["samtools"], {"CI": "1"}) == "fail"

    class Item:  # a collected test marked as needing a tool nobody has
        def get_closest_marker(self, name):
            return pytest.mark.needs_tools("genlm-sc-no-such-tool").mark

    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="genlm-sc-no-such-tool not installed"):
        pytest_runtest_setup(Item())
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="not installed, and CI is set"):
        pytest_runtest_setup(Item())
