"""Attention maps of a transformer DNA language model, mapped from tokens to bases."""

from __future__ import annotations

from typing import Any

import anndata as ad
import numpy as np
import torch
import xarray as xr

from ..._devices import resolve_device
from ...get import gene_index, gene_name, haplotype_store, is_cohort
from ...models.chunking import context_length
from ...models.token_spans import token_base_spans
from .attribute import _describe, _haplotypes_of, gene_window
from .scorer_loading import load_masked_lm

__all__ = ["attention", "base_attention"]


def attention(
    adata: ad.AnnData,
    *,
    gene: str,
    model: Any,
    sample: str | None = None,
    haplotype: int = 0,
    region: tuple[int, int] | None = None,
    layers: list[int] | None = None,
    device: str = "auto",
    key_added: str = "gl_attention",
    copy: bool = False,
) -> ad.AnnData | None:
    """Attention of every layer and head of a transformer over a gene's window, per base.

    The window's bases (the reference, or one haplotype of one person) within ``region``
    are run through the model as one chunk, and each head's token × token attention is
    mapped to bases (:func:`base_attention`): a query base takes the mean attention row of
    the tokens that cover it, and a key token's attention is spread evenly over the bases
    it covers (a 6-mer's over six bases). Attention to special tokens (``[CLS]``,
    ``[SEP]``) has no base; it is kept as ``special``, so each query base's attention to
    bases and ``special`` sums to 1.

    Parameters
    ----------
    adata
        A cohort (:func:`genlm_sc.pp.personal_sequences`) or a gene / sequence panel.
    gene
        Gene id or unique gene name (a panel: an ``obs`` name).
    model
        A checkpoint folder of a transformer masked LM with its tokenizer (BERT-family:
        DNABERT, Nucleotide Transformer, GROVER, DNABERT-2, or one from
        :func:`genlm_sc.tl.pretrain` with a BERT model), or a ``(model, tokenizer)`` pair.
        Models without attention layers (the default dilated-convolution model, GPN's
        ConvNet) are an error.
    sample, haplotype
        A cohort's person and which of their two haplotypes (``0`` or ``1``, as phased) to
        run; ``None``: the reference window.
    region
        ``(start, end)``, 0-based half-open reference coordinates: the bases run (a
        haplotype: from the first to the last of its bases copied from there, insertions
        between included). Default: the whole window. Its tokens, with the special
        tokens, must fit in the model's context.
    layers
        Layers kept (0-based; default all). The result holds ``layers × heads × n²``
        float32 values for ``n`` bases.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    key_added
        Where the result is stored: in the cohort's Zarr store as the group
        ``<key_added>/<gene>`` when it lives on disk, else in ``adata.uns[key_added][gene]``
        (read it back with :func:`genlm_sc.get.attention`).
    copy
        Work on and return a copy of ``adata`` (a cohort's on-disk store is written
        either way).

    Returns
    -------
    ``None``, or the annotated copy when ``copy=True``. The result is an
    :class:`xarray.Dataset` with dimensions ``layer``, ``head``, ``query`` and ``key``
    (the bases run, in gene orientation) and variables ``attention`` (layer, head, query,
    key), ``special`` (layer, head, query), ``position`` (query; the reference coordinate of
    each base, ``-1`` for a base an insertion added), ``observed`` (query; the base, as
    an ASCII code) and ``variant`` (query; whether the base differs from the reference:
    an ALT allele of a haplotype, an inserted base or the two bases a deletion joins, or
    for the reference window a site where the cohort has a variant).
    """
    adata = adata.copy() if copy else adata
    window = gene_window(adata, gene)
    network, tokenizer = _load(model)
    label = "reference"
    if sample is None:
        sequence, positions = window.sequence, window.positions
    else:
        if not is_cohort(adata):
            raise ValueError("sample= needs a cohort (gl.pp.personal_sequences)")
        if haplotype not in (0, 1):
            raise ValueError(f"haplotype must be 0 or 1, not {haplotype!r}")
        found, carried = _haplotypes_of(adata, window.gene, [sample])
        label = list(found)[int(carried.values[0, haplotype]) - 1]
        sequence, positions, _ = found[label]
    keep = np.arange(len(sequence))
    if region is not None:
        inside = np.flatnonzero((positions >= region[0]) & (positions < region[1]))
        if not inside.size:
            raise ValueError(f"region {region} has no base of {window.gene}'s window")
        keep = np.arange(inside.min(), inside.max() + 1)
    sequence, positions = sequence[keep[0] : keep[-1] + 1], np.asarray(positions)[keep]
    weights, special = _attention_of(network, tokenizer, sequence, device=device)
    if layers is not None:
        weights, special = weights[layers], special[layers]
    observed = np.frombuffer(sequence.upper().encode("ascii"), dtype=np.uint8)
    ds = xr.Dataset(
        {
            "attention": (("layer", "head", "query", "key"), weights.astype(np.float32)),
            "special": (("layer", "head", "query"), special.astype(np.float32)),
            "position": ("query", positions.astype(np.int64)),
            "observed": ("query", observed),
            "variant": ("query", _variant_bases(adata, window, sequence, positions, label)),
        },
        coords={
            "layer": np.arange(weights.shape[0]) if layers is None else np.asarray(layers),
            "head": np.arange(weights.shape[1]),
            "query": np.arange(len(sequence)),
            "key": np.arange(len(sequence)),
        },
        attrs={
            "gene": window.gene, "gene_name": gene_name(adata, window.gene),
            "chrom": window.chrom, "strand": window.strand, "sequence": label,
            "sample": "" if sample is None else str(sample), "model": _describe(model),
            "region": "" if region is None else f"{int(region[0])}-{int(region[1])}",
        },
    )  # fmt: skip
    from ...store import write_result

    write_result(adata, key_added, window.gene, ds)
    return adata if copy else None


def base_attention(
    weights: np.ndarray, spans: np.ndarray, n_bases: int, *, special: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Token × token attention as base × base attention.

    Parameters
    ----------
    weights
        ``(..., T, T)`` attention over all ``T`` tokens of the input, special ones included.
    spans
        ``(t, 2)`` base span of each non-special token, in order
        (:func:`genlm_sc.models.token_base_spans`).
    n_bases
        Bases of the sequence.
    special
        ``(T,)`` boolean, the special tokens.

    Returns
    -------
    ``(..., n_bases, n_bases)`` attention (query base's mean over the tokens covering it;
    a key token's weight spread evenly over its bases) and ``(..., n_bases)`` attention
    of each query base to the special tokens.
    """
    ordinary = np.flatnonzero(~special)
    if len(ordinary) != len(spans):
        raise ValueError(f"{len(spans)} token spans for {len(ordinary)} ordinary tokens")
    spread = np.zeros((len(ordinary), n_bases))  # key token → bases, rows sum to 1
    cover = np.zeros((n_bases, len(ordinary)))  # query base → mean of its tokens
    for t, (start, end) in enumerate(spans):
        spread[t, start:end] = 1.0 / max(end - start, 1)
        cover[start:end, t] = 1.0
    covered = cover.sum(1, keepdims=True)
    if (covered == 0).any():
        missing = int(np.flatnonzero(covered[:, 0] == 0)[0])
        raise ValueError(f"base {missing} is covered by no token")
    cover /= covered
    among = weights[..., ordinary, :]
    to_bases = cover @ among[..., :, ordinary] @ spread
    to_special = cover @ among[..., :, np.flatnonzero(special)].sum(-1, keepdims=True)
    return to_bases, to_special[..., 0]


def _load(model: Any) -> tuple[Any, Any]:
    if isinstance(model, tuple) and len(model) == 2:
        return model
    return load_masked_lm(model)


@torch.inference_mode()
def _attention_of(network: Any, tokenizer: Any, sequence: str, *, device: str):
    """``(layers, heads, n, n)`` base attention and ``(layers, heads, n)`` to specials."""
    encoded = tokenizer(sequence, return_special_tokens_mask=True, return_tensors="pt")
    limit = context_length(network, tokenizer)
    if encoded["input_ids"].shape[1] > limit:
        raise ValueError(
            f"{len(sequence):,} bases make {encoded['input_ids'].shape[1]:,} tokens, more than "
            f"the model's context of {limit:,}: give a smaller region="
        )
    resolved = resolve_device(device)
    # only eager attention returns its weights; the caller's choice is restored after
    previous = getattr(getattr(network, "config", None), "_attn_implementation", None)
    switch = previous not in (None, "eager") and hasattr(network, "set_attn_implementation")
    if switch:
        network.set_attn_implementation("eager")
    try:
        network.to(resolved).eval()
        outputs = network(
            input_ids=encoded["input_ids"].to(resolved),
            attention_mask=encoded["attention_mask"].to(resolved),
            output_attentions=True,
        )
    finally:
        if switch:
            network.set_attn_implementation(previous)
    found = getattr(outputs, "attentions", None)
    if not found:
        raise ValueError(
            f"{type(network).__name__} returns no attention weights: it has no attention "
            "layers (e.g. a dilated-convolution model)"
        )
    weights = torch.stack([a[0].float() for a in found]).cpu().numpy()
    special = encoded["special_tokens_mask"][0].numpy().astype(bool)
    spans = token_base_spans(tokenizer, sequence)
    return base_attention(weights, spans, len(sequence), special=special)


def _variant_bases(adata, window, sequence: str, positions: np.ndarray, label: str):
    """Whether each base differs from the reference (a haplotype), or for the reference
    window, whether the cohort has a variant there."""
    if label != "reference":
        reference = window.sequence
        columns = window.columns(positions)
        out = columns < 0
        inside = ~out
        ref = np.frombuffer(reference.upper().encode("ascii"), dtype=np.uint8)[columns[inside]]
        own = np.frombuffer(sequence.upper().encode("ascii"), dtype=np.uint8)[inside]
        out[inside] = ref != own
        # a deletion joins two bases whose reference coordinates are not neighbours
        joined = np.flatnonzero(inside[:-1] & inside[1:] & (np.abs(np.diff(positions)) > 1))
        out[joined] = out[joined + 1] = True
        return out
    if not is_cohort(adata):
        return np.zeros(len(sequence), dtype=bool)
    store = haplotype_store(adata)
    g, _, _ = gene_index(adata, window.gene)
    sites = store["variant_position"].values[store["variant_gene"].values == g]
    return np.isin(positions, sites)
