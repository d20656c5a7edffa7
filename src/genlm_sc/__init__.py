"""genlm_sc: genotypes to DNA-language-model representations and predictions.

Import as ``import genlm_sc as gl``; the modules follow scanpy: ``gl.pp`` builds objects,
``gl.tl`` computes and writes results back, ``gl.pl`` draws, ``gl.get`` reads.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("genlm_sc")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"

from . import datasets, get, io, pl, pp, tl
from .store import read, write

__all__ = ["__version__", "datasets", "get", "io", "pl", "pp", "read", "tl", "write"]
