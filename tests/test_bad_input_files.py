"""Bad input files, written small: each error names the file, the record and the fix.

A 1,000-bp contig ``1`` (``ACGT`` repeated), one plus-strand gene whose 200-bp window is
``[300, 500)`` and two people; each test breaks one thing in these files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pytest

import genlm_sc as gl
from conftest import write_fasta, write_vcf
from genlm_sc.io import InputFileError, read_sample_panel

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
# A folder where a file belongs
# --------------------------------------------------------------------------------------


def test_folder_as_fasta(files):
    folder = files.folder / "genome"
    folder.mkdir()
    vcf = write_vcf(files.folder / "good.vcf.gz", RECORDS, samples=SAMPLES, contigs=CONTIGS)
    with pytest.raises(InputFileError) as info:
        gl.pp.gene_windows(files.annotation, fasta=folder, width=WIDTH)
    assert_names(info.value, folder, "is a folder, not a FASTA file")
    assert_names(refused(files, vcf, fasta=folder), folder, "is a folder, not a FASTA file")


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
