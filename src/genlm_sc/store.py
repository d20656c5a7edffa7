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
from collections.abc import Mapping
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
_MEMORY_STORES: dict[str, zarr.storage.MemoryStore] = {}
_OPEN_DATASETS: dict[str, xr.Dataset] = {}


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
    from . import __version__

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
        head = np.take(data, np.arange(n), axis=self.axis)
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
        rest = np.take(data, np.arange(n, data.shape[self.axis]), axis=self.axis)
        self.pending = [rest] if rest.shape[self.axis] else []
        self.n_pending = rest.shape[self.axis]

    def close(self) -> None:
        self._flush(final=True)


def _pad_to(block: np.ndarray, width: list[int], axis: int, fill: Any) -> np.ndarray:
    pad = [(0, 0 if d == axis else width[d] - block.shape[d]) for d in range(block.ndim)]
    if any(p[1] for p in pad):
        return np.pad(block, pad, constant_values=fill)
    return block


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
        if self.final_path is None:
            self.location = _MEMORY_PREFIX + uuid.uuid4().hex
            self._store: Any = zarr.storage.MemoryStore()
        else:
            self.final_path.parent.mkdir(parents=True, exist_ok=True)
            self._store = self.final_path.with_name(
                f".{self.final_path.name}.partial-{uuid.uuid4().hex[:8]}"
            )
            self.location = os.fspath(self.final_path)
        self.samples, self.genes = samples, genes
        with _quiet_zarr():
            self.root = zarr.open_group(self._store, mode="w", zarr_format=3)
            self.root.attrs["genlm_sc"] = _format_attrs()
            group = self.root.create_group("haplotypes")
        n_samples = len(samples)

        # In memory, compression costs time and saves nothing worth having.
        compressors = None if self.final_path is None else "auto"

        def create(name, shape, chunks, dtype, fill, dims):
            return group.create_array(
                name,
                shape=shape,
                chunks=chunks,
                dtype=dtype,
                fill_value=fill,
                dimension_names=dims,
                compressors=compressors,
                # zarr's scan for all-fill chunks costs more than writing them
                config={"write_empty_chunks": True},
            )

        ch, cp = chunk_haplotypes, chunk_positions
        self._sequence = _Appender(
            create("sequence", (0, 0), (ch, cp), "uint8", 0, ["haplotype", "position"]), 0
        )
        self._genotype = _Appender(
            create(
                "genotype",
                (n_samples, 0, 2),
                (min(n_samples, 4096) or 1, chunk_variants, 2),
                "int8",
                -1,
                ["sample", "variant", "ploidy"],
            ),
            1,
        )
        self._assignment = _Appender(
            create(
                "sample_haplotype",
                (n_samples, 0, 2),
                (min(n_samples, 4096) or 1, chunk_genes, 2),
                "int32",
                -1,
                ["sample", "gene", "ploidy"],
            ),
            1,
        )
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
        self._sequence.append(haplotypes.sequences)
        ps = self._per_segment
        ps["segment_haplotype"].append(haplotypes.segment_haplotype + self._n_haplotypes)
        ps["segment_offset"].append(haplotypes.segment_offset)
        ps["segment_length"].append(haplotypes.segment_length)
        ps["segment_reference_start"].append(haplotypes.segment_reference)
        self._assignment.append((haplotypes.assignment + self._n_haplotypes)[:, None, :])
        self._genotype.append(np.ascontiguousarray(alleles.transpose(1, 0, 2)))
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
        for appender in (self._sequence, self._genotype, self._assignment):
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
        with _quiet_zarr():
            small.to_zarr(
                self._store, group="haplotypes", mode="a", zarr_format=3, consolidated=False
            )
            if adata is not None:
                _write_anndata(self._store, adata)
            zarr.consolidate_metadata(self._store)
        if self.final_path is None:
            _MEMORY_STORES[self.location] = self._store
            return self.location
        _swap_into_place(Path(self._store), self.final_path)
        _OPEN_DATASETS.pop(self.location, None)
        return self.location

    def abort(self) -> None:
        """Remove what was written; an existing store at the target is untouched."""
        if self.final_path is not None:
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
    location = store_location(adata)
    if location in _OPEN_DATASETS:
        return _OPEN_DATASETS[location]
    if location.startswith(_MEMORY_PREFIX):
        if location not in _MEMORY_STORES:
            raise KeyError(
                f"the in-memory store {location} is gone (it lives only in the session that "
                "built it); write cohorts with gl.write to keep them"
            )
        store: Any = _MEMORY_STORES[location]
    else:
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
    previous = sorted(path.parent.glob(f".{path.name}.previous-*"))
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
                _copy_haplotypes(str(source), partial)
            _write_anndata(partial, adata)
            zarr.consolidate_metadata(partial)
        _swap_into_place(partial, target)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _OPEN_DATASETS.pop(os.fspath(target), None)


def _copy_haplotypes(source: str, destination: Path) -> None:
    """Copy the ``haplotypes`` group of a store (hard links where the filesystem allows)."""
    if source.startswith(_MEMORY_PREFIX):
        memory = _MEMORY_STORES[source]
        src = zarr.open_group(memory, mode="r")
        dst = zarr.open_group(destination, mode="a")
        _copy_group(src["haplotypes"], dst.require_group("haplotypes"))
        return
    src_path = _resolve_path(Path(source)) / "haplotypes"
    try:
        shutil.copytree(src_path, destination / "haplotypes", copy_function=os.link)
    except OSError:
        shutil.rmtree(destination / "haplotypes", ignore_errors=True)
        shutil.copytree(src_path, destination / "haplotypes")


def _copy_group(src: zarr.Group, dst: zarr.Group) -> None:
    dst.attrs.update(dict(src.attrs))
    for name, array in src.arrays():
        out = dst.create_array(
            name,
            shape=array.shape,
            chunks=array.chunks,
            dtype=array.dtype,
            fill_value=array.fill_value,
            dimension_names=array.metadata.dimension_names,
        )
        out.attrs.update(dict(array.attrs))
        if array.size:
            out[...] = array[...]


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
