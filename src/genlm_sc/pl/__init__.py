"""Plotting: stored results to matplotlib Axes."""

from ._attention import attention
from ._attribution import attribution, ism, variant_effects
from ._embedding import cluster_agreement, embedding
from ._expression import gene_performance, prediction
from ._haplotypes import haplotype_diversity
from ._predictability import predictability

__all__ = [
    "attention",
    "attribution",
    "cluster_agreement",
    "embedding",
    "gene_performance",
    "haplotype_diversity",
    "ism",
    "predictability",
    "prediction",
    "variant_effects",
]
