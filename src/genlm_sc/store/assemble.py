"""Putting part stores (one per gene group, built in parallel) together into one store.

Each part is a complete cohort store of some consecutive genes. The large arrays of the new
store are filled by tasks that each own whole chunks (a chunk-aligned block of rows along
the axis genes append to), reading the rows they own from whichever parts hold them; the
small arrays are joined here. The result is the store a single process would have written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import zarr

from .dataset import writing
from .writer import CohortStoreWriter

#: Bytes of uncompressed rows a copy task writes at most (whole chunks, at least one).
COPY_BYTES = 128 * 2**20

_SMALL = (
    "haplotype_gene", "haplotype_length", "haplotype_count", "segment_haplotype",
    "segment_offset", "segment_length", "segment_reference_start", "gene_first_haplotype",
    "gene_n_haplotypes", "variant_gene", "variant_position", "variant_id", "variant_ref",
    "variant_alt",
)  # fmt: skip
#: Which per-part count each index-valued variable is shifted by.
_SHIFT = {
    "haplotype_gene": "gene",
    "segment_haplotype": "haplotype",
    "gene_first_haplotype": "haplotype",
    "variant_gene": "gene",
    "sample_haplotype": "haplotype",
}


def assemble_parts(writer: CohortStoreWriter, parts: list[Path], run_copies) -> None:
    """Fill ``writer`` (a new on-disk store, nothing added yet) from ``parts``, in order.

    ``run_copies(function, arguments)`` runs the copy tasks (on a cluster or in this
    process). Afterwards :meth:`CohortStoreWriter.finish` completes the store as usual.
    """
    if writer._store is None:
        raise ValueError("parts are assembled into a store on disk")
    groups = [zarr.open_group(os.fspath(p / "haplotypes"), mode="r") for p in parts]
    sizes = {
        "gene": [g["gene_n_haplotypes"].shape[0] for g in groups],
        "haplotype": [g["haplotype_length"].shape[0] for g in groups],
        "variant": [g["variant_position"].shape[0] for g in groups],
    }
    offsets = {name: np.concatenate([[0], np.cumsum(n)[:-1]]) for name, n in sizes.items()}
    tasks = []
    for name, appender in writer._big.items():
        array, axis = appender.array, appender.axis
        lengths = [g[name].shape[axis] for g in groups]
        shape = list(array.shape)
        shape[axis] = int(sum(lengths))
        for d in range(len(shape)):
            if d != axis:
                shape[d] = max([shape[d], *(g[name].shape[d] for g in groups)])
        with writing():
            array.resize(tuple(shape))
        shift = _SHIFT.get(name)
        sources = [
            (os.fspath(p), int(start), int(n), int(offsets[shift][i]) if shift else 0)
            for i, (p, start, n) in enumerate(
                zip(parts, np.concatenate([[0], np.cumsum(lengths)[:-1]]), lengths, strict=True)
            )
        ]
        row_bytes = array.dtype.itemsize * int(np.prod(shape)) // max(shape[axis], 1)
        step = appender.chunk * max(1, COPY_BYTES // max(row_bytes * appender.chunk, 1))
        for first in range(0, shape[axis], step):
            last = min(first + step, shape[axis])
            tasks.append(
                {
                    "store": os.fspath(writer._store),
                    "name": name,
                    "axis": axis,
                    "rows": (first, last),
                    "sources": [s for s in sources if s[1] < last and first < s[1] + s[2]],
                }
            )
        appender.written = shape[axis]
    run_copies(copy_rows, tasks)
    for name in _SMALL:
        shift = _SHIFT.get(name)
        values = [g[name][:] for g in groups]
        if shift:
            values = [v + offsets[shift][i] for i, v in enumerate(values)]
        target = {
            "haplotype": writer._per_haplotype,
            "segment": writer._per_segment,
            "variant": writer._per_variant,
            "gene": writer._per_gene,
        }[name.split("_")[0]]
        if name in ("variant_id", "variant_ref", "variant_alt"):
            target[name] = [str(x) for v in values for x in v]
        else:
            target[name] = values
    writer._per_gene["gene_first_haplotype"] = list(
        np.concatenate(writer._per_gene["gene_first_haplotype"] or [np.zeros(0, np.int64)])
    )
    writer._per_gene["gene_n_haplotypes"] = list(
        np.concatenate(writer._per_gene["gene_n_haplotypes"] or [np.zeros(0, np.int32)])
    )
    writer._n_genes_added = int(sum(sizes["gene"]))
    writer._n_haplotypes = int(sum(sizes["haplotype"]))


def copy_rows(
    store: str,
    name: str,
    axis: int,
    rows: tuple[int, int],
    sources: list[tuple[str, int, int, int]],
) -> None:
    """Write rows ``rows`` (along ``axis``) of array ``name`` of ``store`` from parts.

    ``sources`` are ``(part store, first row, rows, shift)``: the part's rows of this array
    begin at ``first row`` of the whole; ``shift`` is added to its values that are not the
    fill value (indices into a dimension the parts split).
    """
    target = zarr.open_array(os.fspath(Path(store, "haplotypes", name)), mode="r+")
    first, last = rows
    shape = list(target.shape)
    shape[axis] = last - first
    block = np.full(shape, target.fill_value, dtype=target.dtype)
    for part, start, n, shift in sources:
        source = zarr.open_array(os.fspath(Path(part, "haplotypes", name)), mode="r")
        lo, hi = max(first, start), min(last, start + n)
        index: list[Any] = [slice(None)] * source.ndim
        index[axis] = slice(lo - start, hi - start)
        data = source[tuple(index)]
        if shift:
            data = np.where(data >= 0, data + shift, data).astype(target.dtype)
        into: list[Any] = [slice(0, s) for s in data.shape]
        into[axis] = slice(lo - first, hi - first)
        block[tuple(into)] = data
    where: list[Any] = [slice(None)] * target.ndim
    where[axis] = slice(first, last)
    with writing():
        target[tuple(where)] = block
