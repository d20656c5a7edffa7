"""Bad input files, written small: each error names the file, the record and the fix.

A 1,000-bp contig ``1`` (``ACGT`` repeated), one plus-strand gene whose 200-bp window is
``[300, 500)`` and two people; each test breaks one thing in these files.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import genlm_sc as gl
from conftest import vcf_lines, write_fasta, write_vcf, write_vcf_lines
from genlm_sc.io import InputFileError, VariantFile, read_sample_panel

SAMPLES = ["NA00001", "NA00002"]
CONTIGS = {"1": 1000}
REFERENCE = "ACGT" * 250
WIDTH = 200
#: (chrom, pos0, id, ref, alt, genotypes); REF matches REFERENCE, all in the window
RECORDS = [
    ("1", 401, "rs1", "C", "T", ["0|1", "1|1"]),
    ("1", 450, "rs2", "G", "A", ["0|1", "0|0"]),
    ("1", 470, "rs3", "G", "C", ["1|0", "0|0"]),
]


@dataclass
class Files:
    folder: Path
    fasta: Path
    annotation: Path
    panel: ad.AnnData


@pytest.fixture
def files(tmp_path) -> Files:
    fasta = write_fasta(tmp_path / "ref.fa", {"1": REFERENCE})
    annotation = tmp_path / "genes.tsv"
    annotation.write_text(
        "gene_id\tgene_name\tchrom\tstart\tend\tstrand\tgene_type\n"
        "ENSG0001.1\tGENE1\t1\t400\t600\t+\tprotein_coding\n"
    )
    panel = gl.pp.gene_windows(annotation, fasta=fasta, width=WIDTH)
    assert (int(panel.obs["start"].iloc[0]), int(panel.obs["end"].iloc[0])) == (300, 500)
    return Files(tmp_path, fasta, annotation, panel)


def build(files: Files, vcf: Path, **kwargs) -> ad.AnnData:
    kwargs = {"fasta": files.fasta, "genes": files.panel, "progress": False, **kwargs}
    return gl.pp.personal_sequences(vcf, **kwargs)


def refused(files: Files, vcf: Path, **kwargs) -> InputFileError:
    """The error of building a cohort to a store; no store is left behind."""
    store = files.folder / "c.zarr"
    with pytest.raises(InputFileError) as info:
        build(files, vcf, store=store, **kwargs)
    assert not store.exists()
    return info.value


def assert_names(err: BaseException, path, *words: str, record: str | None = None) -> None:
    """``err`` is an InputFileError that starts with ``path`` and names ``words`` and ``record``."""
    assert isinstance(err, InputFileError), repr(err)
    message = str(err)
    assert err.path == os.fspath(path)
    assert message.startswith(os.fspath(path)), message
    for word in words:
        assert word in message, (word, message)
    if record is not None:
        assert err.record is not None and record in err.record, (record, err.record)
        assert record in message


# --------------------------------------------------------------------------------------
# VCF columns
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("genotypes", "columns", "difference"),
    [(["0|1"], 10, "1 missing"), (["0|1", "0|0", "1|1"], 12, "1 too many")],
    ids=["missing_sample_column", "extra_column"],
)
def test_vcf_record_with_wrong_number_of_sample_columns(files, genotypes, columns, difference):
    records = list(RECORDS)
    records[1] = (*RECORDS[1][:5], genotypes)
    vcf = write_vcf(files.folder / "columns.vcf.gz", records, samples=SAMPLES, contigs=CONTIGS)
    expected = (
        f"{columns} tab-separated columns where the #CHROM header line has 11 "
        f"(9 fixed and 2 samples): {difference}"
    )
    with pytest.raises(InputFileError) as info, VariantFile(vcf) as reader:
        reader.fetch("1", 0, 1000)
    assert_names(info.value, vcf, expected, record="record 1:451 rs2")
    assert_names(refused(files, vcf), vcf, expected, "genotype column per sample", record="1:451")


def test_vcf_record_with_wrong_columns_is_found_on_the_cyvcf2_path(files):
    """Records with more FORMAT fields than GT are read by cyvcf2; they are checked too."""
    lines = vcf_lines(RECORDS, samples=SAMPLES, contigs=CONTIGS)
    lines = [line.replace("\tGT\t0|1\t1|1", "\tGT:DP\t0|1:3\t1|1:4") for line in lines]
    lines[-1] = "\t".join(lines[-1].split("\t")[:-1])
    vcf = write_vcf_lines(files.folder / "format.vcf.gz", lines)
    err = refused(files, vcf)
    assert_names(err, vcf, "10 tab-separated columns", "1 missing", record="record 1:471 rs3")


@pytest.mark.parametrize(
    ("sample", "reason"),
    [
        ("0|1:3:4", "Incorrect number of FORMAT fields at 1:451"),
        ("0|x:3", "Couldn't read GT data: value not a number or '.' at 1:451"),
    ],
    ids=["format_fields", "genotype"],
)
def test_record_htslib_refuses_is_named_with_its_reason(files, sample, reason):
    lines = vcf_lines(RECORDS, samples=SAMPLES, contigs=CONTIGS)
    lines = [line.replace("\tGT\t0|1\t", "\tGT:DP\t0|1:3\t") for line in lines]
    fields = lines[-2].split("\t")
    lines[-2] = "\t".join([*fields[:9], sample, fields[10]])
    vcf = write_vcf_lines(files.folder / "htslib.vcf.gz", lines)
    err = refused(files, vcf)
    assert_names(err, vcf, f"htslib cannot parse this record: {reason}", record="record 1:451 rs2")


# --------------------------------------------------------------------------------------
# Unsorted, unindexed VCF
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["unsorted.vcf", "unsorted.vcf.gz"])
def test_unindexed_unsorted_vcf_says_sort_and_index(files, name):
    lines = vcf_lines(RECORDS[::-1], samples=SAMPLES, contigs=CONTIGS)
    vcf = write_vcf_lines(files.folder / name, lines, index=False)
    err = refused(files, vcf)
    assert_names(
        err,
        vcf,
        f"no index next to it ({name}.tbi or .csi)",
        "sort and index it",
        f"`bcftools sort -Oz -o unsorted.sorted.vcf.gz {name}`",
        "`bcftools index -t unsorted.sorted.vcf.gz`",
    )
    assert ("bgzip-compressed" in str(err)) == (name == "unsorted.vcf")


# --------------------------------------------------------------------------------------
# A folder where a file belongs
# --------------------------------------------------------------------------------------


def test_folder_as_vcf(files):
    folder = files.folder / "calls"
    folder.mkdir()
    assert_names(refused(files, folder), folder, "is a folder, not a VCF file")


def test_folder_as_fasta(files):
    folder = files.folder / "genome"
    folder.mkdir()
    vcf = write_vcf(files.folder / "good.vcf.gz", RECORDS, samples=SAMPLES, contigs=CONTIGS)
    with pytest.raises(InputFileError) as info:
        gl.pp.gene_windows(files.annotation, fasta=folder, width=WIDTH)
    assert_names(info.value, folder, "is a folder, not a FASTA file")
    assert_names(refused(files, vcf, fasta=folder), folder, "is a folder, not a FASTA file")


# --------------------------------------------------------------------------------------
# Header-only VCF
# --------------------------------------------------------------------------------------


def test_header_only_vcf_warns_that_every_haplotype_is_the_reference(files):
    vcf = write_vcf(files.folder / "header_only.vcf.gz", [], samples=SAMPLES, contigs=CONTIGS)
    with pytest.warns(UserWarning, match="no variant records") as caught:
        cohort = build(files, vcf)
    message = next(str(w.message) for w in caught if "no variant records" in str(w.message))
    assert message.startswith(os.fspath(vcf)), message
    assert "every haplotype is the reference" in message
    haplotypes = gl.get.haplotypes(cohort, "ENSG0001.1").to_numpy().ravel()
    assert set(haplotypes) == {REFERENCE[300:500]}


def test_vcf_with_records_does_not_warn(files):
    vcf = write_vcf(files.folder / "good.vcf.gz", RECORDS, samples=SAMPLES, contigs=CONTIGS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        build(files, vcf)
    assert not [w for w in caught if "no variant records" in str(w.message)]


# --------------------------------------------------------------------------------------
# Alleles that are not bases
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "alt", "words"),
    [
        ("G", "X!", ["ALT allele 'X!' holds 'X!'"]),
        ("G", "A,TZ", ["ALT allele 'TZ' holds 'Z'"]),
        ("G", "A C", ["ALT allele 'A C' holds ' '"]),
        ("G?", "A", ["REF allele 'G?' holds '?'"]),
    ],
    ids=["alt", "second_alt", "space", "ref"],
)
def test_allele_outside_iupac_is_refused(files, ref, alt, words):
    records = list(RECORDS)
    records[1] = ("1", 450, "rs2", ref, alt, ["0|1", "0|0"])
    vcf = write_vcf(files.folder / "alleles.vcf.gz", records, samples=SAMPLES, contigs=CONTIGS)
    err = refused(files, vcf)
    assert_names(err, vcf, *words, "not IUPAC nucleotide codes", record="record 1:451 rs2")


def test_iupac_and_symbolic_alleles_are_accepted(files):
    """Lower case and ambiguity codes are bases; symbolic alleles and breakends are skipped."""
    records = [
        ("1", 401, "rs1", "c", "r", ["1|1", "0|1"]),
        ("1", 420, "sv1", "A", "<DEL>", ["1|1", "1|1"]),
        ("1", 430, "sv2", "G", "*", ["1|1", "1|1"]),
        ("1", 440, "bnd1", "A", "A]1:900]", ["1|1", "1|1"]),
        ("1", 450, "bnd2", "G", "G.", ["1|1", "1|1"]),
        ("1", 470, "rs3", "G", "n", ["1|0", "0|0"]),
    ]
    vcf = write_vcf(files.folder / "symbolic.vcf.gz", records, samples=SAMPLES, contigs=CONTIGS)
    cohort = build(files, vcf)
    haplotypes = gl.get.haplotypes(cohort, "ENSG0001.1")
    expected = list(REFERENCE[300:500])
    expected[101] = "R"
    expected[170] = "N"
    assert haplotypes.loc[SAMPLES[0], "haplotype_1"] == "".join(expected)
    assert set("".join(haplotypes.to_numpy().ravel())) <= set("ACGTRN")
    assert cohort.uns["gl"]["counts"]["symbolic_or_star"] == 4


# --------------------------------------------------------------------------------------
# Sample panel
# --------------------------------------------------------------------------------------


def test_empty_panel_file(files):
    empty = files.folder / "samples.panel"
    empty.write_bytes(b"")
    with pytest.raises(InputFileError) as info:
        read_sample_panel(empty)
    assert_names(info.value, empty, "the sample panel is empty", "'sample' column")
    vcf = write_vcf(files.folder / "good.vcf.gz", RECORDS, samples=SAMPLES, contigs=CONTIGS)
    assert_names(refused(files, vcf, panel=empty), empty, "the sample panel is empty")


def test_folder_as_panel(files):
    with pytest.raises(InputFileError) as info:
        read_sample_panel(files.folder)
    assert_names(info.value, files.folder, "is a folder, not a sample panel")


# --------------------------------------------------------------------------------------
# Window width
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "error"),
    [
        (1.5, ValueError),
        (0, ValueError),
        (-200, ValueError),
        (float("nan"), ValueError),
        (True, TypeError),
        ("200", TypeError),
    ],
    ids=["fraction", "zero", "negative", "nan", "bool", "text"],
)
def test_window_width_must_be_a_positive_whole_number(files, width, error):
    with pytest.raises(error) as info:
        gl.pp.gene_windows(files.annotation, fasta=files.fasta, width=width)
    message = str(info.value)
    assert message.startswith("width must be a positive whole number of bases"), message
    assert repr(width) in message


def test_whole_float_width_is_its_int(files):
    panel = gl.pp.gene_windows(files.annotation, fasta=files.fasta, width=np.float64(WIDTH))
    assert panel.uns["gl"]["width"] == WIDTH
    assert panel.obs[["start", "end"]].dtypes.tolist() == [np.int64, np.int64]
    assert panel.obs.equals(files.panel.obs)
