"""Files to arrays: FASTA, VCF/BCF, gene annotation, expression and eQTL tables, sample
panels.

Nothing here knows about AnnData.
"""

from .annotation import read_annotation
from .contigs import contig_aliases, match_contigs
from .eqtl import read_eqtl
from .errors import InputFileError
from .expression import read_covariates, read_expression, read_expression_bed_genes
from .fasta import FastaReference
from .motifs import read_motifs
from .samples import read_sample_panel
from .vcf import VariantBlock, VariantFile

__all__ = [
    "FastaReference",
    "InputFileError",
    "VariantBlock",
    "VariantFile",
    "contig_aliases",
    "match_contigs",
    "read_annotation",
    "read_covariates",
    "read_eqtl",
    "read_expression",
    "read_expression_bed_genes",
    "read_motifs",
    "read_sample_panel",
]
