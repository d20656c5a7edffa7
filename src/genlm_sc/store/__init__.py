"""The on-disk cohort object: AnnData and its haplotype tensors in one Zarr store.

Layout (format ``genlm_sc.cohort``, version :data:`FORMAT_VERSION`; see ``docs/format.md``)::

    cohort.zarr/
      zarr.json        root attributes {"genlm_sc": {"format", "format_version", "write_id", ...}}
      anndata/         the AnnData (anndata's Zarr encoding)
      haplotypes/      an xarray Dataset: unique haplotypes, person map, variants
      results/         per-gene results (``results/<key>/<gene>``)

A cohort built without a ``store`` path keeps its haplotypes in memory; :func:`write`
puts both parts on disk. Writes go to a hidden sibling folder that is swapped into place
at the end, so an interrupted write leaves the previous version readable; a path holding
anything but a genlm_sc store is never written over. Every array carries a manifest of its
chunk checksums, checked as the chunks are read. The modules:

- ``writer``: the streamed writer of a new store (:class:`CohortStoreWriter`);
- ``dataset``: writing Datasets and AnnData, subsets and copies of stores;
- ``reading``: :func:`read`, :func:`open_haplotypes` and the cache of open stores;
- ``results``: arrays and results added to an existing store;
- ``integrity``: format attributes, write ids, chunk manifests;
- ``files``: safe targets, work folders, atomic swaps.
"""

from __future__ import annotations

import os
import shutil

import anndata as ad
import zarr

from .common import (
    _MEMORY_PREFIX as _MEMORY_PREFIX,
)
from .common import (
    _OPEN_DATASETS,
    _OPENED_AS,
    FORMAT_NAME,
    FORMAT_VERSION,
    READABLE_VERSIONS,
    RESULTS_GROUP,
    default_chunks,
)
from .common import (
    _quiet_zarr as _quiet_zarr,
)
from .dataset import (
    _copy_haplotypes,
    _write_anndata,
    _write_dataset,
    subset_haplotypes,
    writing,
)
from .errors import CorruptStoreError, StoreError, StoreTargetError
from .files import (
    check_target,
    is_cohort_store,
    remove_abandoned_siblings,
    swap_into_place,
    target_path,
    work_name,
)
from .integrity import check_format, root_attrs, seal, verify_arrays
from .reading import _resolve_path, open_haplotypes, open_haplotypes_at, read, store_location
from .results import add_haplotype_array, read_result, write_result
from .writer import CohortStoreWriter

__all__ = [
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "READABLE_VERSIONS",
    "RESULTS_GROUP",
    "CohortStoreWriter",
    "CorruptStoreError",
    "StoreError",
    "StoreTargetError",
    "add_haplotype_array",
    "check_format",
    "default_chunks",
    "is_cohort_store",
    "open_haplotypes",
    "open_haplotypes_at",
    "read",
    "read_result",
    "store_location",
    "subset_haplotypes",
    "verify",
    "write",
    "write_result",
]


def write(adata: ad.AnnData, path: str | os.PathLike) -> None:
    """Write a cohort (its AnnData and haplotype store) as one Zarr store.

    Parameters
    ----------
    adata
        A cohort from :func:`genlm_sc.pp.personal_sequences` or :func:`read`, or any AnnData.
    path
        Target folder, conventionally ending in ``.zarr``. It must be absent, an empty
        folder or a genlm_sc cohort store; an existing store is replaced only once the new
        one is complete.

    Raises
    ------
    StoreTargetError
        When ``path`` is a file, the working directory, or a folder holding anything else
        than a cohort store (nothing is written or removed).
    CorruptStoreError
        When the cohort's own store is damaged (its damage is not copied on).
    """
    target = target_path(path)
    check_target(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_abandoned_siblings(target)
    partial = target.with_name(work_name(f".{target.name}.partial"))
    source = adata.uns.get("gl", {}).get("store")
    adata = adata.copy()
    adata.uns.setdefault("gl", {})
    adata.uns["gl"] = {**adata.uns["gl"], "store": os.fspath(target)}
    try:
        with writing():
            root = zarr.open_group(partial, mode="w", zarr_format=3)
            root.attrs["genlm_sc"] = root_attrs()
        if source:
            ds = open_haplotypes_at(str(source))
            same = list(ds["sample"].values) == list(adata.obs_names) and list(
                ds["gene"].values
            ) == list(adata.var_names)
            if same:
                _copy_haplotypes(str(source), partial)
            else:  # a subset of the cohort: store only what it covers
                _write_dataset(subset_haplotypes(ds, adata.obs_names, adata.var_names), partial)
        _write_anndata(partial, adata)
        with writing():
            zarr.consolidate_metadata(partial)
        seal(partial)
        swap_into_place(partial, target, check=check_target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _OPEN_DATASETS.pop(os.fspath(target), None)
    _OPENED_AS.pop(os.fspath(target), None)


def verify(path: str | os.PathLike) -> None:
    """Read every chunk of the store at ``path`` and check it against its manifest.

    Raises :class:`CorruptStoreError` naming the array and chunk at the first damage found.
    Reading a store checks the chunks it reads; this checks all of them at once.
    """
    store = _resolve_path(target_path(path))
    meta = check_format(store)
    verify_arrays(store, store, required=meta["format_version"] >= 2)
