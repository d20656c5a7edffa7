"""Bad input files: every error names the file, the record and the problem.

Each case also checks that a failed ``personal_sequences(..., store=path)`` leaves nothing
half-written: no store and no ``.c.zarr.partial-*`` folder when there was none, and an
untouched, readable store when a good one was already there.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pysam
import pytest

import genlm_sc as gl
from conftest import write_fasta, write_vcf_lines
from genlm_sc.io import FastaReference, InputFileError, VariantFile

SAMPLES = ["HG00096", "HG00097", "HG00099", "HG00100"]  # all phased in the windows below
GENES = ["PSMF1", "TMEM74B"]  # one plus-strand and one minus-strand gene
PSMF1 = "ENSG00000125818.13"
PDYN = "ENSG00000101327.4"  # minus strand, TSS 1,974,731 (0-based): 25,268 bp from the end
CONTIG_LENGTH = 2_000_000


# --------------------------------------------------------------------------------------
# Small inputs cut from the example data
# --------------------------------------------------------------------------------------


@dataclass
class Small:
    folder: Path
    fasta: Path
    header: list[str]
    records: list[str]
    vcf: Path
    panel: ad.AnnData
    good: ad.AnnData
    good_store: Path


def write_vcf(folder: Path, name: str, header: list[str], records: list[str]) -> Path:
    """bgzip and tabix-index a VCF written from text lines."""
    return write_vcf_lines(folder / f"{name}.vcf.gz", header + records)


def record_at(small: Small, gene_id: str, *, snv: bool = True) -> int:
    """Index in ``small.records`` of a biallelic SNV (or any record) in a window, not its first."""
    row = small.panel.obs.loc[gene_id]
    inside = [
        row["start"] + 10 <= int(line.split("\t")[1]) - 1 < row["end"] - 10
        for line in small.records
    ]
    for i, line in enumerate(small.records):
        fields = line.split("\t")
        if i > 0 and inside[i - 1] and inside[i]:  # the record before is in the window too
            if not snv or (len(fields[3]) == 1 and len(fields[4]) == 1):
                return i
    raise AssertionError("no suitable record")


@pytest.fixture(scope="session")
def small(example, tmp_path_factory) -> Small:
    folder = tmp_path_factory.mktemp("small")
    panel = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=4096, genes=GENES)
    with pysam.VariantFile(str(example.vcf)) as source:
        source.subset_samples(SAMPLES)
        header = str(source.header).rstrip("\n").split("\n")
        records: dict[str, None] = {}
        for _, row in panel.obs.iterrows():
            for rec in source.fetch("20", int(row["start"]), int(row["end"])):
                if row["start"] <= rec.start < row["end"]:
                    records[str(rec).rstrip("\n")] = None
    assert header[-1].split("\t")[9:] == SAMPLES
    lines = list(records)
    vcf = write_vcf(folder, "small", header, lines)
    store = folder / "good.zarr"
    good = gl.pp.personal_sequences(
        vcf, fasta=example.fasta, genes=panel, store=store, progress=False
    )
    assert good.var["n_variants"].min() > 10
    return Small(folder, Path(example.fasta), header, lines, vcf, panel, good, store)


# --------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------


def leftovers(target: Path) -> list[str]:
    """Hidden siblings (``.c.zarr.partial-*``, ``.c.zarr.previous-*``) of a store path."""
    return sorted(p.name for p in target.parent.glob(f".{target.name}.*"))


def fingerprint(store: Path) -> dict[str, str]:
    return {
        str(p.relative_to(store)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(store.rglob("*"))
        if p.is_file()
    }


def assert_names(err: BaseException, path, *words: str, record: tuple[str, ...] = ()) -> None:
    """``err`` is an InputFileError naming ``path``, the ``words`` and the ``record``."""
    assert isinstance(err, InputFileError), repr(err)
    message = str(err)
    assert err.path == os.fspath(path)
    assert message.startswith(os.fspath(path)), message
    for word in words:
        assert word.lower() in message.lower(), (word, message)
    if record:
        assert err.record is not None, message
        for part in record:
            assert part in err.record, (part, err.record)
            assert part in message


def fails_cleanly(small: Small, tmp_path: Path, vcf=None, **kwargs) -> InputFileError:
    """Run a failing ``personal_sequences`` twice, to a fresh path and over a good store."""
    vcf = small.vcf if vcf is None else vcf
    kwargs = {"fasta": small.fasta, "genes": small.panel, "progress": False, **kwargs}

    fresh = tmp_path / "fresh" / "c.zarr"
    with pytest.raises(InputFileError) as first:
        gl.pp.personal_sequences(vcf, store=fresh, **kwargs)
    assert not fresh.exists()
    assert leftovers(fresh) == []

    kept = tmp_path / "kept" / "c.zarr"
    shutil.copytree(small.good_store, kept)
    before = fingerprint(kept)
    with pytest.raises(InputFileError) as second:
        gl.pp.personal_sequences(vcf, store=kept, **kwargs)
    assert str(second.value) == str(first.value)
    assert fingerprint(kept) == before
    assert leftovers(kept) == []
    again = gl.read(kept)
    pd.testing.assert_index_equal(again.var_names, small.good.var_names)
    for gene in small.good.var_names:
        pd.testing.assert_frame_equal(
            gl.get.haplotypes(again, gene), gl.get.haplotypes(small.good, gene)
        )
    return first.value


def haplotypes_equal(a: ad.AnnData, b: ad.AnnData) -> None:
    pd.testing.assert_index_equal(a.var_names, b.var_names)
    for gene in a.var_names:
        pd.testing.assert_frame_equal(gl.get.haplotypes(a, gene), gl.get.haplotypes(b, gene))


# --------------------------------------------------------------------------------------
# REF mismatch
# --------------------------------------------------------------------------------------


def _mismatched(small: Small):
    i = record_at(small, PSMF1)
    fields = small.records[i].split("\t")
    wrong = next(b for b in "ACGT" if b not in (fields[3], fields[4]))
    records = list(small.records)
    records[i] = "\t".join([*fields[:3], wrong, *fields[4:]])
    return i, fields, wrong, records


def test_ref_mismatch_is_refused(small, tmp_path):
    _, fields, wrong, records = _mismatched(small)
    vcf = write_vcf(tmp_path, "mismatch", small.header, records)
    err = fails_cleanly(small, tmp_path, vcf=vcf)
    assert_names(
        err,
        vcf,
        f"REF {wrong} does not match",
        f"({fields[3]} at 20:{fields[1]})",
        "ref_mismatch='skip'",
        record=(f"20:{fields[1]}", fields[2]),
    )


def test_ref_mismatch_skip_leaves_the_record_out(small, tmp_path):
    i, fields, _, records = _mismatched(small)
    vcf = write_vcf(tmp_path, "mismatch", small.header, records)
    skipped = gl.pp.personal_sequences(
        vcf, fasta=small.fasta, genes=small.panel, ref_mismatch="skip", progress=False
    )
    counts = skipped.uns["gl"]["counts"]
    assert counts["ref_mismatch_skipped"] == 1
    assert counts["records"] == small.good.uns["gl"]["counts"]["records"] - 1
    assert len(skipped.uns["gl"]["ref_mismatch_records"]) == 1
    assert f"20:{fields[1]} {fields[2]}" in skipped.uns["gl"]["ref_mismatch_records"][0]
    assert skipped.uns["gl"]["policies"]["ref_mismatch"] == "skip"
    expected_n = small.good.var["n_variants"].to_numpy() - np.array([1, 0])
    np.testing.assert_array_equal(skipped.var["n_variants"].to_numpy(), expected_n)
    # the same as if the record were not in the file at all
    without = write_vcf(tmp_path, "without", small.header, records[:i] + records[i + 1 :])
    reference = gl.pp.personal_sequences(
        without, fasta=small.fasta, genes=small.panel, progress=False
    )
    haplotypes_equal(skipped, reference)


# --------------------------------------------------------------------------------------
# Contig names
# --------------------------------------------------------------------------------------


def test_annotation_contig_missing_from_fasta(example, tmp_path):
    table = pd.read_csv(example.genes, sep="\t", dtype={"chrom": str})
    table.loc[table["gene_name"] == "SNPH", "chrom"] = "7"
    genes = tmp_path / "genes.tsv"
    table.to_csv(genes, sep="\t", index=False)
    with pytest.raises(InputFileError) as info:
        gl.pp.gene_windows(genes, fasta=example.fasta, width=1000)
    assert_names(info.value, example.fasta, "unknown contig '7'", "'chr7'", "contigs are: 20")


def test_panel_contig_missing_from_vcf(small, tmp_path):
    header = [h.replace("##contig=<ID=20,", "##contig=<ID=21,") for h in small.header]
    assert header != small.header
    records = ["21" + line[2:] for line in small.records]
    vcf = write_vcf(tmp_path, "chrom21", header, records)
    err = fails_cleanly(small, tmp_path, vcf=vcf)
    assert_names(err, vcf, "unknown contig '20'", "'chr20'", "contigs are: 21")


def test_panel_contig_missing_from_fasta(small, tmp_path):
    """A panel built on one FASTA used with another that lacks its contig."""
    other = write_fasta(tmp_path / "other.fa", {"1": "ACGT" * 100})
    err = fails_cleanly(small, tmp_path, fasta=other)
    assert_names(err, other, "unknown contig '20'", record=("20",))


def test_chr_prefixed_vcf_is_matched_to_bare_fasta(small, tmp_path):
    header = [h.replace("##contig=<ID=20,", "##contig=<ID=chr20,") for h in small.header]
    records = ["chr" + line for line in small.records]
    vcf = write_vcf(tmp_path, "chr20", header, records)
    assert VariantFile(vcf).contigs == ["chr20"]
    cohort = gl.pp.personal_sequences(vcf, fasta=small.fasta, genes=small.panel, progress=False)
    assert list(cohort.var["chrom"]) == ["20", "20"]
    np.testing.assert_array_equal(cohort.var["n_variants"], small.good.var["n_variants"])
    assert cohort.uns["gl"]["counts"] == small.good.uns["gl"]["counts"]
    haplotypes_equal(cohort, small.good)


def test_chr_prefixed_annotation_is_matched_to_bare_fasta(example, small, tmp_path):
    table = pd.read_csv(example.genes, sep="\t", dtype={"chrom": str})
    table["chrom"] = "chr" + table["chrom"]
    genes = tmp_path / "genes.tsv"
    table.to_csv(genes, sep="\t", index=False)
    panel = gl.pp.gene_windows(genes, fasta=example.fasta, width=4096, genes=GENES)
    assert list(panel.obs["chrom"]) == ["20", "20"]
    columns = ["start", "end", "strand", "tss"]
    pd.testing.assert_frame_equal(panel.obs[columns], small.panel.obs[columns])


# --------------------------------------------------------------------------------------
# Compression: truncated, corrupt, plain gzip
# --------------------------------------------------------------------------------------


def _copy_fasta(example, folder: Path, data: bytes, name: str) -> Path:
    """A FASTA with the given bytes and the example's (now stale) .fai and .gzi."""
    path = folder / name
    path.write_bytes(data)
    for suffix in (".fai", ".gzi"):
        shutil.copy(f"{example.fasta}{suffix}", f"{path}{suffix}")
    return path


def test_truncated_fasta(example, small, tmp_path):
    data = Path(example.fasta).read_bytes()
    cut = _copy_fasta(example, tmp_path, data[: len(data) * 6 // 10], "cut.fa.gz")
    with pytest.raises(InputFileError) as info:
        gl.pp.gene_windows(example.genes, fasta=cut, width=4096)
    assert_names(info.value, cut, "truncated or corrupt gzip")
    with pytest.raises(InputFileError) as info:
        FastaReference(cut)
    assert_names(info.value, cut, "truncated")
    err = fails_cleanly(small, tmp_path, fasta=cut)
    assert_names(err, cut, "truncated or corrupt gzip")


def _bgzf_block_holding(example, pos0: int) -> tuple[int, int]:
    """Compressed (start, end) of the BGZF block of the example FASTA holding base ``pos0``."""
    name, length, offset, line_bases, line_bytes = Path(f"{example.fasta}.fai").read_text().split()
    assert (name, int(length)) == ("20", CONTIG_LENGTH)
    uncompressed = int(offset) + pos0 // int(line_bases) * int(line_bytes) + pos0 % int(line_bases)
    gzi = np.fromfile(f"{example.fasta}.gzi", dtype="<u8")
    starts = np.concatenate([[0], gzi[1::2]])
    ustarts = np.concatenate([[0], gzi[2::2]])
    k = int(np.searchsorted(ustarts, uncompressed, side="right")) - 1
    return int(starts[k]), int(starts[k + 1])


def test_corrupt_fasta_block(example, small, tmp_path):
    tss = int(small.panel.obs.loc[PSMF1, "tss"])
    lo, hi = _bgzf_block_holding(example, tss)
    data = bytearray(Path(example.fasta).read_bytes())
    middle = (lo + hi) // 2
    data[middle : middle + 64] = bytes(64)
    bad = _copy_fasta(example, tmp_path, bytes(data), "corrupt.fa.gz")
    # the end-of-file marker is intact, so opening works; reading the damaged block fails
    with FastaReference(bad) as reference, FastaReference(example.fasta) as good:
        assert reference.fetch_str("20", 999_990, 1_000_010) == good.fetch_str(
            "20", 999_990, 1_000_010
        )
    err = fails_cleanly(small, tmp_path, fasta=bad)
    assert_names(err, bad, "cannot read sequence", record=("20:",))
    start, end = (int(v) for v in err.record.split(":")[1].split("-"))
    assert start <= tss + 1 <= end


def test_plain_gzip_fasta(example, small, tmp_path):
    plain = tmp_path / "plain.fa.gz"
    with gzip.open(example.fasta, "rb") as source:
        plain.write_bytes(gzip.compress(source.read(), compresslevel=1))
    with pytest.raises(InputFileError) as info:
        gl.pp.gene_windows(example.genes, fasta=plain, width=4096)
    assert_names(info.value, plain, "plain gzip", "bgzip", "samtools faidx")
    err = fails_cleanly(small, tmp_path, fasta=plain)
    assert_names(err, plain, "plain gzip", "bgzip")


def test_plain_gzip_vcf(small, tmp_path):
    plain = tmp_path / "plain.vcf.gz"
    plain.write_bytes(gzip.compress(("\n".join(small.header + small.records) + "\n").encode()))
    err = fails_cleanly(small, tmp_path, vcf=plain)
    assert_names(err, plain, "index")


def _cut_vcf(example, folder: Path, data: bytes, name: str) -> Path:
    path = folder / name
    path.write_bytes(data)
    shutil.copy(f"{example.vcf}.tbi", f"{path}.tbi")
    return path


def test_truncated_vcf(example, tmp_path):
    data = Path(example.vcf).read_bytes()
    cut = _cut_vcf(example, tmp_path, data[: len(data) // 2], "cut.vcf.gz")
    panel = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=4096, genes=["SIRPA"])
    target = tmp_path / "c.zarr"
    with pytest.raises(InputFileError) as info:
        gl.pp.personal_sequences(
            cut, fasta=example.fasta, genes=panel, samples=SAMPLES, store=target, progress=False
        )
    assert not target.exists()
    assert leftovers(target) == []
    assert_names(info.value, cut, "truncated")


def test_corrupt_vcf_block(example, small, tmp_path):
    with pysam.VariantFile(str(example.vcf)) as source:
        row = small.panel.obs.loc[PSMF1]
        next(source.fetch("20", int(row["start"]), int(row["end"])))
        block = source.tell() >> 16
    data = bytearray(Path(example.vcf).read_bytes())
    size = int.from_bytes(data[block + 16 : block + 18], "little") + 1
    middle = block + size // 2
    data[middle : middle + 32] = bytes(32)
    bad = _cut_vcf(example, tmp_path, bytes(data), "corrupt.vcf.gz")
    err = fails_cleanly(small, tmp_path, vcf=bad, samples=SAMPLES)
    assert_names(err, bad, "corrupt")


# --------------------------------------------------------------------------------------
# Malformed VCF lines
# --------------------------------------------------------------------------------------


def _bad_record_vcf(small: Small, folder: Path, replace) -> tuple[Path, list[str], list[str]]:
    """A VCF whose record in the PSMF1 window is rewritten by ``replace(fields)``."""
    i = record_at(small, PSMF1)
    good_fields = small.records[i].split("\t")
    previous = small.records[i - 1].split("\t")
    records = list(small.records)
    records[i] = "\t".join(replace(list(good_fields)))
    return write_vcf(folder, "bad", small.header, records), good_fields, previous


def test_vcf_record_with_too_few_columns(small, tmp_path):
    vcf, good_fields, _ = _bad_record_vcf(small, tmp_path, lambda f: f[:7])
    expected = f"7 tab-separated columns where the #CHROM header line has {9 + len(SAMPLES)}"
    with pytest.raises(InputFileError) as info:
        VariantFile(vcf).fetch("20", 1_000_000, 1_200_000)
    assert_names(info.value, vcf, expected, record=(f"20:{good_fields[1]} {good_fields[2]}",))
    err = fails_cleanly(small, tmp_path, vcf=vcf)
    assert_names(err, vcf, expected, record=(f"20:{good_fields[1]} {good_fields[2]}",))


def test_vcf_record_with_non_numeric_pos(small, tmp_path):
    # tabix reads the leading digits and indexes the file; htslib's VCF parser refuses it
    def replace(fields):
        fields[1] = fields[1] + "x"
        return fields

    vcf, good_fields, _ = _bad_record_vcf(small, tmp_path, replace)
    err = fails_cleanly(small, tmp_path, vcf=vcf)
    assert_names(
        err, vcf, f"POS '{good_fields[1]}x' is not a whole number", record=(good_fields[2],)
    )


# --------------------------------------------------------------------------------------
# Samples
# --------------------------------------------------------------------------------------


def test_duplicate_sample_ids_in_vcf_header(small, tmp_path):
    header = list(small.header)
    header[-1] = header[-1].replace(SAMPLES[2], SAMPLES[0])
    vcf = write_vcf(tmp_path, "duplicated", header, small.records)
    err = fails_cleanly(small, tmp_path, vcf=vcf)
    assert_names(err, vcf, f"duplicate sample ids in the header: {SAMPLES[0]}")
    assert err.record == "#CHROM line"


@pytest.mark.filterwarnings("ignore:Observation names are not unique")
def test_duplicate_requested_samples(small, tmp_path):
    target = tmp_path / "c.zarr"
    with pytest.raises(ValueError, match=f"{SAMPLES[0]}") as info:
        gl.pp.personal_sequences(
            small.vcf,
            fasta=small.fasta,
            genes=small.panel,
            samples=[SAMPLES[0], SAMPLES[1], SAMPLES[0]],
            store=target,
            progress=False,
        )
    assert "duplicate" in str(info.value).lower()
    assert not target.exists()
    assert leftovers(target) == []


def test_expression_samples_match_no_genotype_sample(small, tmp_path):
    expression = tmp_path / "expression.tsv"
    expression.write_text(
        f"gene_id\tNA99998\tNA99999\n{PSMF1}\t1.5\t2.5\nENSG00000125895.5\t0.5\t0.25\n"
    )
    err = fails_cleanly(small, tmp_path, expression=expression)
    assert_names(err, expression, "no expression sample matches a genotype sample", "NA99998")
    assert os.fspath(small.vcf) in str(err)
    assert SAMPLES[0] in str(err)


def test_expression_partly_matching_is_kept(small, tmp_path):
    """The counterpart: only people with both are kept, the others are listed."""
    expression = tmp_path / "expression.tsv"
    expression.write_text(f"gene_id\t{SAMPLES[1]}\tNA99999\t{SAMPLES[0]}\n{PSMF1}\t1.5\t2.5\t3.5\n")
    cohort = gl.pp.personal_sequences(
        small.vcf, fasta=small.fasta, genes=small.panel, expression=expression, progress=False
    )
    assert list(cohort.obs_names) == [SAMPLES[0], SAMPLES[1]]
    np.testing.assert_array_equal(cohort.X[:, 0], [3.5, 1.5])
    assert np.isnan(cohort.X[:, 1]).all()
    unmatched = cohort.uns["gl"]["unmatched_samples"]
    assert unmatched == {"genotype_only": SAMPLES[2:], "expression_only": ["NA99999"]}


# --------------------------------------------------------------------------------------
# Gene panel
# --------------------------------------------------------------------------------------


def test_unknown_gene_ids(example):
    with pytest.raises(InputFileError) as info:
        gl.pp.gene_windows(
            example.genes,
            fasta=example.fasta,
            width=1000,
            genes=["PSMF1", "ENSG00000999999.1", "PSMF2"],
        )
    assert_names(
        info.value,
        example.genes,
        "unknown gene(s)",
        "'ENSG00000999999.1'",
        "'PSMF2' (did you mean 'PSMF1'?)",
    )
    assert "'PSMF1'," not in str(info.value)


def test_window_off_contig_is_an_error_by_default(example):
    with pytest.raises(InputFileError) as info:
        gl.pp.gene_windows(example.genes, fasta=example.fasta, width=60_000)
    assert_names(
        info.value,
        example.fasta,
        f"window of gene {PDYN} (PDYN)",
        f"contig 20 has {CONTIG_LENGTH} bases",
        "(1 genes affected)",
        "off_contig='pad'",
        record=(PDYN,),
    )


def test_window_off_contig_pad(example):
    width = 60_000
    panel = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=width, off_contig="pad")
    assert panel.n_obs == 30
    assert panel.obs["padded"].sum() == 1 and panel.obs.loc[PDYN, "padded"]
    row = panel.obs.loc[PDYN]
    tss = int(row["tss"])
    assert (int(row["start"]), int(row["end"])) == (
        tss + width // 2 + 1 - width,
        tss + width // 2 + 1,
    )
    outside = int(row["end"]) - CONTIG_LENGTH
    assert outside == 4_732
    sequence = gl.get.sequences(panel)[PDYN]
    assert len(sequence) == width
    # minus strand: the padding past the contig end comes first in gene orientation
    assert sequence[:outside] == "N" * outside
    with FastaReference(example.fasta) as fasta:
        inside = fasta.fetch_str("20", int(row["start"]), CONTIG_LENGTH)
    complement = str.maketrans("ACGTN", "TGCAN")
    assert sequence[outside:] == inside.translate(complement)[::-1]
    assert sequence[width // 2] == inside[tss - int(row["start"])].translate(complement)


def test_window_off_contig_pad_builds_haplotypes(example):
    width = 60_000
    panel = gl.pp.gene_windows(
        example.genes, fasta=example.fasta, width=width, off_contig="pad", genes=[PDYN]
    )
    cohort = gl.pp.personal_sequences(
        example.vcf, fasta=example.fasta, genes=panel, samples=SAMPLES, progress=False
    )
    reference = gl.get.sequences(panel)[PDYN]
    assert reference.startswith("N" * 4_732) and reference[4_732] != "N"
    assert cohort.var.loc[PDYN, "n_variants"] > 0
    assert cohort.var.loc[PDYN, "padded"]
    for haplotype in gl.get.haplotypes(cohort, PDYN).to_numpy().ravel():
        assert haplotype.startswith("N" * 4_732)
        assert haplotype[4_732] != "N"


def test_window_off_contig_drop(example):
    panel = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=60_000, off_contig="drop")
    assert panel.n_obs == 29
    assert PDYN not in panel.obs_names
    assert not panel.obs["padded"].any()
    assert panel.uns["gl"]["n_dropped_off_contig"] == 1


# --------------------------------------------------------------------------------------
# Genotype policies
# --------------------------------------------------------------------------------------


def test_unphased_heterozygous_call_is_refused_by_default(example, small, tmp_path):
    # NA12878 is 0/1 (unphased) at rs140858280 (20:1094316 TTTC>T) in the PSMF1 window
    err = fails_cleanly(small, tmp_path, vcf=example.vcf, samples=["HG00096", "NA12878"])
    assert_names(
        err,
        example.vcf,
        "unphased heterozygous genotype for sample NA12878",
        "unphased='as_listed'",
        record=("20:1094316", "rs140858280", "TTTC>T"),
    )
    cohort = gl.pp.personal_sequences(
        example.vcf,
        fasta=small.fasta,
        genes=small.panel,
        samples=["HG00096", "NA12878"],
        unphased="as_listed",
        progress=False,
    )
    assert cohort.uns["gl"]["counts"]["unphased_heterozygous"] == 1


def _with_missing_call(small: Small) -> tuple[list[str], list[str], list[str]]:
    i = record_at(small, PSMF1)
    fields = small.records[i].split("\t")
    missing = list(fields)
    missing[9 + 2] = ".|."
    as_reference = list(fields)
    as_reference[9 + 2] = "0|0"
    records = list(small.records)
    records[i] = "\t".join(missing)
    homref = list(small.records)
    homref[i] = "\t".join(as_reference)
    return fields, records, homref


def test_missing_genotype_with_missing_error(small, tmp_path):
    fields, records, _ = _with_missing_call(small)
    vcf = write_vcf(tmp_path, "missing", small.header, records)
    err = fails_cleanly(small, tmp_path, vcf=vcf, missing="error")
    assert_names(
        err,
        vcf,
        f"missing genotype for sample {SAMPLES[2]}",
        "missing='reference'",
        record=(f"20:{fields[1]}", fields[2]),
    )


def test_missing_genotype_default_keeps_reference(small, tmp_path):
    _, records, homref = _with_missing_call(small)
    vcf = write_vcf(tmp_path, "missing", small.header, records)
    cohort = gl.pp.personal_sequences(vcf, fasta=small.fasta, genes=small.panel, progress=False)
    assert cohort.uns["gl"]["counts"]["missing_alleles"] == 2
    expected = gl.pp.personal_sequences(
        write_vcf(tmp_path, "homref", small.header, homref),
        fasta=small.fasta,
        genes=small.panel,
        progress=False,
    )
    haplotypes_equal(cohort, expected)


def test_window_groups_are_bounded():
    """Dense genes never make one huge VCF region (memory stays bounded)."""
    import pandas as pd

    from genlm_sc.pp.gene_build import _clusters

    starts = np.arange(0, 5_000_000, 2_000)
    obs = pd.DataFrame(
        {"chrom": "20", "start": starts, "end": starts + 4096},
        index=[f"g{i}" for i in range(len(starts))],
    )
    spans = _clusters(obs, max_span=1_000_000)
    for gene, (_, lo, hi) in spans.items():
        start = obs.loc[gene, "start"]
        assert lo <= start and start + 4096 <= hi
        assert hi - lo <= 1_000_000 + 2 * 4096
    assert len(set(spans.values())) >= 5
