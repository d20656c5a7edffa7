"""Preprocessing: arrays to AnnData, the haplotype store and pretraining corpora."""

from .corpus import PretrainingCorpus, parse_region
from .cpg import cpg_islands
from .decontamination import decontaminate
from .gene_windows import gene_windows
from .overlaps import overlap_groups
from .personal import personal_sequences
from .sequence_panel import sequence_panel

__all__ = [
    "PretrainingCorpus",
    "cpg_islands",
    "decontaminate",
    "gene_windows",
    "overlap_groups",
    "parse_region",
    "personal_sequences",
    "sequence_panel",
]
