"""genlm_sc: genotypes to DNA-language-model representations and predictions.

Import as ``import genlm_sc as gl``; the modules follow scanpy: ``gl.pp`` builds objects,
``gl.tl`` computes and writes results back, ``gl.pl`` draws, ``gl.get`` reads;
``gl.models`` holds the DNA language-model pieces (tokenizers, architectures, corpora).
"""

from . import datasets, get, io, pl, pp, tl
from ._version import __version__
from .store import read, write

__all__ = ["__version__", "datasets", "get", "io", "models", "pl", "pp", "read", "tl", "write"]


def __getattr__(name: str):
    """``gl.models`` is imported on first use: it loads PyTorch and transformers."""
    if name == "models":
        import importlib

        return importlib.import_module(".models", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
