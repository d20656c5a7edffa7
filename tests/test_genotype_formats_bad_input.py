"""Bad PGEN, VCF Zarr and BGEN input: errors naming the file, the record and the problem."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import needs_shared, write_vcf
from genlm_sc.io import InputFileError, open_genotypes
from genotype_formats import plink2, write_formats

pytestmark = [needs_shared, pytest.mark.needs_tools("plink2")]


@pytest.fixture(scope="module")
def files(example, tmp_path_factory):
    return write_formats(example.vcf, tmp_path_factory.mktemp("bad_formats"))


def copy_fileset(prefix: Path, folder: Path) -> Path:
    for suffix in (".pgen", ".pvar", ".psam"):
        shutil.copy(prefix.with_suffix(suffix), folder / f"cohort{suffix}")
    return folder / "cohort.pgen"


def raised(path, **options) -> InputFileError:
    with pytest.raises(InputFileError) as err:
        with open_genotypes(path, **options) as reader:
            reader.fetch("20", 0, 10**9)
    return err.value


@pytest.mark.parametrize("kind", ["pgen", "vcf_zarr", "bgen"])
def test_requested_samples_missing(kind, files):
    err = raised(files[kind], samples=["HG00096", "NOBODY"])
    assert "NOBODY" in str(err) and "not in the" in str(err)


@pytest.mark.parametrize("companion", [".pvar", ".psam"])
def test_missing_pgen_companion(companion, files, tmp_path):
    pgen = copy_fileset(files["pgen_prefix"], tmp_path)
    pgen.with_suffix(companion).unlink()
    err = raised(pgen)
    assert err.path == str(pgen) and f"cohort{companion}" in str(err)


def test_unsorted_pvar(files, tmp_path):
    pgen = copy_fileset(files["pgen_prefix"], tmp_path)
    pvar = pgen.with_suffix(".pvar")
    lines = pvar.read_text().splitlines()
    body = next(i for i, line in enumerate(lines) if line.startswith("#CHROM")) + 1
    lines[body + 5], lines[body + 6] = lines[body + 6], lines[body + 5]
    pvar.write_text("\n".join(lines) + "\n")
    err = raised(pgen)
    assert "not sorted" in err.problem and err.record.startswith("record 20:")


def test_malformed_pvar_position(files, tmp_path):
    pgen = copy_fileset(files["pgen_prefix"], tmp_path)
    pvar = pgen.with_suffix(".pvar")
    pvar.write_text(pvar.read_text().replace("\t1000341\t", "\t1000341x\t", 1))
    err = raised(pgen)
    assert err.path == str(pvar) and "1000341x" in str(err) and "rs150957752" in err.record


def test_pgen_allele_code_out_of_range(tmp_path):
    samples, contigs = ["A", "B"], {"20": 10_000}
    vcf = write_vcf(
        tmp_path / "m.vcf.gz",
        [("20", 99, "r1", "A", "C,G", ["0|2", "1|0"]), ("20", 199, "r2", "G", "T", ["1|0", "0|0"])],
        samples=samples, contigs=contigs,
    )  # fmt: skip
    plink2("--vcf", str(vcf), "--make-pgen", "--out", str(tmp_path / "m"))
    with open_genotypes(tmp_path / "m", samples=["B", "A"]) as reader:
        block = reader.fetch("20", 0, 10_000)
    assert block.alts == [["C", "G"], ["T"]]  # plink2 keeps multi-allelic records whole
    assert block.alleles[0].tolist() == [[1, 0], [0, 2]]
    pvar = tmp_path / "m.pvar"
    pvar.write_text(pvar.read_text().replace("C,G", "C"))  # the .pgen still holds allele 2
    err = raised(tmp_path / "m.pgen")
    assert err.path == str(tmp_path / "m.pgen")


def test_zarr_without_genotypes_and_with_bad_codes(files, tmp_path):
    import zarr

    store = tmp_path / "copy.vcz"
    shutil.copytree(files["vcf_zarr"], store)
    group = zarr.open_group(str(store), mode="r+")
    calls = group["call_genotype"]
    block = calls[:3]
    block[1, 4, 0] = 5
    calls[:3] = block
    err = raised(store)
    assert "allele 5" in err.problem and err.record.startswith("record 20:")
    positions = group["variant_position"]
    values = positions[:]
    values[3] = values[10]
    positions[:] = values
    err = raised(store)
    assert "not sorted" in err.problem
    shutil.rmtree(store / "call_genotype")
    err = raised(store)
    assert "call_genotype" in err.problem and err.path == str(store)


def test_zarr_non_diploid(tmp_path):
    from bio2zarr import vcf as vcf2zarr

    vcf = write_vcf(
        tmp_path / "t.vcf.gz", [("20", 99, "r1", "A", "C", ["0/1/1", "0/0/0"])],
        samples=["A", "B"], contigs={"20": 10_000},
    )  # fmt: skip
    vcf2zarr.convert([str(vcf)], str(tmp_path / "t.vcz"), worker_processes=0)
    err = raised(tmp_path / "t.vcz")
    assert "ploidy 3" in err.problem


def test_bgen_ploidy_and_sample_file(files, tmp_path):
    bgen = tmp_path / "copy.bgen"
    shutil.copy(files["bgen"], bgen)
    err = raised(bgen, bgen_sample_file=tmp_path / "absent.sample")
    assert "absent.sample" in str(err)
    (tmp_path / "bad.sample").write_text("not a sample file\n")
    err = raised(bgen, bgen_sample_file=tmp_path / "bad.sample")
    assert err.record == "line 1"
    with pytest.raises(ValueError, match="threshold"):
        open_genotypes(bgen, bgen_threshold=0.4)
    (tmp_path / "broken.bgen").write_bytes(b"not a bgen file at all" * 10)
    err = raised(tmp_path / "broken.bgen")
    assert "cannot read as BGEN" in err.problem
