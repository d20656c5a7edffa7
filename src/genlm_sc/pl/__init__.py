"""Plotting: stored results to matplotlib Axes."""

from ._embedding import cluster_agreement, embedding
from ._expression import gene_performance, prediction
from ._haplotypes import haplotype_diversity
from ._predictability import predictability

__all__ = [
    "cluster_agreement",
    "embedding",
    "gene_performance",
    "haplotype_diversity",
    "predictability",
    "prediction",
]
