"""Tools: AnnData in, results computed and written back."""

from ._cluster import cluster_agreement
from ._embed import embed
from ._expression import fit_dosages, fit_expression
from ._gene_level import fit_gene_expression
from ._kmer import kmer_profile
from ._motifs import motif_matches, scan_motifs
from ._predictability import predictability
from ._pretrain import pretrain

__all__: list[str] = [
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
    "predict": "._finetune",
    "attribute": "._attribution",
    "variant_effects": "._variant_effects",
    "fit_classifier": "._classifier",
    "predict_classifier": "._classifier",
}


def __getattr__(name: str):
    """PyTorch-based tools are imported on first use."""
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
