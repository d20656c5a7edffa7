"""Opening stores: the AnnData, and the haplotype Dataset (cached, reopened when replaced)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import anndata as ad
import xarray as xr
import zarr

from .common import _MEMORY_PREFIX, _OPEN_DATASETS, _OPENED_AS, LEGACY_WORK, _quiet_zarr
from .errors import CorruptStoreError, StoreError
from .files import existing_store
from .integrity import VerifyingStore, check_format, identity, validate_format

#: Kept for code that resolved store paths through this name.
_resolve_path = existing_store


def store_location(adata: ad.AnnData) -> str:
    """Where ``adata``'s haplotype store lives (raises when it has none)."""
    location = adata.uns.get("gl", {}).get("store")
    if not location:
        raise KeyError(
            "this AnnData has no haplotype store: build it with gl.pp.personal_sequences "
            "or read it with gl.read"
        )
    return str(location)


def open_haplotypes(adata: ad.AnnData) -> xr.Dataset:
    """The haplotype Dataset of a cohort, lazily (dask arrays) from its Zarr store.

    The store is used only when it holds the cohort's people and genes: an AnnData whose
    ``uns`` names another store (an ``.h5ad`` moved next to another cohort's store, say)
    is an error rather than a source of someone else's haplotypes.
    """
    location = store_location(adata)
    ds = open_haplotypes_at(location)
    key = (location, id(ds), id(adata.obs_names), id(adata.var_names))
    if key not in _MATCHED:
        _check_matches(adata, ds, location)
        _MATCHED[key] = True
    return ds


#: (store, Dataset, obs_names, var_names) identities already checked to match.
_MATCHED: dict[tuple, bool] = {}


def _check_matches(adata: ad.AnnData, ds: xr.Dataset, location: str) -> None:
    import pandas as pd

    for what, names, stored in (
        ("people", adata.obs_names, ds["sample"].values),
        ("genes", adata.var_names, ds["gene"].values),
    ):
        missing = pd.Index(names).difference(pd.Index([str(s) for s in stored]))
        if len(missing):
            raise StoreError(
                location,
                f"is named in this AnnData's uns['gl']['store'] but does not hold "
                f"{len(missing)} of its {what} (e.g. {list(missing[:3])}): it belongs to "
                "another cohort; read the cohort's own store with gl.read",
            )


def _is_current(location: str, path: Path) -> bool:
    """Whether the cached Dataset of ``location`` was opened from the store now there."""
    opened = _OPENED_AS.get(location)
    if opened is None:
        return False
    try:
        now = identity(path)
    except OSError:
        return False
    if now[1] == opened[1]:
        return True
    if now[0] is not None and now[0] == opened[0]:
        check_format(path)  # same write, root metadata rewritten: still a readable store?
        _OPENED_AS[location] = now
        return True
    return False


def open_haplotypes_at(location: str) -> xr.Dataset:
    """The haplotype Dataset at a store location (a path or ``memory://...``).

    An on-disk store is opened once and cached; the cache is used only while the store's
    write id is unchanged, so a store rewritten since (by this or another process) is
    opened again. Every chunk read is checked against the array's manifest.
    """
    if location.startswith(_MEMORY_PREFIX):
        if location in _OPEN_DATASETS:
            return _OPEN_DATASETS[location]
        raise KeyError(
            f"the in-memory haplotypes {location} are gone (they live only in the Python "
            "session that built them); write cohorts with gl.write to keep them"
        )
    path = Path(location)
    if location in _OPEN_DATASETS:
        if location not in _OPENED_AS or _is_current(location, path):
            return _OPEN_DATASETS[location]
        _OPEN_DATASETS.pop(location, None)
        _OPENED_AS.pop(location, None)
    store = existing_store(path)
    before = identity(store)
    ds = _open_dataset(store)
    _OPEN_DATASETS[location] = ds
    _OPENED_AS[location] = before
    return ds


def _open_dataset(store: Path) -> xr.Dataset:
    meta = check_format(store)
    version = meta["format_version"]
    group = store / "haplotypes"
    if not group.is_dir():
        raise CorruptStoreError(
            store,
            "has no haplotypes group (it was written from an AnnData without a haplotype "
            "store); build the haplotypes with gl.pp.personal_sequences",
            record="group haplotypes",
        )
    # arrays left half-written by an earlier genlm_sc are not part of the store
    legacy = [p.name for p in group.iterdir() if LEGACY_WORK.match(p.name)]
    source = VerifyingStore.at(store, required=version >= 2)
    with _quiet_zarr():
        try:
            ds = xr.open_zarr(
                source, group="haplotypes", consolidated=False, drop_variables=legacy or None
            )
        except StoreError:
            raise
        except (ValueError, KeyError, TypeError, json.JSONDecodeError) as err:
            raise CorruptStoreError(
                store,
                f"cannot be opened ({err}); the store is damaged: rebuild it or restore it "
                "from a copy",
                record="group haplotypes",
            ) from err
    if version >= 2 or "genlm_sc" in ds.attrs:
        validate_format(ds.attrs.get("genlm_sc"), store, "haplotypes group")
    return ds


def read(path: str | os.PathLike) -> ad.AnnData:
    """Read a cohort written by :func:`write` or :func:`genlm_sc.pp.personal_sequences`.

    The AnnData is read into memory (each chunk checked against its manifest); the
    haplotype tensors stay on disk and open lazily through
    :func:`genlm_sc.get.haplotype_store`.
    """
    return _read_anndata(path, ad.io.read_zarr)


def read_annotations(path: str | os.PathLike) -> ad.AnnData:
    """A cohort's people, genes and ``uns`` without its matrices (``X``, layers, ``obsm``,
    ...): what a worker needs to find haplotypes and variants in the store, at a size that
    does not grow with expression data."""

    def annotations(group: zarr.Group) -> ad.AnnData:
        parts = {k: ad.io.read_elem(group[k]) for k in ("obs", "var", "uns") if k in group}
        return ad.AnnData(**parts)

    return _read_anndata(path, annotations)


def _read_anndata(path: str | os.PathLike, read_group) -> ad.AnnData:
    path = existing_store(Path(os.path.abspath(os.fspath(path))))
    version = check_format(path)["format_version"]
    source = VerifyingStore.at(path, required=version >= 2)
    with _quiet_zarr():
        try:
            group = zarr.open_group(source, mode="r", use_consolidated=False)["anndata"]
        except KeyError as err:
            raise CorruptStoreError(
                path,
                "has no anndata group; the store is damaged: rebuild it or restore it from a copy",
                record="group anndata",
            ) from err
        adata = read_group(group)
    adata.uns.setdefault("gl", {})
    has_haplotypes = (path / "haplotypes").exists()
    adata.uns["gl"]["store"] = os.fspath(path) if has_haplotypes else ""
    return adata
