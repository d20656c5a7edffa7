"""Embedding a cohort's distinct haplotypes as tasks on a ``dask.distributed`` cluster.

The new store variable is created empty in the store's staging folder; each task embeds a
block of rows that is a whole number of its chunks and writes them there, so no two tasks
write one chunk. Workers load the model once and share the on-disk chunk cache
(:mod:`genlm_sc.tl.language_model.chunk_cache`): a chunk one task computed and saved is
not computed again by a later task, and a killed run, called again, computes only the
chunks not saved before.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

#: Rows of a chunk of an embedding variable, and of the block one task writes.
ROWS_PER_TASK = 1024

#: In each worker process: chunk caches opened by earlier tasks.
_LOADED: dict[tuple, Any] = {}

#: Pooled sums of distinct chunks kept across the blocks of one embedding call (then cleared).
CHUNK_CACHE_BYTES = 512 * 2**20


def embed_in_tasks(
    cohort,
    encoder,
    *,
    model: Any,
    encoder_options: dict[str, Any],
    key_added: str,
    wanted: np.ndarray,
    use_earlier: bool,
    pooling: str,
    layer: int,
    batch_size: int,
    record: dict,
    client: Any,
    n_jobs: int | None,
    progress: bool,
) -> None:
    """Embed the rows of ``cohort``'s store in tasks and put the variable in place."""
    from ..._engine import cluster, run_tasks, saved_models, store_on_disk
    from ...store.results import create_staged_array, put_staged_array

    location = store_on_disk(cohort, "embedding")
    saved_models("embedding", model=model)
    n = len(wanted)
    staged = create_staged_array(
        cohort, key_added, shape=(n, encoder.hidden_size),
        dims=("haplotype", f"{key_added}_dim"), rows_per_chunk=ROWS_PER_TASK,
    )  # fmt: skip
    arguments = [
        {
            "location": location, "staged": os.fspath(staged),
            "rows": (start, min(start + ROWS_PER_TASK, n)),
            "wanted": wanted[start : start + ROWS_PER_TASK], "model": os.fspath(model),
            "encoder_options": encoder_options, "key_added": key_added,
            "use_earlier": use_earlier, "pooling": pooling, "layer": layer,
            "batch_size": batch_size,
        }
        for start in range(0, n, ROWS_PER_TASK)
    ]  # fmt: skip
    try:
        with cluster(client, n_jobs) as running:
            counts = run_tasks(
                running, embed_block, arguments, progress=progress, description="embeddings",
                unit="block",
            )  # fmt: skip
    except BaseException:
        import shutil

        shutil.rmtree(staged, ignore_errors=True)
        raise
    record["n_chunks"] = int(sum(c["chunks"] for c in counts))
    record["n_forward_chunks"] = int(sum(c["forward_chunks"] for c in counts))
    put_staged_array(
        cohort, key_added, staged, attrs={k: v for k, v in record.items() if v is not None}
    )


def embed_block(
    *,
    location: str,
    staged: str,
    rows: tuple[int, int],
    wanted: np.ndarray,
    model: str,
    encoder_options: dict[str, Any],
    key_added: str,
    use_earlier: bool,
    pooling: str,
    layer: int,
    batch_size: int,
) -> dict[str, int]:
    """Embed rows ``rows`` of the store at ``location`` into the staged array (a task)."""
    import zarr

    from ..._engine import loaded_once
    from ...models.encoder import load_encoder
    from ...store import open_haplotypes_at
    from ...store.dataset import writing
    from .chunk_cache import ChunkCache

    options = tuple(sorted(encoder_options.items()))
    encoder = loaded_once(model, lambda: load_encoder(model, **encoder_options), "encoder", options)
    cache_key = ("cache", location, model, options, pooling, layer)
    if cache_key not in _LOADED:
        _LOADED[cache_key] = ChunkCache.beside(location, encoder, pooling=pooling, layer=layer)
    ds = open_haplotypes_at(location)
    counted = {"chunks": 0, "forward_chunks": 0}
    start, stop = rows
    block = embed_rows(
        ds, start, stop, wanted=wanted, encoder=encoder, cache=_LOADED[cache_key],
        earlier=ds[key_added] if use_earlier else None, pooling=pooling, layer=layer,
        batch_size=batch_size, counted=counted,
    )  # fmt: skip
    with writing():
        zarr.open_array(staged, mode="r+")[start:stop] = block
    return counted


def embed_rows(
    ds,
    start: int,
    stop: int,
    *,
    wanted: np.ndarray,
    encoder,
    cache: dict,
    earlier,
    pooling: str,
    layer: int,
    batch_size: int,
    counted: dict[str, int],
) -> np.ndarray:
    """Embeddings of haplotypes ``start`` to ``stop - 1`` of a store's Dataset ``ds``.

    Rows where ``wanted`` is false keep ``earlier`` (a stored embedding) or ``NaN``. Chunk
    vectors come from and go to ``cache`` (saved to disk when it is a ``ChunkCache``);
    ``counted`` adds up the chunks seen and computed.
    """
    from .chunk_cache import ChunkCache

    rows = np.flatnonzero(wanted)
    block = np.full((stop - start, encoder.hidden_size), np.nan, dtype=np.float32)
    if earlier is not None:
        block[:] = earlier[start:stop].values
    if not len(rows):
        return block
    lengths = ds["haplotype_length"][start:stop].values
    codes = ds["sequence"][start + rows[0] : start + rows[-1] + 1].values
    windows = [codes[i - rows[0], : lengths[i]].tobytes().decode("ascii") for i in rows]
    if len(cache) > max(CHUNK_CACHE_BYTES // (8 * encoder.hidden_size), 1):
        if isinstance(cache, ChunkCache):
            cache.save()
        cache.clear()
    block[rows] = encoder.embed(
        windows, pooling=pooling, layer=layer, batch_size=batch_size, chunk_cache=cache
    )
    for name in counted:
        counted[name] += encoder.last_counts[name]
    if isinstance(cache, ChunkCache):
        cache.save()  # a killed run keeps what it computed
    return block
