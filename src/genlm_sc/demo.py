"""The main demo on the shipped example data: ``python -m genlm_sc.demo [OUTDIR]``.

Builds the 30-gene panel, every person's haplotypes, writes the cohort store, reads it back
and draws the haplotype diversity plot.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import genlm_sc as gl


def main(outdir: str = "genlm_sc_demo") -> None:
    """Run the demo, writing into ``outdir``."""
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    files = gl.datasets.chr20_example()
    started = time.perf_counter()
    genes = gl.pp.gene_windows(files.genes, fasta=files.fasta, width=4096)
    print(f"gene panel: {genes.n_obs} genes, 4,096-bp windows centred on the TSS")
    print(gl.get.sequences(genes).str.slice(2040, 2056).rename("bases around TSS").head(3))
    cohort = gl.pp.personal_sequences(
        files.vcf,
        fasta=files.fasta,
        genes=genes,
        panel=files.panel,
        unphased="random",
        store=out / "cohort.zarr",
    )
    elapsed = time.perf_counter() - started
    print(cohort)
    counts = cohort.uns["gl"]["counts"]
    print(
        f"{counts['records']} records ({counts['snv']} SNV, {counts['indel']} indel alleles), "
        f"{counts['unphased_heterozygous']} unphased heterozygous calls phased at random"
    )
    unique = int(cohort.var["n_haplotypes"].sum())
    print(
        f"{unique} distinct haplotypes for {cohort.n_obs} people x 2 x {cohort.n_vars} genes "
        f"({cohort.n_obs * 2 * cohort.n_vars} person-haplotypes) in {elapsed:.1f} s"
    )
    again = gl.read(out / "cohort.zarr")
    fkbp1a = gl.get.haplotypes(again, "FKBP1A", samples=["HG00096", "NA12878"])
    print("FKBP1A haplotype lengths:\n", fkbp1a.map(len))
    gl.datasets.simulate_expression(again, n_causal=(1, 3), h2=(0.1, 0.5), rng=0)
    print(again.uns["gl_simulation"]["causal_variants"].head())
    ax = gl.pl.haplotype_diversity(again)
    ax.figure.savefig(out / "haplotype_diversity.png", dpi=150, bbox_inches="tight")
    print(f"wrote {out / 'cohort.zarr'} and {out / 'haplotype_diversity.png'}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
