"""Names and helpers shared by the store modules."""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import xarray as xr

#: ``format`` attribute of a cohort store's root group.
FORMAT_NAME = "genlm_sc.cohort"
#: The format version this genlm_sc writes.
FORMAT_VERSION = 2
#: Format versions this genlm_sc reads (version 1 has no chunk manifests).
READABLE_VERSIONS = (1, 2)
#: Group of an on-disk store holding per-gene results (``results/<key>/<gene>``).
RESULTS_GROUP = "results"
#: Hidden folder of a store where new arrays are written before they are renamed into place.
STAGING = ".staging"

_MEMORY_PREFIX = "memory://"
#: Array folders that interrupted writes of earlier genlm_sc versions left in ``haplotypes``.
LEGACY_WORK = re.compile(r"^_(?:partial|old)_.+_[0-9a-f]{8}$")


#: Open haplotype Datasets by store location (in-memory cohorts keep their only copy here).
_OPEN_DATASETS: dict[str, xr.Dataset] = {}
#: For on-disk entries of ``_OPEN_DATASETS``: the identity of the store when it was opened
#: (its write id and the stat of its root ``zarr.json``), checked before a cached Dataset is
#: served, so that a store replaced by another process is opened again rather than served stale.
_OPENED_AS: dict[str, tuple[str | None, tuple[int, ...]]] = {}


@contextmanager
def _quiet_zarr() -> Iterator[None]:
    """Silence zarr's notes about v3 string dtypes and consolidated metadata."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="zarr")
        warnings.filterwarnings("ignore", message=".*autosharding.*")
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        warnings.filterwarnings("ignore", message=".*not part of the Zarr format 3.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module="anndata")
        warnings.filterwarnings("ignore", category=FutureWarning, module="xarray")
        yield


def default_chunks(
    n_samples: int,
    *,
    haplotypes: int = 256,
    positions: int = 8192,
    variants: int = 2048,
    genes: int = 32,
) -> dict[str, tuple[int, ...]]:
    """Chunk shapes of the large arrays of a cohort store."""
    sample_chunk = min(n_samples, 4096) or 1
    return {
        "sequence": (haplotypes, positions),
        "genotype": (sample_chunk, variants, 2),
        "sample_haplotype": (sample_chunk, genes, 2),
    }
