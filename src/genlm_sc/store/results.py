"""Arrays and results added to an existing store: embeddings, per-gene results.

Each is written in full under a hidden name, sealed with its manifest, then swapped into
place in one rename, so a reader never sees half of one and a killed run leaves the store
as it was (the hidden leftovers are removed by the next write).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import xarray as xr
import zarr

from .common import (
    _MEMORY_PREFIX,
    _OPEN_DATASETS,
    _OPENED_AS,
    LEGACY_WORK,
    RESULTS_GROUP,
    STAGING,
    _quiet_zarr,
)
from .dataset import checksummed, writing
from .files import (
    existing_store,
    remove_abandoned,
    remove_abandoned_siblings,
    swap_into_place,
    work_name,
)
from .integrity import VerifyingStore, check_format, renew_write_id, seal
from .reading import open_haplotypes_at, store_location


def _check_name(name: str) -> None:
    if not name or "/" in name or name.startswith(".") or name != name.strip():
        raise ValueError(f"{name!r} cannot name a store variable: use letters, digits and _")


def _clean_work(store: Path) -> Path:
    """Remove what interrupted writes left in ``store``; return its staging folder."""
    staging = store / STAGING
    staging.mkdir(exist_ok=True)
    remove_abandoned(staging, r".+?")
    group = store / "haplotypes"
    if group.is_dir():
        for path in group.iterdir():
            if LEGACY_WORK.match(path.name):
                shutil.rmtree(path, ignore_errors=True)
    return staging


def add_haplotype_array(
    adata: ad.AnnData,
    name: str,
    blocks: Iterable[np.ndarray],
    *,
    shape: tuple[int, int],
    dims: tuple[str, str],
    attrs: Mapping[str, Any] | None = None,
    rows_per_chunk: int = 1024,
) -> None:
    """Add (or replace) a float32 ``(haplotype, feature)`` variable of a cohort's store.

    ``blocks`` are consecutive row blocks, written as they arrive (streamed; the full
    array is never held for an on-disk store). On disk the array is written in the store's
    hidden staging folder, sealed with its chunk manifest and swapped into the
    ``haplotypes`` group in one rename, so readers never see it half-written and an
    interrupted run leaves any previous version of ``name`` intact and readable.
    """
    _check_name(name)
    location = store_location(adata)
    if location.startswith(_MEMORY_PREFIX):
        ds = open_haplotypes_at(location)
        data = np.concatenate([np.asarray(b, dtype=np.float32) for b in blocks] or [
            np.zeros((0, shape[1]), np.float32)
        ])  # fmt: skip
        if data.shape != shape:
            raise ValueError(f"{name}: got {data.shape} rows, expected {shape}")
        ds[name] = xr.DataArray(data, dims=dims, attrs=dict(attrs or {}))
        return
    staged = create_staged_array(
        adata, name, shape=shape, dims=dims, attrs=attrs, rows_per_chunk=rows_per_chunk
    )
    try:
        with writing():
            array = zarr.open_array(staged, mode="r+")
            row = 0
            for block in blocks:
                block = np.asarray(block, dtype=np.float32)
                array[row : row + len(block)] = block
                row += len(block)
        if row != shape[0]:
            raise ValueError(f"{name}: got {row} rows, expected {shape[0]}")
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    put_staged_array(adata, name, staged)


def create_staged_array(
    adata: ad.AnnData,
    name: str,
    *,
    shape: tuple[int, int],
    dims: tuple[str, str],
    attrs: Mapping[str, Any] | None = None,
    rows_per_chunk: int = 1024,
) -> Path:
    """A new, empty float32 array in the hidden staging folder of ``adata``'s store.

    Fill it (any process may write whole chunks of rows: ``rows_per_chunk`` each), then
    :func:`put_staged_array` puts it in the store; remove it on failure.
    """
    _check_name(name)
    store = existing_store(Path(store_location(adata)))
    check_format(store)
    staged = _clean_work(store) / work_name(name)
    try:
        with writing():
            zarr.create_array(
                staged,
                shape=shape,
                chunks=(max(min(rows_per_chunk, shape[0]), 1), max(shape[1], 1)),
                dtype="float32",
                dimension_names=list(dims),
                attributes=dict(attrs or {}),
                fill_value=np.float32("nan"),
                compressors=checksummed(),
                zarr_format=3,
            )
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    return staged


def put_staged_array(
    adata: ad.AnnData, name: str, staged: Path, attrs: Mapping[str, Any] | None = None
) -> None:
    """Seal a filled staged array (:func:`create_staged_array`) and swap it into place.

    ``attrs`` replace the array's attributes first (e.g. counts known only at the end).
    """
    location = store_location(adata)
    store = existing_store(Path(location))
    try:
        if attrs is not None:
            with writing():
                zarr.open_array(staged, mode="r+").attrs.put(dict(attrs))
        seal(staged)
        swap_into_place(staged, store / "haplotypes" / name)
    except BaseException:
        shutil.rmtree(staged, ignore_errors=True)
        raise
    _after_change(store, location)


def _after_change(store: Path, location: str | None = None) -> None:
    """Refresh the consolidated metadata and the write id after an in-place change."""
    with writing():
        zarr.consolidate_metadata(store)
    renew_write_id(store)
    if location is not None:
        _OPEN_DATASETS.pop(location, None)
        _OPENED_AS.pop(location, None)


def write_result(adata: ad.AnnData, key: str, name: str, ds: xr.Dataset) -> None:
    """Keep a result Dataset (e.g. one gene's attributions) with ``adata``.

    A cohort whose store is on disk gets it as the Zarr group ``results/<key>/<name>``
    (written under a hidden name, sealed with chunk manifests and swapped into place,
    replacing an earlier one); anything else keeps it in ``adata.uns[key][name]`` as plain
    arrays (saved with the AnnData). :func:`read_result` gives it back either way.
    """
    location = adata.uns.get("gl", {}).get("store")
    if not location or str(location).startswith(_MEMORY_PREFIX):
        adata.uns.setdefault(key, {})[name] = _dataset_to_dict(ds)
        return
    store = existing_store(Path(location))
    check_format(store)
    folder = store / RESULTS_GROUP / key
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _safe_name(name)
    remove_abandoned_siblings(target)
    partial = folder / work_name(f".{target.name}.partial")
    text = [k for k, v in ds.variables.items() if v.dtype.kind == "U"]
    ds = ds.assign({k: ds[k].astype(object) for k in text if k in ds.data_vars})
    ds = ds.assign_coords({k: ds[k].astype(object) for k in text if k in ds.coords})
    try:
        with writing():
            ds.to_zarr(
                partial,
                mode="w",
                zarr_format=3,
                consolidated=False,
                encoding={k: {"compressors": checksummed()} for k in ds.variables},
                write_empty_chunks=True,
            )
        seal(partial)
        swap_into_place(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    renew_write_id(store)


def read_result(adata: ad.AnnData, key: str, name: str) -> xr.Dataset:
    """A result Dataset kept by :func:`write_result` (loaded into memory)."""
    if name in adata.uns.get(key, {}):
        return _dataset_from_dict(adata.uns[key][name])
    location = adata.uns.get("gl", {}).get("store")
    if location and not str(location).startswith(_MEMORY_PREFIX):
        store = existing_store(Path(location))
        path = store / RESULTS_GROUP / key / _safe_name(name)
        if path.exists():
            required = check_format(store)["format_version"] >= 2
            source = VerifyingStore.at(path, name=store, required=required)
            with _quiet_zarr():
                return xr.open_zarr(source, consolidated=False).load()
    raise KeyError(f"no result {key!r} for {name!r}; compute it first")


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in str(name))


def _dataset_to_dict(ds: xr.Dataset) -> dict[str, Any]:
    """A Dataset as nested dicts of arrays that AnnData can write into ``uns``."""

    def variable(v: xr.DataArray | xr.Variable) -> dict[str, Any]:
        return {"dims": np.asarray(v.dims, dtype=str), "data": np.asarray(v.values)}

    return {
        "data_vars": {k: variable(v) for k, v in ds.data_vars.items()},
        "coords": {k: variable(v) for k, v in ds.coords.items()},
        "attrs": dict(ds.attrs),
    }


def _dataset_from_dict(record: Mapping[str, Any]) -> xr.Dataset:
    def variable(v: Mapping[str, Any]) -> tuple[tuple[str, ...], np.ndarray]:
        return tuple(str(d) for d in np.atleast_1d(v["dims"])), np.asarray(v["data"])

    return xr.Dataset(
        {k: variable(v) for k, v in record["data_vars"].items()},
        coords={k: variable(v) for k, v in record["coords"].items()},
        attrs=dict(record.get("attrs", {})),
    )
