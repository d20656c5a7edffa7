"""Tests for the expression and covariate readers on real and hand-made files."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from genlm_sc.io.errors import InputFileError
from genlm_sc.io.expression import read_covariates, read_expression, read_expression_bed_genes

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
GEUVADIS = SHARED / "expression" / "geuvadis_chr22"
PHENOTYPES = GEUVADIS / "phenotypes.bed.gz"
COVARIATES = GEUVADIS / "covariates.txt.gz"
TRANSCRIPTS = SHARED / "expression" / "geuvadis_chr19_ceu" / "TrQuantCount_CEU_chr19.tsv.gz"

needs_shared = pytest.mark.skipif(
    not PHENOTYPES.exists() or not COVARIATES.exists(), reason="no shared data"
)


def raw_rows(path: Path) -> list[list[str]]:
    """All tab-separated rows of a gzip file, read without pandas."""
    with gzip.open(path, "rt") as handle:
        return list(csv.reader(handle, delimiter="\t"))


@pytest.fixture(scope="module")
def expression() -> pd.DataFrame:
    if not PHENOTYPES.exists():
        pytest.skip("no shared data")
    return read_expression(PHENOTYPES)


def write(path: Path, text: str) -> Path:
    if path.suffix == ".gz":
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


# ----------------------------------------------------------------------------------------
# Real data
# ----------------------------------------------------------------------------------------


@needs_shared
def test_bed_expression_matches_raw_file(expression):
    rows = raw_rows(PHENOTYPES)
    header, body = rows[0], rows[1:]
    assert expression.shape == (373, 364) == (len(header) - 4, len(body))
    assert expression.index.name == "sample"
    assert expression.columns.name == "gene_id"
    assert (expression.dtypes == "float64").all()
    assert list(expression.index) == header[4:]
    assert list(expression.columns) == [row[3] for row in body]
    assert expression.loc["HG00096", "ENSG00000237438.1"] == pytest.approx(-0.380649691780917)
    # one whole gene and one whole sample, value by value
    np.testing.assert_allclose(expression.iloc[:, 100], [float(v) for v in body[100][4:]])
    column = header.index("NA12878") if "NA12878" in header else 4 + 200
    np.testing.assert_allclose(expression.iloc[column - 4], [float(row[column]) for row in body])
    assert read_expression(PHENOTYPES, layout="bed").equals(expression)


@needs_shared
def test_bed_gene_coordinates():
    genes = read_expression_bed_genes(PHENOTYPES)
    assert list(genes.columns) == ["chrom", "start", "end", "gene_id"]
    assert genes.index.name == "gene_id"
    assert len(genes) == 364
    first = genes.iloc[0]
    assert (first["chrom"], first["start"], first["end"], first["gene_id"]) == (
        "22",
        17517459,
        17517460,
        "ENSG00000237438.1",
    )
    assert (genes["end"] - genes["start"] == 1).all()  # FastQTL: a 1-bp TSS per gene
    assert (genes["chrom"] == "22").all()
    assert genes["start"].dtype == "int64"


@needs_shared
def test_covariates_match_raw_file_and_samples(expression):
    rows = raw_rows(COVARIATES)
    covariates = read_covariates(COVARIATES)
    assert covariates.shape == (373, 4)
    assert (
        list(covariates.columns) == [row[0] for row in rows[1:]] == ["PC1", "PC2", "PC3", "PHASE1"]
    )
    assert covariates.index.name == "sample"
    assert covariates.columns.name == "covariate"
    assert covariates.loc["HG00096", "PC1"] == pytest.approx(-0.0247)
    assert covariates.loc["HG00097", "PC2"] == pytest.approx(0.1168)
    assert set(covariates["PHASE1"]) == {0.0, 1.0}
    assert list(covariates.index) == list(expression.index)


@needs_shared
def test_both_orientations_are_detected(tmp_path, expression):
    small = expression.iloc[:20, :15]
    genes_by_samples = tmp_path / "gxs.tsv.gz"
    small.T.rename_axis("gene_id").to_csv(genes_by_samples, sep="\t")
    samples_by_genes = tmp_path / "sxg.tsv"
    small.rename_axis("sample_id").to_csv(samples_by_genes, sep="\t")
    for path in (genes_by_samples, samples_by_genes):
        read = read_expression(path)
        pd.testing.assert_frame_equal(read, small, check_exact=False, rtol=1e-12)
    explicit = read_expression(genes_by_samples, layout="genes_by_samples")
    pd.testing.assert_frame_equal(explicit, small, check_exact=False, rtol=1e-12)


@pytest.mark.skipif(not TRANSCRIPTS.exists(), reason="no shared data")
def test_annotation_column_is_refused_by_name():
    with pytest.raises(InputFileError, match="column 'Gene_Symbol'") as info:
        read_expression(TRANSCRIPTS)
    assert "ENST00000469492.1" in str(info.value)


# ----------------------------------------------------------------------------------------
# Small files
# ----------------------------------------------------------------------------------------

GXS = "gene_id\tHG00096\tHG00097\nENSG01.1\t1.5\t-2\nENSG02.3\tNA\t0.25\n"


def test_genes_by_samples_values_and_missing(tmp_path):
    expr = read_expression(write(tmp_path / "e.tsv", GXS))
    assert list(expr.index) == ["HG00096", "HG00097"]
    assert list(expr.columns) == ["ENSG01.1", "ENSG02.3"]
    assert expr.loc["HG00096", "ENSG01.1"] == 1.5
    assert expr.loc["HG00097", "ENSG01.1"] == -2.0
    assert np.isnan(expr.loc["HG00096", "ENSG02.3"])
    assert expr.loc["HG00097", "ENSG02.3"] == 0.25


def test_r_style_header_and_csv_and_frame(tmp_path):
    no_corner = "s1\ts2\nENSG00000000001\t1\t2\nENSG00000000002\t3\t4\n"
    expr = read_expression(write(tmp_path / "r.tsv", no_corner))
    assert expr.loc["s2", "ENSG00000000002"] == 4.0
    as_csv = read_expression(write(tmp_path / "e.csv", GXS.replace("\t", ",")))
    pd.testing.assert_frame_equal(as_csv, read_expression(write(tmp_path / "e.tsv", GXS)))
    frame = pd.DataFrame({"g1": [1, 2], "g2": [3, 4]}, index=["a", "b"])
    from_frame = read_expression(frame, layout="samples_by_genes")
    assert from_frame.loc["b", "g2"] == 4.0
    assert from_frame.dtypes.eq("float64").all()
    assert from_frame.index.name == "sample"
    assert from_frame.columns.name == "gene_id"


def test_unknown_orientation_asks_for_layout(tmp_path):
    path = write(tmp_path / "e.tsv", "x\ta\tb\ng1\t1\t2\n")
    with pytest.raises(InputFileError, match="layout='genes_by_samples'"):
        read_expression(path)
    expr = read_expression(path, layout="samples_by_genes")
    assert list(expr.index) == ["g1"]
    with pytest.raises(ValueError, match="layout must be one of"):
        read_expression(path, layout="rows")


def test_duplicate_ids_are_named(tmp_path):
    doubled_sample = "gene_id\tHG00096\tHG00097\tHG00096\nENSG01\t1\t2\t3\n"
    with pytest.raises(InputFileError, match=r"duplicate sample id.*HG00096") as info:
        read_expression(write(tmp_path / "a.tsv", doubled_sample))
    assert info.value.record == "sample HG00096"
    doubled_gene = GXS + "ENSG01.1\t3\t4\n"
    with pytest.raises(InputFileError, match=r"duplicate gene id.*ENSG01\.1"):
        read_expression(write(tmp_path / "b.tsv", doubled_gene))
    doubled_covariate = "id\tHG00096\nPC1\t1\nPC1\t2\n"
    with pytest.raises(InputFileError, match=r"duplicate covariate id.*PC1"):
        read_covariates(write(tmp_path / "c.txt", doubled_covariate))


def test_non_numeric_value_is_named(tmp_path):
    text = GXS.replace("0.25", "high")
    with pytest.raises(InputFileError, match="'high' is not a number") as info:
        read_expression(write(tmp_path / "a.tsv", text))
    assert "row 'ENSG02.3'" in str(info.value)
    assert "column 'HG00097'" in str(info.value)
    with pytest.raises(InputFileError, match=r"'male' is not a number.*column 'NA12878'"):
        read_covariates(write(tmp_path / "c.txt", "id\tNA12878\nsex\tmale\n"))


def test_ragged_lines_are_named(tmp_path):
    too_many = GXS + "ENSG03.1\t1\t2\t3\n"
    with pytest.raises(InputFileError, match="4 fields where the header has 3") as info:
        read_expression(write(tmp_path / "a.tsv", too_many))
    assert info.value.record == "line 4"
    too_few = GXS.replace("ENSG01.1\t1.5\t-2", "ENSG01.1\t1.5")
    with pytest.raises(InputFileError, match="2 fields where the header has 3") as info:
        read_expression(write(tmp_path / "b.tsv", too_few))
    assert info.value.record == "line 2"


def test_empty_and_missing_files(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        read_expression(tmp_path / "absent.tsv")
    with pytest.raises(InputFileError, match="empty"):
        read_expression(write(tmp_path / "empty.tsv", ""))
    with pytest.raises(InputFileError, match="no data lines"):
        read_expression(write(tmp_path / "header.tsv", "gene_id\tHG00096\n"))
    with pytest.raises(InputFileError, match="no value columns"):
        read_expression(write(tmp_path / "ids.tsv", "gene_id\nENSG01\n"))
    with pytest.raises(InputFileError, match="no data lines"):
        read_covariates(write(tmp_path / "cov.txt.gz", "id\tHG00096\n"))


def test_truncated_gzip(tmp_path):
    rng = np.random.default_rng(0)
    samples = [f"HG{i:05d}" for i in range(200)]
    lines = ["gene_id\t" + "\t".join(samples)]
    lines += [
        f"ENSG{g:011d}\t" + "\t".join(f"{v:.6f}" for v in rng.normal(size=200)) for g in range(300)
    ]
    data = gzip.compress(("\n".join(lines) + "\n").encode())
    path = tmp_path / "cut.tsv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="truncated") as info:
        read_expression(path)
    assert info.value.path == str(path)
    with pytest.raises(InputFileError, match="truncated"):
        read_covariates(path)


@needs_shared
def test_truncated_real_bed(tmp_path):
    data = PHENOTYPES.read_bytes()
    path = tmp_path / "phenotypes.bed.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="truncated"):
        read_expression(path)


def test_bed_layout_and_bad_bed_genes(tmp_path):
    text = (
        "#Chr\tstart\tend\tTargetID\tNA1\tNA2\n22\t10\t11\tENSG1\t0.5\t1\n22\t20\t21\tENSG2\t2\t3\n"
    )
    expr = read_expression(write(tmp_path / "p.bed", text))
    assert list(expr.index) == ["NA1", "NA2"]
    assert expr.loc["NA2", "ENSG2"] == 3.0
    genes = read_expression_bed_genes(tmp_path / "p.bed")
    assert list(genes["start"]) == [10, 20]
    bad = text.replace("22\t20\t21", "22\t21\t20")
    with pytest.raises(InputFileError, match="need 0 <= start < end") as info:
        read_expression_bed_genes(write(tmp_path / "bad.bed", bad))
    assert info.value.record == "gene ENSG2"
    with pytest.raises(InputFileError, match=r"start 'x' is not a whole number"):
        read_expression_bed_genes(write(tmp_path / "x.bed", text.replace("\t10\t", "\tx\t")))
