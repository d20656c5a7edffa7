"""Tools: AnnData in, results computed and written back, grouped by capability.

``language_model``
    :func:`pretrain`, :func:`embed`, :func:`kmer_profile`, :func:`cluster_agreement`.
``expression``
    :func:`fit_expression` (PrediXcan, elastic net, ridge, fine-tuning), :func:`fit_dosages`,
    :func:`predict`, :func:`fit_gene_expression`, :func:`predictability`.
``attribution``
    :func:`attribute` (in-silico mutagenesis, gradient × input), :func:`variant_effects`,
    :func:`attention` (attention maps per base).
``motifs``
    :func:`scan_motifs`, :func:`motif_matches`.
``classification``
    :func:`fit_classifier`, :func:`predict_classifier`.
"""

from .expression.fit import fit_dosages, fit_expression
from .expression.gene_level import fit_gene_expression
from .expression.predictability import predictability
from .language_model.clustering import cluster_agreement
from .language_model.embed import embed
from .language_model.kmer import kmer_profile
from .language_model.pretrain import pretrain
from .motifs.scanner import scan_motifs
from .motifs.variants import motif_matches

__all__: list[str] = [
    "attention",
    "attribute",
    "cluster_agreement",
    "embed",
    "fit_classifier",
    "fit_dosages",
    "fit_expression",
    "fit_gene_expression",
    "kmer_profile",
    "motif_matches",
    "predict",
    "predict_classifier",
    "predictability",
    "pretrain",
    "scan_motifs",
    "variant_effects",
]


#: Tools imported on first use (they load PyTorch): name → module.
_LAZY = {
    "predict": ".expression.finetune",
    "attention": ".attribution.attention",
    "attribute": ".attribution.attribute",
    "variant_effects": ".attribution.variant_effects",
    "fit_classifier": ".classification.classifier",
    "predict_classifier": ".classification.classifier",
}


def __getattr__(name: str):
    """PyTorch-based tools are imported on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
