"""The shipped example: 1 Mb of chr20 (b37), 503 Europeans, 30 genes."""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import anndata as ad

_FOLDER = "data/chr20_example"


@dataclass(frozen=True)
class ExampleFiles:
    """Paths of the shipped example files (see ``NOTICE.md`` beside them).

    Attributes
    ----------
    fasta
        bgzipped, faidx-indexed reference, contig ``20`` (positions 1–1,000,000 are ``N``).
    vcf
        1000 Genomes phase 3 genotypes of 503 Europeans over chr20:1,000,001–2,000,000.
    genes
        The 30 GENCODE v19 genes whose TSS lies in that megabase.
    panel
        Population, super-population and sex of the 503 samples.
    notice
        Sources and licences.
    """

    fasta: Path
    vcf: Path
    genes: Path
    panel: Path
    notice: Path


def chr20_example() -> ExampleFiles:
    """Paths of the example data shipped with the package (no download).

    Examples
    --------
    >>> import genlm_sc as gl
    >>> files = gl.datasets.chr20_example()
    >>> files.vcf.name
    '1kgp3_EUR503_chr20_1000001-2000000.vcf.gz'
    """
    root = Path(str(files("genlm_sc.datasets").joinpath(_FOLDER)))
    return ExampleFiles(
        fasta=root / "hs37d5_chr20_1-2000000_Npadded.fa.gz",
        vcf=root / "1kgp3_EUR503_chr20_1000001-2000000.vcf.gz",
        genes=root / "genes_chr20_1000001-2000000.b37.tsv",
        panel=root / "samples_EUR503.panel",
        notice=root / "NOTICE.md",
    )


def example_gene_panel(*, width: int = 4096) -> ad.AnnData:
    """The 30 example genes with ``width``-bp windows centred on their TSS."""
    from ..pp import gene_windows

    paths = chr20_example()
    return gene_windows(paths.genes, fasta=paths.fasta, width=width)


def example_cohort(
    *, width: int = 4096, unphased: str = "random", random_state: int = 0
) -> ad.AnnData:
    """The 503 example people × 30 genes, haplotypes in memory.

    Unphased heterozygous calls (a few in the data) get a random phase by default.
    """
    from ..pp import personal_sequences

    paths = chr20_example()
    return personal_sequences(
        paths.vcf,
        fasta=paths.fasta,
        genes=example_gene_panel(width=width),
        panel=paths.panel,
        unphased=unphased,
        random_state=random_state,
    )
