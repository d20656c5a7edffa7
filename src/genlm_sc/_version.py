"""The package version, in a module of its own so that every floor can import it."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("genlm_sc")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.1.0"
