"""genlm_sc: genotypes to DNA-language-model representations and predictions.

Import as ``import genlm_sc as gl``; the modules follow scanpy: ``gl.pp`` builds objects,
``gl.tl`` computes and writes results back, ``gl.pl`` draws, ``gl.get`` reads;
``gl.models`` holds the DNA language-model pieces (tokenizers, architectures, corpora).

``gl.tl``, ``gl.pl``, ``gl.models`` and ``gl.datasets`` are imported on first use (they
load PyTorch, transformers or scanpy), so that reading genotypes and building haplotypes
starts without them.
"""

import lazy_loader

from . import get, io, pp
from ._settings import settings
from ._version import __version__
from .store import read, write

__getattr__, _, _ = lazy_loader.attach(__name__, submodules=["datasets", "models", "pl", "tl"])

__all__ = [
    "__version__",
    "datasets",
    "get",
    "io",
    "models",
    "pl",
    "pp",
    "read",
    "settings",
    "tl",
    "write",
]


def __dir__() -> list[str]:
    """Every public name, the ones loaded on first use included (for tab completion)."""
    return sorted(__all__)
