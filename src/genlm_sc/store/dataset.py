"""Writing a haplotype Dataset and an AnnData into a store; subsets and copies of stores."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import ZstdCodec

from .common import _MEMORY_PREFIX, LEGACY_WORK, RESULTS_GROUP, _quiet_zarr, default_chunks
from .files import existing_store, write_json_atomic
from .integrity import check_format, format_attrs, verify_arrays


def checksummed() -> tuple[ZstdCodec]:
    """The compressors of the arrays genlm_sc writes: zstd with a checksum of each chunk."""
    return (ZstdCodec(level=0, checksum=True),)


@contextmanager
def writing() -> Iterator[None]:
    """Zarr settings for a write: quiet, and every chunk written (even all fill value).

    With every chunk on disk, a missing chunk file can only mean damage.
    """
    with _quiet_zarr(), zarr.config.set({"array.write_empty_chunks": True}):
        yield


def _write_anndata(store: Path, adata: ad.AnnData) -> None:
    with writing(), ad.settings.override(zarr_write_format=3):
        ad.io.write_zarr(os.fspath(Path(store) / "anndata"), adata)


def _group_attrs(ds: xr.Dataset) -> dict[str, Any]:
    earlier = ds.attrs.get("genlm_sc")
    earlier = dict(earlier) if isinstance(earlier, dict) else {}
    earlier.pop("write_id", None)
    return {**ds.attrs, "genlm_sc": {**earlier, **format_attrs()}}


def _write_dataset(ds: xr.Dataset, destination: Path) -> None:
    """Write a haplotype Dataset as the ``haplotypes`` group, chunked like a built store."""
    chunks = default_chunks(ds.sizes["sample"])
    encoding: dict[str, dict[str, Any]] = {
        name: {"compressors": checksummed()} for name in ds.variables
    }
    for name, chunk in chunks.items():
        encoding[name]["chunks"] = tuple(
            min(c, max(n, 1)) for c, n in zip(chunk, ds[name].shape, strict=True)
        )
    ds = ds.assign_attrs(_group_attrs(ds))
    with writing():
        ds.to_zarr(
            destination,
            group="haplotypes",
            mode="a",
            zarr_format=3,
            consolidated=False,
            encoding=encoding,
            write_empty_chunks=True,
        )


def _copy_haplotypes(source: str, destination: Path) -> None:
    """Copy the ``haplotypes`` and ``results`` groups of a store (hard links where the
    filesystem allows), after checking every chunk against its manifest."""
    if source.startswith(_MEMORY_PREFIX):
        from .reading import open_haplotypes_at

        _write_dataset(open_haplotypes_at(source), destination)
        return
    root = existing_store(Path(source))
    required = check_format(root)["format_version"] >= 2

    def skip(folder: str, names: list[str]) -> list[str]:
        top = Path(folder) == root / "haplotypes"
        return [n for n in names if n.startswith(".") or (top and LEGACY_WORK.match(n))]

    for group in ("haplotypes", RESULTS_GROUP):
        src_path = root / group
        if not src_path.exists():
            continue
        verify_arrays(root, src_path, required=required)
        try:
            shutil.copytree(src_path, destination / group, copy_function=os.link, ignore=skip)
        except OSError:
            shutil.rmtree(destination / group, ignore_errors=True)
            shutil.copytree(src_path, destination / group, ignore=skip)
    group_json = destination / "haplotypes" / "zarr.json"
    if group_json.exists():  # a fresh file: the source's stays as it was

        def update(document: dict[str, Any]) -> None:
            attrs = document.setdefault("attributes", {})
            earlier = attrs.get("genlm_sc")
            earlier = dict(earlier) if isinstance(earlier, dict) else {}
            attrs["genlm_sc"] = {**earlier, **format_attrs()}

        write_json_atomic(group_json, update)


def subset_haplotypes(ds: xr.Dataset, samples, genes) -> xr.Dataset:
    """The haplotype Dataset restricted to some samples and genes, in their order.

    Haplotypes that none of the kept people carry are dropped and counts recomputed, so
    the result is what building the subset from scratch would store (haplotypes keep the
    order they had). Loads the selected data into memory.
    """
    row = {s: i for i, s in enumerate(ds["sample"].values)}
    column = {g: i for i, g in enumerate(ds["gene"].values)}
    rows = np.array([row[s] for s in samples], dtype=np.int64)
    kept_genes = np.array([column[g] for g in genes], dtype=np.int64)
    first = ds["gene_first_haplotype"].values[kept_genes]
    n_first = ds["gene_n_haplotypes"].values[kept_genes]
    candidates = np.concatenate(
        [np.arange(f, f + n) for f, n in zip(first, n_first, strict=True)] or [np.zeros(0, int)]
    ).astype(np.int64)
    assignment = ds["sample_haplotype"].values[rows][:, kept_genes, :]
    carried = np.bincount(assignment.ravel(), minlength=ds.sizes["haplotype"])
    kept = candidates[carried[candidates] > 0]
    new_index = np.full(ds.sizes["haplotype"], -1, dtype=np.int64)
    new_index[kept] = np.arange(len(kept))
    gene_map = np.full(ds.sizes["gene"], -1, dtype=np.int64)
    gene_map[kept_genes] = np.arange(len(kept_genes))
    haplotype_gene = gene_map[ds["haplotype_gene"].values[kept]]
    n_per_gene = np.bincount(haplotype_gene, minlength=len(kept_genes))
    segment_owner = new_index[ds["segment_haplotype"].values]
    segments = np.flatnonzero(segment_owner >= 0)
    segments = segments[
        np.lexsort((ds["segment_offset"].values[segments], segment_owner[segments]))
    ]
    variant_gene = gene_map[ds["variant_gene"].values]
    variants = np.flatnonzero(variant_gene >= 0)
    variants = variants[np.argsort(variant_gene[variants], kind="stable")]
    out = xr.Dataset(
        {
            "sequence": (("haplotype", "position"), ds["sequence"].values[kept]),
            "haplotype_gene": ("haplotype", haplotype_gene.astype(np.int32)),
            "haplotype_length": ("haplotype", ds["haplotype_length"].values[kept]),
            "haplotype_count": ("haplotype", carried[kept].astype(np.int32)),
            "segment_haplotype": ("segment", segment_owner[segments].astype(np.int32)),
            "sample_haplotype": (
                ("sample", "gene", "ploidy"),
                new_index[assignment].astype(np.int32),
            ),
            "gene_first_haplotype": ("gene", np.cumsum(n_per_gene) - n_per_gene),
            "gene_n_haplotypes": ("gene", n_per_gene.astype(np.int32)),
            "variant_gene": ("variant", variant_gene[variants].astype(np.int32)),
            "genotype": (
                ("sample", "variant", "ploidy"),
                ds["genotype"].values[rows][:, variants, :],
            ),
        },
        coords={
            "sample": ("sample", ds["sample"].values[rows]),
            "gene": ("gene", ds["gene"].values[kept_genes]),
            "ploidy": ds["ploidy"].values,
        },
        attrs=dict(ds.attrs),
    )
    for name, variable in ds.data_vars.items():
        if name in out:
            continue
        dim = variable.dims[0]
        index = {"segment": segments, "variant": variants, "gene": kept_genes}[dim]
        out[name] = (variable.dims, variable.values[index])
    return out
