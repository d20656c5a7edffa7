"""Tools: AnnData in, results computed and written back."""

from ._cluster import cluster_agreement
from ._embed import embed
from ._expression import fit_dosages, fit_expression
from ._kmer import kmer_profile
from ._pretrain import pretrain

__all__: list[str] = [
    "cluster_agreement",
    "embed",
    "fit_dosages",
    "fit_expression",
    "kmer_profile",
    "pretrain",
]
