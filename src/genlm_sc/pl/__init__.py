"""Plotting: stored results to matplotlib Axes."""

from ._embedding import cluster_agreement, embedding
from ._haplotypes import haplotype_diversity

__all__ = ["cluster_agreement", "embedding", "haplotype_diversity"]
