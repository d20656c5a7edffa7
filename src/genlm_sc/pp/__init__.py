"""Preprocessing: arrays to AnnData and the haplotype store."""

from .gene_windows import gene_windows
from .personal import personal_sequences
from .sequence_panel import sequence_panel

__all__ = ["gene_windows", "personal_sequences", "sequence_panel"]
