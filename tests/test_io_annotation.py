"""Tests for :func:`genlm_sc.io.annotation.read_annotation` on real and hand-made files."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pandas as pd
import pytest

from genlm_sc.io.annotation import ANNOTATION_COLUMNS, read_annotation
from genlm_sc.io.errors import InputFileError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
ANNOTATION = SHARED / "annotation"
BED = ANNOTATION / "gencode.v19.genes.v6p.hg19.bed.gz"
TSV = ANNOTATION / "gencode_v19_genes_chr20_TSS_in_1000001-2000000.b37.tsv"

needs_shared = pytest.mark.skipif(not BED.exists() or not TSV.exists(), reason="no shared data")

try:
    import pyranges

    EXAMPLES = Path(pyranges.__file__).parent / "example_data"
except ImportError:  # pragma: no cover - pyranges is a dependency
    EXAMPLES = Path("/nonexistent")
needs_examples = pytest.mark.skipif(
    not (EXAMPLES / "ensembl_human.gtf.gz").exists(), reason="pyranges example GTFs missing"
)


@pytest.fixture(scope="module")
def bed_genes() -> pd.DataFrame:
    if not BED.exists():
        pytest.skip("no shared data")
    return read_annotation(BED)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def raw_gtf_genes(path: Path) -> dict[str, list[str]]:
    """gene_name -> the raw tab-separated fields of its gene line, read without pyranges."""
    opener = gzip.open if path.suffix == ".gz" else open
    genes = {}
    with opener(path, "rt") as handle:
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if line.startswith("#") or len(fields) < 9 or fields[2] != "gene":
                continue
            name = fields[8].split('gene_name "')[1].split('"')[0]
            genes[name] = fields
    return genes


# ----------------------------------------------------------------------------------------
# Real data
# ----------------------------------------------------------------------------------------


@needs_shared
def test_tsv_layout_and_known_gene():
    genes = read_annotation(TSV)
    assert list(genes.columns) == list(ANNOTATION_COLUMNS)
    assert genes.index.name == "gene_id"
    assert genes.index.is_unique
    assert len(genes) == 30
    assert (genes.index == genes["gene_id"]).all()
    for column in ("start", "end", "tss"):
        assert genes[column].dtype == "int64"
    fkbp1a = genes.loc["ENSG00000088832.10"]
    assert fkbp1a["gene_name"] == "FKBP1A"
    assert fkbp1a["strand"] == "-"
    assert (fkbp1a["start"], fkbp1a["end"], fkbp1a["tss"]) == (1349621, 1373806, 1373805)
    assert fkbp1a["chrom"] == "20"
    psmf1 = genes.loc["ENSG00000125818.13"]
    assert (psmf1["strand"], psmf1["tss"], psmf1["gene_type"]) == ("+", 1093905, "protein_coding")
    # every TSS of this file lies in the 1 Mb of real sequence
    assert genes["tss"].between(1_000_000, 1_999_999).all()


@needs_shared
def test_bed_matches_raw_file_and_tsv(bed_genes):
    with gzip.open(BED, "rt") as handle:
        raw = list(csv.reader(handle, delimiter="\t"))
    assert len(bed_genes) == len(raw) == 56238
    first = bed_genes.iloc[0]
    assert first["gene_id"] == raw[0][4] == "ENSG00000223972.4"
    assert (first["chrom"], first["start"], first["end"]) == ("chr1", 11868, 14362)
    assert (first["strand"], first["gene_name"], first["gene_type"]) == (
        "+",
        "DDX11L1",
        "pseudogene",
    )

    tsv = read_annotation(TSV)
    same = bed_genes.loc[tsv.index]
    assert (same["chrom"].str.removeprefix("chr") == tsv["chrom"]).all()
    for column in ("start", "end", "strand", "tss", "gene_name", "gene_type"):
        assert (same[column] == tsv[column]).all(), column


@needs_shared
def test_bed_gene_types_and_selection(bed_genes):
    with gzip.open(BED, "rt") as handle:
        n_coding = sum(line.rstrip("\n").split("\t")[6] == "protein_coding" for line in handle)
    coding = read_annotation(bed_genes, gene_types=["protein_coding"])
    assert len(coding) == n_coding
    assert set(coding["gene_type"]) == {"protein_coding"}

    both = read_annotation(coding, gene_types=["protein_coding"], genes=["PDYN", "FKBP1A"])
    assert list(both["gene_name"]) == ["PDYN", "FKBP1A"]
    picked = read_annotation(bed_genes, genes=["PDYN", "ENSG00000088832", "ENSG00000125818.13"])
    assert list(picked["gene_name"]) == ["PDYN", "FKBP1A", "PSMF1"]
    assert list(picked.index) == ["ENSG00000101327.4", "ENSG00000088832.10", "ENSG00000125818.13"]
    # a different version of the same Ensembl gene still matches; repeats are kept once
    again = read_annotation(bed_genes, genes=["ENSG00000088832.99", "FKBP1A"])
    assert list(again.index) == ["ENSG00000088832.10"]


@needs_shared
def test_bed_ambiguous_and_unknown_names(bed_genes):
    counts = bed_genes["gene_name"].value_counts()
    doubled = counts.index[counts == 2][0]
    ids = bed_genes.index[bed_genes["gene_name"] == doubled]
    assert len(ids) == 2
    with pytest.raises(InputFileError, match="matches") as info:
        read_annotation(bed_genes, genes=[doubled])
    assert all(gene_id in str(info.value) for gene_id in ids)

    with pytest.raises(InputFileError, match=r"unknown gene.*'FKBP1AX'.*did you mean 'FKBP1A'"):
        read_annotation(bed_genes, genes=["FKBP1A", "FKBP1AX"])
    with pytest.raises(InputFileError, match="excluded by gene_types"):
        read_annotation(TSV, gene_types=["protein_coding"], genes=["ACTG1P3"])
    with pytest.raises(InputFileError, match="no gene of type 'protein-coding'"):
        read_annotation(TSV, gene_types=["protein-coding"])


@needs_shared
def test_dataframe_round_trip():
    genes = read_annotation(TSV)
    again = read_annotation(genes)
    pd.testing.assert_frame_equal(again, genes)
    bare = genes.drop(columns=["tss", "gene_name", "gene_type"]).reset_index(drop=True)
    rebuilt = read_annotation(bare)
    assert (rebuilt["tss"] == genes["tss"]).all()
    assert (rebuilt["gene_name"] == rebuilt["gene_id"]).all()


@needs_examples
@pytest.mark.parametrize(
    ("name", "type_attribute"),
    [("ensembl_human.gtf.gz", "gene_biotype"), ("gencode_human.gtf.gz", "gene_type")],
)
def test_gtf_coordinates_against_raw_lines(name, type_attribute):
    path = EXAMPLES / name
    raw = raw_gtf_genes(path)
    genes = read_annotation(path)
    assert len(genes) == len(raw)
    for gene_name in ("DDX11L1", "WASH7P"):
        fields = raw[gene_name]
        gene = genes[genes["gene_name"] == gene_name].iloc[0]
        # GTF is 1-based inclusive; the table is 0-based half-open.
        assert gene["start"] == int(fields[3]) - 1
        assert gene["end"] == int(fields[4])
        assert gene["strand"] == fields[6]
        assert gene["gene_type"] == fields[8].split(f'{type_attribute} "')[1].split('"')[0]
    wash7p = genes[genes["gene_name"] == "WASH7P"].iloc[0]
    assert (wash7p["strand"], wash7p["start"], wash7p["end"], wash7p["tss"]) == (
        "-",
        14403,
        29570,
        29569,
    )


@needs_examples
def test_gtf_without_gene_rows_is_built_from_transcripts(tmp_path):
    source = EXAMPLES / "ensembl.gtf"
    lines = source.read_text().splitlines(keepends=True)
    no_genes = write(tmp_path / "parts.gtf", "".join(ln for ln in lines if "\tgene\t" not in ln))
    from_genes = read_annotation(source)
    from_parts = read_annotation(no_genes)
    assert set(from_parts.index) == set(from_genes.index)
    pd.testing.assert_frame_equal(from_parts.loc[from_genes.index], from_genes)


GFF3 = """##gff-version 3
#!genome-build GRCh38
chr1\tHAVANA\tgene\t11869\t14409\t.\t+\t.\tID=ENSG00000223972.5;gene_id=ENSG00000223972.5;gene_type=transcribed_unprocessed_pseudogene;gene_name=DDX11L1
chr1\tHAVANA\ttranscript\t11869\t14409\t.\t+\t.\tID=ENST00000456328.2;Parent=ENSG00000223972.5;gene_id=ENSG00000223972.5
###
1\thavana\tncRNA_gene\t14404\t29570\t.\t-\t.\tID=gene:ENSG00000227232;Name=WASH7P;biotype=unprocessed_pseudogene
1\thavana\tpseudogenic_transcript\t14404\t29570\t.\t-\t.\tID=transcript:ENST00000488147;Parent=gene:ENSG00000227232
1\tmirbase\tgene\t17369\t17436\t.\t-\t.\tID=gene:ENSG00000278267;Name=MIR6859%2D1;biotype=miRNA
"""


def test_gff3_gene_ids_names_and_types(tmp_path):
    genes = read_annotation(write(tmp_path / "genes.gff3", GFF3))
    assert list(genes.index) == ["ENSG00000223972.5", "ENSG00000227232", "ENSG00000278267"]
    assert list(genes["gene_name"]) == ["DDX11L1", "WASH7P", "MIR6859-1"]
    assert list(genes["gene_type"]) == [
        "transcribed_unprocessed_pseudogene",
        "unprocessed_pseudogene",
        "miRNA",
    ]
    assert list(genes["start"]) == [11868, 14403, 17368]
    assert list(genes["end"]) == [14409, 29570, 17436]
    assert list(genes["tss"]) == [11868, 29569, 17435]


def test_gff3_gzipped_and_named_gff(tmp_path):
    gz = tmp_path / "genes.gff3.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write(GFF3)
    plain = read_annotation(write(tmp_path / "genes.gff", GFF3))
    pd.testing.assert_frame_equal(read_annotation(gz), plain)


def test_bed6_and_format_from_content(tmp_path):
    bed6 = (
        "chr20\t1349621\t1373806\tENSG00000088832.10\t0\t-\nchr20\t1093905\t1160596\tPSMF1\t0\t+\n"
    )
    genes = read_annotation(write(tmp_path / "genes.bed", bed6))
    assert list(genes.index) == ["ENSG00000088832.10", "PSMF1"]
    assert list(genes["tss"]) == [1373805, 1093905]
    assert list(genes["gene_type"]) == ["", ""]
    # BED content in a .txt file, and a headed table named .bed
    pd.testing.assert_frame_equal(read_annotation(write(tmp_path / "genes.txt", bed6)), genes)
    headed = "#chrom\tstart\tend\tname\tscore\tstrand\tgene_id\n" + "".join(
        f"{line}\t{line.split()[3]}\n" for line in bed6.splitlines()
    )
    from_header = read_annotation(write(tmp_path / "headed.bed", headed))
    assert list(from_header["gene_name"]) == ["ENSG00000088832.10", "PSMF1"]
    assert list(from_header["tss"]) == [1373805, 1093905]


# ----------------------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------------------

GOOD_BED = "chr20\t100\t200\t+\tG1.1\tA\tprotein_coding\nchr20\t300\t400\t-\tG2.1\tB\tlincRNA\n"


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(InputFileError, match="no such file") as info:
        read_annotation(tmp_path / "absent.bed")
    assert info.value.path == str(tmp_path / "absent.bed")
    with pytest.raises(InputFileError, match="empty"):
        read_annotation(write(tmp_path / "empty.bed", ""))
    with pytest.raises(InputFileError, match="empty"):
        read_annotation(write(tmp_path / "blank.gtf", "\n\n"))
    with pytest.raises(InputFileError, match="no GTF records, only comments"):
        read_annotation(write(tmp_path / "comments.gtf", "#!genome-build x\n#!y\n"))


def test_truncated_and_corrupt_gzip(tmp_path):
    body = "".join(
        GOOD_BED.replace("G1.1", f"G{i}.1").splitlines(keepends=True)[0] for i in range(9)
    )
    data = gzip.compress((body * 2000).encode())
    truncated = tmp_path / "cut.bed.gz"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="truncated") as info:
        read_annotation(truncated)
    assert info.value.path == str(truncated)
    corrupt = tmp_path / "bad.bed.gz"
    corrupt.write_bytes(data[:20] + bytes(200) + data[220:])
    with pytest.raises(InputFileError, match="gzip"):
        read_annotation(corrupt)


@needs_shared
def test_truncated_real_gzip(tmp_path):
    data = BED.read_bytes()
    cut = tmp_path / "genes.bed.gz"
    cut.write_bytes(data[: len(data) // 3])
    with pytest.raises(InputFileError, match="truncated"):
        read_annotation(cut)


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("chr20\t500\n", "only 2 tab-separated fields"),
        ("chr20\tfive\t600\t+\tG3.1\tC\tmiRNA\n", "start 'five' is not a whole number"),
        ("chr20\t600\t600\t+\tG3.1\tC\tmiRNA\n", "start 600 is not before end 600"),
        ("chr20\t-5\t600\t+\tG3.1\tC\tmiRNA\n", "negative 0-based start -5"),
        ("chr20\t500\t600\t.\tG3.1\tC\tmiRNA\n", "strand '.'"),
    ],
)
def test_bad_bed_line_is_named(tmp_path, line, problem):
    path = write(tmp_path / "genes.bed", GOOD_BED + "# a comment\n" + line)
    with pytest.raises(InputFileError, match=problem) as info:
        read_annotation(path)
    assert info.value.record == "line 4"
    assert str(path) in str(info.value)


def test_bed6_with_bad_strand(tmp_path):
    path = write(tmp_path / "genes.bed", "chr1\t10\t20\tG1\t0\t+\nchr1\t30\t40\tG2\t0\tx\n")
    with pytest.raises(InputFileError, match="strand 'x'") as info:
        read_annotation(path)
    assert info.value.record == "line 2"


def test_duplicate_gene_ids_are_named(tmp_path):
    text = GOOD_BED + "chrY\t100\t200\t+\tG1.1\tA\tprotein_coding\n"
    with pytest.raises(InputFileError, match=r"duplicate gene id.*G1.1.*line 1, line 3"):
        read_annotation(write(tmp_path / "genes.bed", text))


TSV_HEADER = "chrom\tstart0\tend\tgene_id\tgene_name\tgene_type\tstrand\ttss0\n"


def test_tsv_tss_must_agree(tmp_path):
    good = (
        TSV_HEADER
        + "20\t1349621\t1373806\tENSG00000088832.10\tFKBP1A\tprotein_coding\t-\t1373805\n"
    )
    assert read_annotation(write(tmp_path / "good.tsv", good))["tss"].tolist() == [1373805]
    one_based = good.replace("\t1373805\n", "\t1373806\n")
    with pytest.raises(InputFileError, match="looks 1-based") as info:
        read_annotation(write(tmp_path / "one.tsv", one_based))
    assert info.value.record == "line 2"
    wrong = good.replace("\t1373805\n", "\t1349621\n")
    with pytest.raises(InputFileError, match=r"tss 1349621 disagrees.*1373805"):
        read_annotation(write(tmp_path / "wrong.tsv", wrong))


def test_tsv_header_and_field_problems(tmp_path):
    with pytest.raises(InputFileError, match="no column for strand") as info:
        read_annotation(write(tmp_path / "a.tsv", "chrom\tstart\tend\tgene_id\n1\t1\t5\tG\n"))
    assert info.value.record == "header"
    with pytest.raises(InputFileError, match="'start' and 'start0' both give 'start'"):
        read_annotation(write(tmp_path / "b.tsv", "chrom\tstart\tstart0\tend\tstrand\tgene_id\n"))
    short = TSV_HEADER + "20\t1\t5\tG\tN\tT\t+\n"
    with pytest.raises(
        InputFileError, match="7 tab-separated fields where the header has 8"
    ) as info:
        read_annotation(write(tmp_path / "c.tsv", short))
    assert info.value.record == "line 2"
    with pytest.raises(InputFileError, match="a header but no records"):
        read_annotation(write(tmp_path / "d.tsv", TSV_HEADER))


GTF_LINES = [
    '1\thavana\tgene\t11869\t14409\t.\t+\t.\tgene_id "ENSG00000223972"; gene_name "DDX11L1";\n',
    '1\thavana\tgene\t14404\t29570\t.\t-\t.\tgene_id "ENSG00000227232"; gene_name "WASH7P";\n',
]


@pytest.mark.parametrize(
    ("bad", "problem"),
    [
        ('1\thavana\tgene\t17369\t17436\t.\t-\tgene_id "G";\n', "expected 9 tab-separated fields"),
        ('1\thavana\tgene\t17369\tend\t.\t-\t.\tgene_id "G";\n', "must be whole numbers"),
        ("# a comment in the middle\n", "comment line after the first record"),
    ],
)
def test_malformed_gtf_line_is_named(tmp_path, bad, problem):
    path = write(tmp_path / "genes.gtf", "#!genome-build x\n" + GTF_LINES[0] + bad + GTF_LINES[1])
    with pytest.raises(InputFileError, match=problem) as info:
        read_annotation(path)
    assert info.value.record == "line 3"


def test_gtf_semantic_problems_name_the_gene(tmp_path):
    reversed_gene = GTF_LINES[0] + GTF_LINES[1].replace("14404\t29570", "29570\t14404")
    with pytest.raises(InputFileError, match="not before end") as info:
        read_annotation(write(tmp_path / "a.gtf", reversed_gene))
    assert info.value.record == "gene ENSG00000227232"
    with pytest.raises(InputFileError, match=r"duplicate gene id.*ENSG00000223972"):
        read_annotation(write(tmp_path / "b.gtf", GTF_LINES[0] * 2))
    split = GTF_LINES[0].replace("\tgene\t", "\texon\t") + GTF_LINES[0].replace(
        "1\thavana\tgene", "2\thavana\texon"
    )
    with pytest.raises(InputFileError, match="several contigs or strands"):
        read_annotation(write(tmp_path / "c.gtf", split))


def test_gtf_compression_must_match_name(tmp_path):
    path = tmp_path / "genes.gtf"
    path.write_bytes(gzip.compress("".join(GTF_LINES).encode()))
    with pytest.raises(InputFileError, match="is gzip-compressed"):
        read_annotation(path)


def test_pseudoautosomal_duplicates_keep_chrx(tmp_path):
    text = (
        "chrX\t60000\t70000\t+\tENSG00000182378.9\tPLCXD1\tprotein_coding\n"
        "chrY\t10000\t20000\t+\tENSG00000182378.9\tPLCXD1\tprotein_coding\n"
        "chr20\t100\t200\t-\tENSG1.1\tA\tprotein_coding\n"
    )
    with pytest.warns(UserWarning, match="pseudoautosomal"):
        genes = read_annotation(write(tmp_path / "par.bed", text))
    assert genes.loc["ENSG00000182378.9", "chrom"] == "chrX"
    assert len(genes) == 2
