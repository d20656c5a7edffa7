"""The streamed writer of a cohort store: per-gene blocks in, a complete store out."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Mapping
from typing import Any

import anndata as ad
import numpy as np
import xarray as xr
import zarr

from .common import _MEMORY_PREFIX, _OPEN_DATASETS, _OPENED_AS, default_chunks
from .dataset import _write_anndata, checksummed, writing
from .files import check_target, remove_abandoned_siblings, swap_into_place, target_path, work_name
from .integrity import format_attrs, root_attrs, seal


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
        self.final_path = None if path is None else target_path(path)
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
            check_target(self.final_path)  # before hours of work, not after
            self.final_path.parent.mkdir(parents=True, exist_ok=True)
            remove_abandoned_siblings(self.final_path)
            self._store = self.final_path.with_name(work_name(f".{self.final_path.name}.partial"))
            self.location = os.fspath(self.final_path)
            with writing():
                root = zarr.open_group(self._store, mode="w", zarr_format=3)
                root.attrs["genlm_sc"] = root_attrs()
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
                    compressors=checksummed(),
                    # every chunk is written (a missing one is damage); zarr's scan for
                    # all-fill chunks would also cost more than writing them
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
            attrs={"genlm_sc": {**format_attrs(), **dict(attrs or {})}},
        )
        for name, values in (gene_variables or {}).items():
            small[name] = ("gene", np.asarray(values))
        if self.final_path is None:
            for name, appender in self._big.items():
                small[name] = (self._dims[name], appender.data)
            _OPEN_DATASETS[self.location] = small
            return self.location
        with writing():
            small.to_zarr(
                self._store,
                group="haplotypes",
                mode="a",
                zarr_format=3,
                consolidated=False,
                encoding={name: {"compressors": checksummed()} for name in small.variables},
                write_empty_chunks=True,
            )
        if adata is not None:
            _write_anndata(self._store, adata)
        with writing():
            zarr.consolidate_metadata(self._store)
        seal(self._store)
        swap_into_place(self._store, self.final_path, check=check_target)
        _OPEN_DATASETS.pop(self.location, None)
        _OPENED_AS.pop(self.location, None)
        return self.location

    def abort(self) -> None:
        """Remove what was written; an existing store at the target is untouched."""
        if self._store is not None:
            shutil.rmtree(self._store, ignore_errors=True)
            self._store = None
