"""Plotting: stored results to matplotlib Axes."""

from ._haplotypes import haplotype_diversity

__all__ = ["haplotype_diversity"]
