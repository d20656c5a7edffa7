"""PGEN, VCF Zarr and BGEN give the VCF's haplotypes; the record filters match bcftools."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

import genlm_sc as gl
from conftest import needs_shared
from genlm_sc.io import InputFileError, open_genotypes
from genotype_formats import (
    annotated_vcf,
    assert_same_cohort,
    plink2,
    soft_bgen,
    write_formats,
)

pytestmark = [needs_shared, pytest.mark.needs_tools("plink2", "bcftools")]

FORMATS = ["pgen", "pgen_prefix", "vcf_zarr", "bgen"]


@pytest.fixture(scope="module")
def files(example, tmp_path_factory):
    folder = tmp_path_factory.mktemp("formats")
    vcf = annotated_vcf(example.vcf, folder / "annotated.vcf.gz")
    return write_formats(vcf, folder)


@pytest.fixture(scope="module")
def genes(panel):
    return panel[:6].copy()


def build(path, example, genes, **options):
    options.setdefault("unphased", "as_listed")
    return gl.pp.personal_sequences(
        path, fasta=example.fasta, genes=genes, progress=False, **options
    )


@pytest.fixture(scope="module")
def from_vcf(files, example, genes):
    return build(files["vcf"], example, genes)


@pytest.mark.parametrize("kind", FORMATS)
def test_every_format_builds_the_vcf_haplotypes(kind, files, example, genes, from_vcf):
    cohort = build(files[kind], example, genes)
    assert_same_cohort(cohort, from_vcf)
    assert cohort.uns["gl"]["counts"] == from_vcf.uns["gl"]["counts"]
    assert cohort.uns["gl"]["genotypes"]["format"] == kind.removesuffix("_prefix")
    assert from_vcf.uns["gl"]["genotypes"]["format"] == "vcf"
    assert cohort.uns["gl"]["counts"]["unphased_heterozygous"] > 0  # kept unphased in all


@pytest.mark.parametrize("kind", ["pgen", "vcf_zarr", "bgen"])
def test_readers_agree_record_for_record(kind, files):
    samples = ["NA12878", "HG00096", "HG00097"]
    with open_genotypes(files["vcf"], samples=samples) as vcf:
        expected = vcf.fetch("20", 1_200_000, 1_300_000)
    with open_genotypes(files[kind], samples=samples) as reader:
        assert reader.samples == samples and reader.format == kind
        got = reader.fetch("20", 1_200_000, 1_300_000)
        assert len(reader.fetch("20", 0, 10).positions) == 0
        assert len(reader.fetch("21", 0, 10**9).positions) == 0
    assert np.array_equal(got.positions, expected.positions)
    assert (got.ids, got.refs, got.alts) == (expected.ids, expected.refs, expected.alts)
    assert np.array_equal(got.alleles, expected.alleles)
    het = expected.alleles[..., 0] != expected.alleles[..., 1]
    assert np.array_equal(got.phased[het], expected.phased[het])
    if kind != "bgen":
        assert np.array_equal(got.passed_filters, expected.passed_filters)
        np.testing.assert_array_equal(got.imputation_r2, expected.imputation_r2)


def test_unphased_bgen_gives_unphased_calls(files, example, genes, tmp_path):
    prefix = tmp_path / "unphased"
    plink2("--pfile", str(files["pgen_prefix"]), "--make-pgen", "erase-phase", "--out", str(prefix))
    plink2("--pfile", str(prefix), "--export", "bgen-1.2", "ref-first", "--out", str(prefix))
    sample_file = prefix.with_suffix(".sample")
    with open_genotypes(
        prefix.with_suffix(".bgen"), samples=["HG00096"], bgen_sample_file=sample_file
    ) as reader:
        assert reader.files == [prefix.with_suffix(".bgen"), sample_file]
        block = reader.fetch("20", 1_000_000, 2_000_000)
    het = block.alleles[..., 0] != block.alleles[..., 1]
    assert het.any() and not block.phased[het].any()
    with pytest.raises(InputFileError, match="unphased heterozygous"):
        build(prefix.with_suffix(".bgen"), example, genes, unphased="error")


FILTERED = {"filter_pass": True, "min_r2": 0.3, "min_maf": 0.05}


def bcftools_view(vcf, out, samples, *options):
    subprocess.run(
        ["bcftools", "view", "-s", ",".join(samples), *options, "-Oz", "-o", str(out), str(vcf)],
        check=True,
    )
    subprocess.run(["bcftools", "index", "-t", str(out)], check=True)
    return out


@pytest.mark.parametrize("kind", ["vcf", "pgen", "vcf_zarr"])
def test_filters_match_bcftools(kind, files, example, genes, from_vcf, tmp_path):
    people = list(from_vcf.obs_names[::4])
    expected_vcf = bcftools_view(
        files["vcf"], tmp_path / "filtered.vcf.gz", people,
        "-f", ".,PASS", "-i", "INFO/R2>=0.3", "-q", "0.05:nonmajor",
    )  # fmt: skip
    expected = build(expected_vcf, example, genes, samples=people)
    got = build(files[kind], example, genes, samples=people, **FILTERED)
    assert_same_cohort(got, expected)
    counts = got.uns["gl"]["counts"]
    removed = counts["filtered_not_pass"] + counts["filtered_low_r2"] + counts["filtered_low_maf"]
    assert counts["records"] == expected.uns["gl"]["counts"]["records"]
    assert (
        counts["records"] + removed
        == build(files[kind], example, genes, samples=people).uns["gl"]["counts"]["records"]
    )
    assert min(counts["filtered_not_pass"], counts["filtered_low_r2"], counts["filtered_low_maf"])
    assert got.uns["gl"]["filters"] == dict(FILTERED, r2_field="R2")


@pytest.mark.parametrize("field", ["DR2", "INFO"])
def test_r2_filter_reads_beagle_and_impute_fields(field, example, genes, from_vcf, tmp_path):
    vcf = annotated_vcf(example.vcf, tmp_path / f"{field}.vcf.gz", r2_field=field)
    people = list(from_vcf.obs_names[::6])
    expected = build(
        bcftools_view(vcf, tmp_path / "kept.vcf.gz", people, "-i", f"INFO/{field}>=0.3"),
        example, genes, samples=people,
    )  # fmt: skip
    got = build(vcf, example, genes, samples=people, min_r2=0.3)
    assert_same_cohort(got, expected)
    assert got.uns["gl"]["counts"]["filtered_low_r2"] > 0
    assert got.uns["gl"]["filters"]["r2_field"] == field


def test_bgen_probabilities_become_calls_at_the_threshold(files, example, genes, tmp_path):
    """Haplotype probabilities of 0.95: the default threshold (0.9) calls them as the VCF
    does; a threshold of 0.96 leaves every allele missing."""
    pytest.importorskip("bgen")
    plain = tmp_path / "plain.vcf.gz"  # what BGEN holds here: bi-allelic, no missing call
    subprocess.run(["bcftools", "view", "-m2", "-M2", "-g", "^miss", "-Oz", "-o", str(plain),
                    str(files["vcf"])], check=True)  # fmt: skip
    subprocess.run(["bcftools", "index", "-t", str(plain)], check=True)
    soft = soft_bgen(plain, tmp_path / "soft.bgen", 0.95)
    expected = build(plain, example, genes)
    assert (expected.var["n_haplotypes"] > 1).any()
    assert_same_cohort(build(soft, example, genes), expected)
    with pytest.raises(InputFileError, match="missing"):
        build(soft, example, genes, bgen_threshold=0.96, missing="error")
    uncalled = build(soft, example, genes, bgen_threshold=0.96)  # missing="reference"
    assert (uncalled.var["n_haplotypes"] == 1).all()


def test_maf_filter_on_bgen_matches_bcftools(files, example, genes, from_vcf, tmp_path):
    people = list(from_vcf.obs_names[1::5])
    expected_vcf = bcftools_view(
        files["vcf"], tmp_path / "maf.vcf.gz", people, "-q", "0.02:nonmajor"
    )
    expected = build(expected_vcf, example, genes, samples=people)
    got = build(files["bgen"], example, genes, samples=people, min_maf=0.02)
    assert_same_cohort(got, expected)
    assert got.uns["gl"]["counts"]["filtered_low_maf"] > 0


def test_filters_a_file_cannot_serve_are_errors(files, example, genes):
    with pytest.raises(InputFileError, match="no FILTER") as err:
        build(files["bgen"], example, genes, filter_pass=True)
    assert err.value.path == str(files["bgen"])
    with pytest.raises(InputFileError, match="R2, DR2, INFO") as err:
        build(example.vcf, example, genes, min_r2=0.5)
    assert err.value.path == str(example.vcf)
    with pytest.raises(ValueError, match="min_maf"):
        build(files["vcf"], example, genes, min_maf=0.7)
