"""Files to arrays: FASTA, genotypes (VCF/BCF, PGEN, VCF Zarr, BGEN), gene annotation,
expression and eQTL tables, sample panels, labelled sequences.

Readers return plain arrays and tables; they know nothing of AnnData (``gl.pp`` builds
AnnData objects from them).
"""

from .annotation import read_annotation
from .contigs import contig_aliases, match_contigs
from .eqtl import read_eqtl
from .errors import InputFileError
from .expression import read_covariates, read_expression, read_expression_bed_genes
from .fasta import FastaReference
from .genotypes import genotype_format, open_genotypes
from .labelled import read_labelled_sequences
from .motifs import read_motifs
from .samples import read_sample_panel
from .variants import VariantBlock
from .vcf import VariantFile

__all__ = [
    "FastaReference",
    "InputFileError",
    "VariantBlock",
    "VariantFile",
    "contig_aliases",
    "genotype_format",
    "match_contigs",
    "open_genotypes",
    "read_annotation",
    "read_covariates",
    "read_eqtl",
    "read_expression",
    "read_expression_bed_genes",
    "read_labelled_sequences",
    "read_motifs",
    "read_sample_panel",
]
