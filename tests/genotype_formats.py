"""The shipped example VCF written as PGEN, VCF Zarr and BGEN, for the genotype-format tests.

The VCF is first rewritten with FILTER values and an imputation R² in INFO (set by record
number), so that the filters have something to remove in every format that keeps them.
"""

from __future__ import annotations

import gzip
import subprocess
from pathlib import Path

import numpy as np
import pysam

FILTERS = ("PASS", ".", "LowQual", "PASS", ".", "q10;s50", "PASS")


def annotated_vcf(source: Path, out: Path, r2_field: str = "R2") -> Path:
    """``source`` with FILTER cycling through :data:`FILTERS` and an imputation R² in
    ``INFO/<r2_field>`` (minimac's ``R2``, Beagle's ``DR2``, IMPUTE's ``INFO``; or none)."""
    lines = []
    with gzip.open(source, "rt") as handle:
        i = 0
        for line in handle:
            if line.startswith("##INFO"):
                continue
            if line.startswith("#CHROM"):
                lines += [
                    '##FILTER=<ID=LowQual,Description="low quality">',
                    '##FILTER=<ID=q10,Description="quality below 10">',
                    '##FILTER=<ID=s50,Description="fewer than 50% of samples">',
                    f'##INFO=<ID={r2_field},Number=1,Type=Float,Description="imputation r2">',
                ]
            if line.startswith("#"):
                lines.append(line.rstrip("\n"))
                continue
            fields = line.rstrip("\n").split("\t")
            fields[6] = FILTERS[i % len(FILTERS)]
            r2 = (i * 7919) % 1000 / 1000 + 0.0005
            fields[7] = "." if i % 17 == 0 else f"{r2_field}={r2:.4f}"
            lines.append("\t".join(fields))
            i += 1
    text = out.with_suffix("")
    text.write_text("\n".join(lines) + "\n")
    pysam.tabix_compress(str(text), str(out), force=True)
    pysam.tabix_index(str(out), preset="vcf", force=True)
    return out


def plink2(*args: str) -> None:
    """Run plink2 (one thread), failing with its log on error."""
    result = subprocess.run(["plink2", "--threads", "1", *args], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def write_formats(vcf: Path, folder: Path) -> dict[str, Path]:
    """``vcf`` as PGEN (prefix ``pgen``), VCF Zarr (``vcz``) and phased BGEN 1.3 (``bgen``)."""
    from bio2zarr import vcf as vcf2zarr

    prefix = folder / "cohort"
    plink2("--vcf", str(vcf), "--make-pgen", "--out", str(prefix))
    plink2("--pfile", str(prefix), "--export", "bgen-1.3", "ref-first", "--out", str(prefix))
    vcz = folder / "cohort.vcz"
    vcf2zarr.convert([str(vcf)], str(vcz), worker_processes=0, show_progress=False)
    return {
        "vcf": vcf,
        "pgen": prefix.with_suffix(".pgen"),
        "pgen_prefix": prefix,
        "vcf_zarr": vcz,
        "bgen": prefix.with_suffix(".bgen"),
    }


def assert_same_cohort(got, expected) -> None:
    """Two cohorts hold the same people, genes, variant counts and haplotype store."""
    import genlm_sc as gl

    assert list(got.obs_names) == list(expected.obs_names)
    columns = ["n_variants", "n_haplotypes", "n_skipped_overlapping"]
    assert got.var[columns].equals(expected.var[columns])
    ours, theirs = gl.get.haplotype_store(got), gl.get.haplotype_store(expected)
    assert set(ours.data_vars) == set(theirs.data_vars)
    for name in theirs.data_vars:
        a, b = ours[name].values, theirs[name].values
        assert a.shape == b.shape and a.dtype == b.dtype, name
        assert np.array_equal(a, b), name
    for gene in expected.var_names[:3]:
        assert gl.get.haplotypes(got, gene).equals(gl.get.haplotypes(expected, gene))


def soft_bgen(vcf: Path, out: Path, probability: float) -> Path:
    """``vcf``'s calls (bi-allelic, none missing) as a phased BGEN 1.2 written by the ``bgen``
    package's writer, each haplotype giving its called allele ``probability`` and the other
    allele the rest: calls only a threshold at or below ``probability`` recovers."""
    from bgen import BgenWriter

    with pysam.VariantFile(str(vcf)) as source:
        samples = list(source.header.samples)
        writer = BgenWriter(str(out), len(samples), samples=samples, compression="zstd",
                            layout=2)  # fmt: skip
        for record in source:
            calls = np.array([s["GT"] for s in record.samples.values()], dtype=int)
            probabilities = np.full((len(samples), 4), 1 - probability)
            for h in (0, 1):
                probabilities[np.arange(len(samples)), 2 * h + calls[:, h]] = probability
            writer.add_variant(record.id, record.id, record.chrom, record.pos,
                               [record.ref, *record.alts], probabilities, ploidy=2,
                               phased=True, bit_depth=16)  # fmt: skip
        writer.close()
    return out
