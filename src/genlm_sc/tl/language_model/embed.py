"""Embeddings of gene windows, sequence panels and every distinct haplotype of a cohort."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import anndata as ad
import numpy as np

from ..._engine import is_distributed
from ..._settings import show_progress
from ...get import is_cohort
from .embed_tasks import embed_rows

__all__ = ["embed"]


def embed(
    adata: ad.AnnData,
    *,
    model: Any,
    key_added: str = "X_gl",
    pooling: Literal["mean", "cls"] = "mean",
    layer: int = -1,
    batch_size: int = 16,
    device: str = "auto",
    precision: str = "auto",
    max_length: int | None = None,
    genes: Sequence[str] | None = None,
    trust_remote_code: bool = False,
    progress: bool = True,
    client: Any = None,
    n_jobs: int | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Embed sequences with a DNA language model.

    Parameters
    ----------
    adata
        A gene panel (:func:`genlm_sc.pp.gene_windows`) or a sequence panel
        (:func:`genlm_sc.pp.sequence_panel`): every observation's window is embedded into
        ``obsm[key_added]``. Or a cohort (:func:`genlm_sc.pp.personal_sequences`): every
        distinct haplotype in its store is embedded once and written to the store as the
        variable ``key_added`` ``(haplotype, <key_added>_dim)``; read a person-level view
        of one gene with :func:`genlm_sc.get.gene_view`.
    model
        A local checkpoint directory (ours from :func:`genlm_sc.tl.pretrain`, or a
        DNABERT-style k-mer, Nucleotide Transformer-style or DNABERT-2-style BPE BERT-family
        model with its tokenizer), a ``(model, tokenizer)`` pair, or a
        :class:`~genlm_sc.models.SequenceEncoder`.
    key_added
        Where the embeddings go.
    pooling
        ``"mean"`` over sequence tokens or ``"cls"``. Windows longer than the model's context
        are cut into chunks and pooled over all of them (:mod:`genlm_sc.models.encoder`).
    layer
        Hidden-state layer to pool (``-1``: the last; ``0``: the token embeddings).
    batch_size
        Chunks per forward pass.
    device, precision
        ``"auto"`` picks CUDA/MPS/CPU, and bf16 where the hardware computes it natively
        (GPUs, CPUs with AMX or AVX-512 BF16); ``"fp32"``, ``"bf16"``, ``"fp16"`` force one.
    max_length
        Tokens per chunk (default: the model's context).
    genes
        For a cohort: embed only the haplotypes of these genes (ids or names); the rows of
        other genes keep an earlier embedding of the same width under ``key_added``, else
        are ``NaN``. For a cohort on disk, chunk embeddings are also kept in a cache next to
        the store (:mod:`genlm_sc.tl.language_model.chunk_cache`), so embedding more genes,
        a larger cohort's store in the same folder, or re-running a killed call computes
        only chunks not seen before (``uns["gl"]["embeddings"][key_added]`` records
        ``n_chunks``, ``n_forward_chunks`` and ``n_cached_chunks_before``).
    trust_remote_code
        Let a checkpoint whose ``config.json`` names code of its own (``auto_map``, as
        DNABERT-2 and other custom architectures do) run that code. Off by default: such a
        checkpoint is refused until you have read its code and pass ``True``.
    progress
        Show a progress bar.
    client
        For a cohort on disk: a :class:`distributed.Client` whose workers embed blocks of
        distinct haplotypes (each loads ``model``, which must then be a checkpoint
        directory, and writes whole chunks of the new variable; all share the chunk cache).
    n_jobs
        For a cohort on disk: embed on a local cluster of this many worker processes (one
        thread each), made for the call; ignored when ``client`` is given.
    copy
        Return a modified copy instead of writing into ``adata``. For a cohort the
        embeddings are written to its store either way.

    Returns
    -------
    ``None``, or the copy when ``copy=True``. Parameters are recorded in
    ``uns["gl"]["embeddings"][key_added]`` (and, for a cohort, in the store variable's
    attributes).
    """
    from ...models.encoder import load_encoder

    adata = adata.copy() if copy else adata
    encoder = load_encoder(
        model, device=device, precision=precision, max_length=max_length,
        trust_remote_code=trust_remote_code,
    )  # fmt: skip
    record = {**encoder.describe(), "pooling": pooling, "layer": layer}
    gl_uns = adata.uns.setdefault("gl", {})
    if is_cohort(adata):
        record["n_forward_sequences"] = _embed_cohort(
            adata, encoder, key_added=key_added, pooling=pooling, layer=layer,
            batch_size=batch_size, progress=progress, record=record, genes=genes,
            distributed={"client": client, "n_jobs": n_jobs, "model": model,
                         "encoder_options": {"device": device, "precision": precision,
                                             "max_length": max_length,
                                             "trust_remote_code": trust_remote_code}},
        )  # fmt: skip
    else:
        from ...get import sequences

        windows = sequences(adata).reindex(adata.obs_names)
        adata.obsm[key_added] = encoder.embed(
            list(windows), pooling=pooling, layer=layer, batch_size=batch_size, progress=progress
        )
    gl_uns.setdefault("embeddings", {})[key_added] = {
        k: v for k, v in record.items() if v is not None
    }
    return adata if copy else None


def _embed_cohort(
    cohort: ad.AnnData,
    encoder,
    *,
    key_added: str,
    pooling: str,
    layer: int,
    batch_size: int,
    progress: bool,
    record: dict,
    genes: Sequence[str] | None,
    distributed: dict[str, Any],
    rows_per_block: int = 256,
) -> int:
    """Embed each distinct haplotype of the store once, streaming blocks into it."""
    from ...get import gene_index
    from ...store import add_haplotype_array, open_haplotypes, store_location
    from .chunk_cache import ChunkCache

    ds = open_haplotypes(cohort)
    n = int(ds.sizes["haplotype"])
    wanted = np.ones(n, dtype=bool)
    if genes is not None:
        wanted[:] = False
        for gene in genes:
            _, lo, hi = gene_index(cohort, gene)
            wanted[lo:hi] = True
        record["genes"] = list(genes)

    location = store_location(cohort)
    cache: dict = {}
    if not location.startswith("memory://"):
        cache = ChunkCache.beside(location, encoder, pooling=pooling, layer=layer)
        record["n_cached_chunks_before"] = cache.loaded
    counted = {"chunks": 0, "forward_chunks": 0}
    earlier = None  # keep the stored embeddings of genes not asked for
    if genes is not None and key_added in ds and ds[key_added].shape == (n, encoder.hidden_size):
        earlier = ds[key_added]
    if is_distributed(distributed["client"], distributed["n_jobs"]):
        from .embed_tasks import embed_in_tasks

        embed_in_tasks(
            cohort, encoder, key_added=key_added, wanted=wanted,
            use_earlier=earlier is not None, pooling=pooling, layer=layer,
            batch_size=batch_size, record=record, progress=progress, **distributed,
        )  # fmt: skip
        return int(wanted.sum())

    def blocks():
        from tqdm.auto import tqdm

        starts = range(0, n, rows_per_block)
        busy = sum(bool(wanted[s : s + rows_per_block].any()) for s in starts)
        done = tqdm(
            total=busy, disable=not show_progress(progress), desc="haplotypes", unit="block"
        )
        for start in starts:
            stop = min(start + rows_per_block, n)
            block = embed_rows(
                ds, start, stop, wanted=wanted[start:stop], encoder=encoder, cache=cache,
                earlier=earlier, pooling=pooling, layer=layer, batch_size=batch_size,
                counted=counted,
            )  # fmt: skip
            if wanted[start:stop].any():
                done.update()
            yield block
        done.close()

    generated = blocks()
    add_haplotype_array(
        cohort,
        key_added,
        _counting(generated, counted, record),
        shape=(n, encoder.hidden_size),
        dims=("haplotype", f"{key_added}_dim"),
        attrs={k: v for k, v in record.items() if v is not None},
    )
    return int(wanted.sum())


def _counting(blocks, counted: dict[str, int], record: dict):
    """Pass ``blocks`` on; when they are done, record the chunk counts in ``record``."""
    yield from blocks
    record["n_chunks"] = counted["chunks"]
    record["n_forward_chunks"] = counted["forward_chunks"]
