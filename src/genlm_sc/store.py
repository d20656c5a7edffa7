"""The on-disk cohort object: AnnData and its haplotype tensors in one Zarr store.

Layout (format ``genlm_sc.cohort``, version :data:`FORMAT_VERSION`; see ``docs/format.md``)::

    cohort.zarr/
      zarr.json        root attributes {"genlm_sc": {"format", "format_version", ...}}
      anndata/         the AnnData (anndata's Zarr encoding)
      haplotypes/      an xarray Dataset: unique haplotypes, person map, variants

A cohort built without a ``store`` path keeps its haplotypes in memory; :func:`write`
puts both parts on disk. Writes go to a temporary sibling folder that is renamed into place
at the end, so an interrupted write leaves the previous version readable.
"""

from __future__ import annotations

import os
import shutil
import uuid
import warnings
from collections.abc import Iterable, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anndata as ad
import numpy as np
import xarray as xr
import zarr

FORMAT_NAME = "genlm_sc.cohort"
FORMAT_VERSION = 1
_MEMORY_PREFIX = "memory://"
_OPEN_DATASETS: dict[str, xr.Dataset] = {}
#: Group of an on-disk store holding per-gene results (``results/<key>/<gene>``).
RESULTS_GROUP = "results"


@contextmanager
def _quiet_zarr():
    """Silence zarr's notes about v3 string dtypes and consolidated metadata."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="zarr")
        warnings.filterwarnings("ignore", message=".*autosharding.*")
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        warnings.filterwarnings("ignore", message=".*not part of the Zarr format 3.*")
        warnings.filterwarnings("ignore", category=FutureWarning, module="anndata")
        warnings.filterwarnings("ignore", category=FutureWarning, module="xarray")
        yield


def _format_attrs() -> dict[str, Any]:
    from ._version import __version__

    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "written_by": __version__}


class _Appender:
    """Append blocks to a Zarr array along one axis, writing whole chunks at a time."""

    def __init__(self, array: zarr.Array, axis: int):
        self.array = array
        self.axis = axis
        self.chunk = array.chunks[axis]
        self.written = 0
        self.pending: list[np.ndarray] = []
        self.n_pending = 0

    def append(self, block: np.ndarray) -> None:
        self.pending.append(block)
        self.n_pending += block.shape[self.axis]
        if self.n_pending >= self.chunk:
            self._flush(final=False)

    def _flush(self, *, final: bool) -> None:
        if not self.pending:
            return
        width = [max(b.shape[d] for b in self.pending) for d in range(self.pending[0].ndim)]
        blocks = [_pad_to(b, width, self.axis, self.array.fill_value) for b in self.pending]
        data = np.concatenate(blocks, axis=self.axis)
        n = data.shape[self.axis] if final else (data.shape[self.axis] // self.chunk) * self.chunk
        head = data[(slice(None),) * self.axis + (slice(0, n),)]
        shape = list(self.array.shape)
        shape[self.axis] = self.written + n
        for d in range(len(shape)):
            if d != self.axis:
                shape[d] = max(shape[d], data.shape[d])
        if tuple(shape) != self.array.shape:
            self.array.resize(tuple(shape))
        index = [slice(0, s) for s in head.shape]
        index[self.axis] = slice(self.written, self.written + n)
        self.array[tuple(index)] = head
        self.written += n
        rest = data[(slice(None),) * self.axis + (slice(n, None),)]
        self.pending = [rest] if rest.shape[self.axis] else []
        self.n_pending = rest.shape[self.axis]

    def close(self) -> None:
        self._flush(final=True)


class _MemoryAppender:
    """Collect blocks in memory; :meth:`close` joins them into one array (``.data``)."""

    def __init__(self, axis: int, fill: Any, dtype: str, empty_shape: tuple[int, ...]):
        self.axis, self.fill, self.dtype, self.empty_shape = axis, fill, dtype, empty_shape
        self.blocks: list[np.ndarray] = []
        self.data: np.ndarray | None = None

    def append(self, block: np.ndarray) -> None:
        self.blocks.append(block)

    def close(self) -> None:
        if not self.blocks:
            self.data = np.full(self.empty_shape, self.fill, dtype=self.dtype)
            return
        width = [max(b.shape[d] for b in self.blocks) for d in range(self.blocks[0].ndim)]
        width[self.axis] = sum(b.shape[self.axis] for b in self.blocks)
        self.data = np.full(width, self.fill, dtype=self.dtype)
        at = 0
        for block in self.blocks:
            index = [slice(0, n) for n in block.shape]
            index[self.axis] = slice(at, at + block.shape[self.axis])
            self.data[tuple(index)] = block
            at += block.shape[self.axis]
        self.blocks = []


def _pad_to(block: np.ndarray, width: list[int], axis: int, fill: Any) -> np.ndarray:
    pad = [(0, 0 if d == axis else width[d] - block.shape[d]) for d in range(block.ndim)]
    if any(p[1] for p in pad):
        return np.pad(block, pad, constant_values=fill)
    return block


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


class CohortStoreWriter:
    """Stream a cohort's haplotype tensors into a new store, then put it in place.

    Parameters
    ----------
    path
        Where the store goes; ``None`` keeps it in memory.
    samples, genes
        Sample ids and gene ids (the ``sample`` and ``gene`` dimensions).
    chunk_haplotypes, chunk_positions, chunk_variants, chunk_genes
        Chunk sizes of the large arrays.
    """

    def __init__(
        self,
        path: str | os.PathLike | None,
        *,
        samples: list[str],
        genes: list[str],
        chunk_haplotypes: int = 256,
        chunk_positions: int = 8192,
        chunk_variants: int = 2048,
        chunk_genes: int = 32,
    ):
        self.final_path = None if path is None else Path(path).absolute()
        self.samples, self.genes = samples, genes
        n_samples = len(samples)
        chunks = default_chunks(
            n_samples,
            haplotypes=chunk_haplotypes,
            positions=chunk_positions,
            variants=chunk_variants,
            genes=chunk_genes,
        )
        big = {  # name: (dims, empty shape, chunks, dtype, fill, axis along which genes append)
            "sequence": (["haplotype", "position"], (0, 0), chunks["sequence"], "uint8", 0, 0),
            "genotype": (
                ["sample", "variant", "ploidy"], (n_samples, 0, 2), chunks["genotype"],
                "int8", -1, 1,
            ),
            "sample_haplotype": (
                ["sample", "gene", "ploidy"], (n_samples, 0, 2), chunks["sample_haplotype"],
                "int32", -1, 1,
            ),
        }  # fmt: skip
        self._dims = {name: spec[0] for name, spec in big.items()}
        if self.final_path is None:
            # In memory the arrays stay numpy: no chunking or encoding to pay for.
            self.location = _MEMORY_PREFIX + uuid.uuid4().hex
            self._store: Any = None
            self._big: dict[str, Any] = {
                name: _MemoryAppender(axis, fill, dtype, shape)
                for name, (_, shape, _, dtype, fill, axis) in big.items()
            }
        else:
            self.final_path.parent.mkdir(parents=True, exist_ok=True)
            self._store = self.final_path.with_name(
                f".{self.final_path.name}.partial-{uuid.uuid4().hex[:8]}"
            )
            self.location = os.fspath(self.final_path)
            with _quiet_zarr():
                root = zarr.open_group(self._store, mode="w", zarr_format=3)
                root.attrs["genlm_sc"] = _format_attrs()
                group = root.create_group("haplotypes")
            self._big = {}
            for name, (dims, shape, chunks, dtype, fill, axis) in big.items():
                array = group.create_array(
                    name,
                    shape=shape,
                    chunks=chunks,
                    dtype=dtype,
                    fill_value=fill,
                    dimension_names=dims,
                    # zarr's scan for all-fill chunks costs more than writing them
                    config={"write_empty_chunks": True},
                )
                self._big[name] = _Appender(array, axis)
        self._n_haplotypes = 0
        self._per_haplotype: dict[str, list[np.ndarray]] = {
            "haplotype_gene": [],
            "haplotype_length": [],
            "haplotype_count": [],
        }
        self._per_segment: dict[str, list[np.ndarray]] = {
            "segment_haplotype": [],
            "segment_offset": [],
            "segment_length": [],
            "segment_reference_start": [],
        }
        self._per_variant: dict[str, list] = {
            "variant_gene": [],
            "variant_position": [],
            "variant_id": [],
            "variant_ref": [],
            "variant_alt": [],
        }
        self._per_gene: dict[str, list] = {"gene_first_haplotype": [], "gene_n_haplotypes": []}
        self._n_genes_added = 0

    def add_gene(self, haplotypes, *, positions, ids, refs, alts, alleles) -> None:
        """Append one gene's haplotypes, person map and variants (genes in order)."""
        g = self._n_genes_added
        n = len(haplotypes.lengths)
        self._big["sequence"].append(haplotypes.sequences)
        ps = self._per_segment
        ps["segment_haplotype"].append(haplotypes.segment_haplotype + self._n_haplotypes)
        ps["segment_offset"].append(haplotypes.segment_offset)
        ps["segment_length"].append(haplotypes.segment_length)
        ps["segment_reference_start"].append(haplotypes.segment_reference)
        assignment = (haplotypes.assignment + self._n_haplotypes)[:, None, :]
        self._big["sample_haplotype"].append(assignment)
        self._big["genotype"].append(np.ascontiguousarray(alleles.transpose(1, 0, 2)))
        self._per_haplotype["haplotype_gene"].append(np.full(n, g, dtype=np.int32))
        self._per_haplotype["haplotype_length"].append(haplotypes.lengths)
        self._per_haplotype["haplotype_count"].append(haplotypes.counts)
        self._per_gene["gene_first_haplotype"].append(self._n_haplotypes)
        self._per_gene["gene_n_haplotypes"].append(n)
        pv = self._per_variant
        pv["variant_gene"].append(np.full(len(positions), g, dtype=np.int32))
        pv["variant_position"].append(np.asarray(positions, dtype=np.int64))
        pv["variant_id"].extend(ids)
        pv["variant_ref"].extend(refs)
        pv["variant_alt"].extend(",".join(a) for a in alts)
        self._n_haplotypes += n
        self._n_genes_added += 1

    def finish(
        self,
        adata: ad.AnnData | None = None,
        *,
        attrs: Mapping | None = None,
        gene_variables: Mapping[str, np.ndarray] | None = None,
    ) -> str:
        """Write the small arrays (and the AnnData), then put the store in place.

        ``gene_variables`` are further per-gene arrays (e.g. ``gene_strand``).

        Returns the store location (a path, or ``memory://...``).
        """
        if self._n_genes_added != len(self.genes):
            raise RuntimeError(f"{self._n_genes_added} of {len(self.genes)} genes were added")
        for appender in self._big.values():
            appender.close()

        def cat(parts, dtype):
            return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)

        ph, pv, pg, ps = self._per_haplotype, self._per_variant, self._per_gene, self._per_segment
        small = xr.Dataset(
            {
                "haplotype_gene": ("haplotype", cat(ph["haplotype_gene"], np.int32)),
                "haplotype_length": ("haplotype", cat(ph["haplotype_length"], np.int32)),
                "haplotype_count": ("haplotype", cat(ph["haplotype_count"], np.int32)),
                "segment_haplotype": ("segment", cat(ps["segment_haplotype"], np.int32)),
                "segment_offset": ("segment", cat(ps["segment_offset"], np.int32)),
                "segment_length": ("segment", cat(ps["segment_length"], np.int32)),
                "segment_reference_start": (
                    "segment",
                    cat(ps["segment_reference_start"], np.int64),
                ),
                "gene_first_haplotype": ("gene", np.asarray(pg["gene_first_haplotype"], np.int64)),
                "gene_n_haplotypes": ("gene", np.asarray(pg["gene_n_haplotypes"], np.int32)),
                "variant_gene": ("variant", cat(pv["variant_gene"], np.int32)),
                "variant_position": ("variant", cat(pv["variant_position"], np.int64)),
                "variant_id": ("variant", np.asarray(pv["variant_id"], dtype=object)),
                "variant_ref": ("variant", np.asarray(pv["variant_ref"], dtype=object)),
                "variant_alt": ("variant", np.asarray(pv["variant_alt"], dtype=object)),
            },
            coords={
                "sample": ("sample", np.asarray(self.samples, dtype=object)),
                "gene": ("gene", np.asarray(self.genes, dtype=object)),
                "ploidy": ("ploidy", np.array([0, 1], dtype=np.int8)),
            },
            attrs={"genlm_sc": {**_format_attrs(), **dict(attrs or {})}},
        )
        for name, values in (gene_variables or {}).items():
            small[name] = ("gene", np.asarray(values))
        if self.final_path is None:
            for name, appender in self._big.items():
                small[name] = (self._dims[name], appender.data)
            _OPEN_DATASETS[self.location] = small
            return self.location
        with _quiet_zarr():
            small.to_zarr(
                self._store, group="haplotypes", mode="a", zarr_format=3, consolidated=False
            )
            if adata is not None:
                _write_anndata(self._store, adata)
            zarr.consolidate_metadata(self._store)
        _swap_into_place(Path(self._store), self.final_path)
        _OPEN_DATASETS.pop(self.location, None)
        return self.location

    def abort(self) -> None:
        """Remove what was written; an existing store at the target is untouched."""
        if self._store is not None:
            shutil.rmtree(self._store, ignore_errors=True)


def _write_anndata(store: Path, adata: ad.AnnData) -> None:
    with ad.settings.override(zarr_write_format=3):
        ad.io.write_zarr(os.fspath(Path(store) / "anndata"), adata)


def _swap_into_place(partial: Path, target: Path) -> None:
    """Rename ``partial`` to ``target``; an old ``target`` is kept until the rename is done."""
    backup = None
    if target.exists():
        backup = target.with_name(f".{target.name}.previous-{uuid.uuid4().hex[:8]}")
        os.rename(target, backup)
    os.rename(partial, target)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)


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
    """The haplotype Dataset of a cohort, lazily (dask arrays) from its Zarr store."""
    return open_haplotypes_at(store_location(adata))


def open_haplotypes_at(location: str) -> xr.Dataset:
    """The haplotype Dataset at a store location (a path or ``memory://...``)."""
    if location in _OPEN_DATASETS:
        return _OPEN_DATASETS[location]
    if location.startswith(_MEMORY_PREFIX):
        raise KeyError(
            f"the in-memory haplotypes {location} are gone (they live only in the Python "
            "session that built them); write cohorts with gl.write to keep them"
        )
    store = _resolve_path(Path(location))
    check_format(store)
    with _quiet_zarr():
        ds = xr.open_zarr(store, group="haplotypes", consolidated=False)
    _OPEN_DATASETS[location] = ds
    return ds


def check_format(path: Path) -> dict:
    """Read and check the format attributes of a store."""
    with _quiet_zarr():
        try:
            root = zarr.open_group(path, mode="r")
        except (FileNotFoundError, zarr.errors.GroupNotFoundError) as err:
            raise FileNotFoundError(f"{path}: no genlm_sc cohort store here") from err
    meta = dict(root.attrs.get("genlm_sc", {}))
    if meta.get("format") != FORMAT_NAME:
        raise ValueError(f"{path}: not a genlm_sc cohort store (attributes: {meta})")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise ValueError(
            f"{path}: written in format version {meta['format_version']}, newer than this "
            f"genlm_sc reads ({FORMAT_VERSION}); upgrade genlm_sc"
        )
    return meta


def _resolve_path(path: Path) -> Path:
    """The store at ``path``, or the previous version left by an interrupted swap."""
    if path.exists():
        return path
    previous = sorted(path.parent.glob(f".{path.name}.previous-*"), key=os.path.getmtime)
    if previous:
        warnings.warn(
            f"{path} is missing but an earlier version was left by an interrupted write; "
            f"reading {previous[-1]}",
            stacklevel=3,
        )
        return previous[-1]
    raise FileNotFoundError(f"{path}: no such cohort store")


def write(adata: ad.AnnData, path: str | os.PathLike) -> None:
    """Write a cohort (its AnnData and haplotype store) as one Zarr store.

    Parameters
    ----------
    adata
        A cohort from :func:`genlm_sc.pp.personal_sequences` or :func:`read`, or any AnnData.
    path
        Target folder, conventionally ending in ``.zarr``. An existing store there is
        replaced only once the new one is complete.
    """
    target = Path(path).absolute()
    partial = target.with_name(f".{target.name}.partial-{uuid.uuid4().hex[:8]}")
    source = adata.uns.get("gl", {}).get("store")
    adata = adata.copy()
    adata.uns.setdefault("gl", {})
    adata.uns["gl"] = {**adata.uns["gl"], "store": os.fspath(target)}
    try:
        with _quiet_zarr():
            root = zarr.open_group(partial, mode="w", zarr_format=3)
            root.attrs["genlm_sc"] = _format_attrs()
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
            zarr.consolidate_metadata(partial)
        _swap_into_place(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _OPEN_DATASETS.pop(os.fspath(target), None)


def _write_dataset(ds: xr.Dataset, destination: Path) -> None:
    """Write a haplotype Dataset as the ``haplotypes`` group, chunked like a built store."""
    encoding = {
        name: {
            "chunks": tuple(min(c, max(n, 1)) for c, n in zip(chunk, ds[name].shape, strict=True))
        }
        for name, chunk in default_chunks(ds.sizes["sample"]).items()
    }
    ds.to_zarr(
        destination,
        group="haplotypes",
        mode="a",
        zarr_format=3,
        consolidated=False,
        encoding=encoding,
    )


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


def _copy_haplotypes(source: str, destination: Path) -> None:
    """Copy the ``haplotypes`` and ``results`` groups of a store (hard links where the
    filesystem allows)."""
    if source.startswith(_MEMORY_PREFIX):
        _write_dataset(open_haplotypes_at(source), destination)
        return
    for group in ("haplotypes", RESULTS_GROUP):
        src_path = _resolve_path(Path(source)) / group
        if not src_path.exists():
            continue
        try:
            shutil.copytree(src_path, destination / group, copy_function=os.link)
        except OSError:
            shutil.rmtree(destination / group, ignore_errors=True)
            shutil.copytree(src_path, destination / group)


def read(path: str | os.PathLike) -> ad.AnnData:
    """Read a cohort written by :func:`write` or :func:`genlm_sc.pp.personal_sequences`.

    The AnnData is read into memory; the haplotype tensors stay on disk and open lazily
    through :func:`genlm_sc.get.haplotype_store`.
    """
    path = _resolve_path(Path(path).absolute())
    check_format(path)
    with _quiet_zarr():
        adata = ad.io.read_zarr(zarr.open_group(path, mode="r")["anndata"])
    adata.uns.setdefault("gl", {})
    has_haplotypes = (path / "haplotypes").exists()
    adata.uns["gl"]["store"] = os.fspath(path) if has_haplotypes else ""
    return adata


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
    array is never held for an on-disk store). On disk the array is written under a
    temporary name and renamed into place at the end, so an interrupted run leaves any
    previous version of ``name`` intact.
    """
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
    group_path = _resolve_path(Path(location)) / "haplotypes"
    partial = f"_partial_{name}_{uuid.uuid4().hex[:8]}"
    with _quiet_zarr():
        group = zarr.open_group(group_path, mode="a", zarr_format=3)
        array = group.create_array(
            partial,
            shape=shape,
            chunks=(max(min(rows_per_chunk, shape[0]), 1), max(shape[1], 1)),
            dtype="float32",
            dimension_names=list(dims),
            attributes=dict(attrs or {}),
            fill_value=np.float32("nan"),
        )
        row = 0
        try:
            for block in blocks:
                block = np.asarray(block, dtype=np.float32)
                array[row : row + len(block)] = block
                row += len(block)
            if row != shape[0]:
                raise ValueError(f"{name}: got {row} rows, expected {shape[0]}")
        except BaseException:
            shutil.rmtree(group_path / partial, ignore_errors=True)
            raise
    target = group_path / name
    backup = group_path / f"_old_{name}_{uuid.uuid4().hex[:8]}" if target.exists() else None
    if backup is not None:
        os.rename(target, backup)
    os.rename(group_path / partial, target)
    if backup is not None:
        shutil.rmtree(backup, ignore_errors=True)
    _OPEN_DATASETS.pop(location, None)


def write_result(adata: ad.AnnData, key: str, name: str, ds: xr.Dataset) -> None:
    """Keep a result Dataset (e.g. one gene's attributions) with ``adata``.

    A cohort whose store is on disk gets it as the Zarr group ``results/<key>/<name>``
    (written under a temporary name and renamed into place, replacing an earlier one);
    anything else keeps it in ``adata.uns[key][name]`` as plain arrays (saved with the
    AnnData). :func:`read_result` gives it back either way.
    """
    location = adata.uns.get("gl", {}).get("store")
    if not location or str(location).startswith(_MEMORY_PREFIX):
        adata.uns.setdefault(key, {})[name] = _dataset_to_dict(ds)
        return
    folder = _resolve_path(Path(location)) / RESULTS_GROUP / key
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / _safe_name(name)
    partial = folder / f"._partial_{uuid.uuid4().hex[:8]}"
    text = [k for k, v in ds.variables.items() if v.dtype.kind == "U"]
    ds = ds.assign({k: ds[k].astype(object) for k in text if k in ds.data_vars})
    ds = ds.assign_coords({k: ds[k].astype(object) for k in text if k in ds.coords})
    try:
        with _quiet_zarr():
            ds.to_zarr(partial, mode="w", zarr_format=3, consolidated=False)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _swap_into_place(partial, target)


def read_result(adata: ad.AnnData, key: str, name: str) -> xr.Dataset:
    """A result Dataset kept by :func:`write_result` (loaded into memory)."""
    if name in adata.uns.get(key, {}):
        return _dataset_from_dict(adata.uns[key][name])
    location = adata.uns.get("gl", {}).get("store")
    if location and not str(location).startswith(_MEMORY_PREFIX):
        path = _resolve_path(Path(location)) / RESULTS_GROUP / key / _safe_name(name)
        if path.exists():
            with _quiet_zarr():
                return xr.open_zarr(path, consolidated=False).load()
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
