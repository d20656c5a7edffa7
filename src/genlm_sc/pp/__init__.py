"""Preprocessing: arrays to AnnData and the haplotype store."""

from .gene_windows import gene_windows
from .personal import personal_sequences

__all__ = ["gene_windows", "personal_sequences"]
