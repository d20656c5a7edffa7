"""Tools: AnnData in, results computed and written back."""

from ._cluster import cluster_agreement
from ._embed import embed
from ._expression import fit_dosages, fit_expression
from ._gene_level import fit_gene_expression
from ._kmer import kmer_profile
from ._predictability import predictability
from ._pretrain import pretrain

__all__: list[str] = [
    "cluster_agreement",
    "embed",
    "fit_dosages",
    "fit_expression",
    "fit_gene_expression",
    "kmer_profile",
    "predict",
    "predictability",
    "pretrain",
]


def __getattr__(name: str):
    """``predict`` is imported on first use: it loads PyTorch."""
    if name == "predict":
        from ._finetune import predict

        return predict
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
