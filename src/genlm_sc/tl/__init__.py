"""Tools: AnnData in, results computed and written back, grouped by capability.

``language_model``
    :func:`pretrain`, :func:`embed`, :func:`kmer_profile`, :func:`cluster_agreement`.
``expression``
    :func:`fit_expression` (PrediXcan, elastic net, ridge, fine-tuning), :func:`fit_dosages`,
    :func:`predict`, :func:`fit_gene_expression`, :func:`predictability`.
``attribution``
    :func:`attribute` (in-silico mutagenesis, gradient × input, integrated gradients,
    DeepLIFT-SHAP), :func:`variant_effects`,
    :func:`attention` (attention maps per base).
``motifs``
    :func:`scan_motifs`, :func:`motif_matches`.
``classification``
    :func:`fit_classifier`, :func:`predict_classifier`.
"""

import lazy_loader

#: Every tool, imported on first use (most load PyTorch or scanpy): module → names.
_TOOLS = {
    "attribution.attention": ["attention"],
    "attribution.attribute": ["attribute"],
    "attribution.variant_effects": ["variant_effects"],
    "classification.classifier": ["fit_classifier", "predict_classifier"],
    "expression.finetune": ["predict"],
    "expression.fit": ["fit_expression"],
    "expression.gene_fits": ["fit_dosages"],
    "expression.gene_level": ["fit_gene_expression"],
    "expression.predictability": ["predictability"],
    "language_model.clustering": ["cluster_agreement"],
    "language_model.embed": ["embed"],
    "language_model.kmer": ["kmer_profile"],
    "language_model.pretrain": ["pretrain"],
    "motifs.scanner": ["scan_motifs"],
    "motifs.variants": ["motif_matches"],
}
__getattr__, __dir__, _ = lazy_loader.attach(
    __name__,
    submodules=["attribution", "classification", "expression", "language_model", "motifs"],
    submod_attrs=_TOOLS,
)
__all__ = sorted(name for names in _TOOLS.values() for name in names)
