"""A gene panel: one observation per gene, with a reference window around it."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Literal

import anndata as ad
import numpy as np
import pandas as pd

from .._provenance import file_record
from ..io.annotation import read_annotation
from ..io.contigs import match_contigs
from ..io.errors import InputFileError
from ..io.fasta import FastaReference

Anchor = Literal["tss", "tes", "center"]
OffContig = Literal["error", "pad", "drop"]


def window_bounds(anchor_position: np.ndarray, strand: np.ndarray, width: int) -> np.ndarray:
    """0-based half-open windows of ``width`` bases with the anchor at index ``width // 2``.

    The index counts in gene orientation: on the minus strand the window is read
    reverse-complemented, so its genomic end is placed ``width // 2`` bases after the anchor.
    """
    anchor_position = np.asarray(anchor_position, dtype=np.int64)
    half = width // 2
    plus_start = anchor_position - half
    minus_start = anchor_position + half + 1 - width
    start = np.where(np.asarray(strand) == "-", minus_start, plus_start)
    return np.stack([start, start + width], axis=1)


def _check_width(width: object) -> int:
    """``width`` as an int: a positive whole number of bases (``4096`` or ``4096.0``)."""
    accepted = "a positive whole number of bases, such as 4096"
    if isinstance(width, bool) or not isinstance(width, int | float | np.integer | np.floating):
        raise TypeError(f"width must be {accepted}; got {width!r} ({type(width).__name__})")
    if not float(width).is_integer() or width <= 0:
        raise ValueError(f"width must be {accepted}; got {width!r}")
    return int(width)


def gene_windows(
    annotation: str | os.PathLike | pd.DataFrame,
    *,
    fasta: str | os.PathLike,
    width: int,
    genes: Iterable[str] | None = None,
    anchor: Anchor = "tss",
    gene_types: Iterable[str] | None = None,
    off_contig: OffContig = "error",
) -> ad.AnnData:
    """Build a gene panel: one observation per gene, with a window of reference around it.

    Parameters
    ----------
    annotation
        GTF, GFF3, BED or TSV gene annotation, or a DataFrame as returned by
        :func:`genlm_sc.io.read_annotation`.
    fasta
        Reference genome (bgzipped and faidx-indexed, or plain). Contig names of the
        annotation are matched to it (``chr20`` and ``20`` are the same contig).
    width
        Window length in bases: a positive whole number (a whole float such as ``4096.0``
        is taken as its int).
    genes
        Gene ids (with or without version) or names to keep, in this order.
    anchor
        What the window is centred on, in gene orientation: the TSS (first transcribed
        base), the TES (last) or the centre of the gene body. The anchor lands at index
        ``width // 2`` of the gene-oriented window sequence.
    gene_types
        Keep only these gene types (e.g. ``["protein_coding"]``).
    off_contig
        What to do with windows that run off a contig end: ``"error"`` (default),
        ``"pad"`` (fill the outside with ``N``) or ``"drop"`` (leave those genes out).

    Returns
    -------
    AnnData with ``n_vars == 0`` and ``obs`` indexed by gene id with columns ``gene_id``,
    ``gene_name``, ``gene_type``, ``chrom`` (named as in the FASTA), ``start``, ``end``
    (the window, 0-based half-open), ``strand``, ``tss``, ``gene_start``, ``gene_end`` and
    ``padded`` (whether the window runs off the contig). Parameters and the FASTA
    fingerprint are in ``uns["gl"]``. Sequences: :func:`genlm_sc.get.sequences`.
    """
    width = _check_width(width)
    table = read_annotation(annotation, gene_types=gene_types, genes=genes)
    source = annotation if not isinstance(annotation, pd.DataFrame) else None
    with FastaReference(fasta) as reference:
        contig_map = match_contigs(table["chrom"].unique(), reference.contigs, path=fasta)
        lengths = reference.lengths
    chrom = table["chrom"].map(contig_map)
    anchors = {
        "tss": table["tss"].to_numpy(),
        "tes": np.where(table["strand"] == "-", table["start"], table["end"] - 1),
        # the same middle base in gene orientation on both strands
        "center": np.where(
            table["strand"] == "-",
            (table["start"].to_numpy() + table["end"].to_numpy()) // 2,
            (table["start"].to_numpy() + table["end"].to_numpy() - 1) // 2,
        ),
    }
    if anchor not in anchors:
        raise ValueError(f"anchor must be one of {list(anchors)}, got {anchor!r}")
    bounds = window_bounds(anchors[anchor], table["strand"].to_numpy(), width)
    contig_length = chrom.map(lengths).to_numpy()
    outside = (bounds[:, 0] < 0) | (bounds[:, 1] > contig_length)
    if outside.any() and off_contig == "error":
        i = int(np.flatnonzero(outside)[0])
        raise InputFileError(
            fasta,
            f"the {width}-bp window of gene {table.index[i]} ({table['gene_name'].iloc[i]}) "
            f"is [{bounds[i, 0]}, {bounds[i, 1]}) but contig {chrom.iloc[i]} has "
            f"{contig_length[i]} bases ({int(outside.sum())} genes affected); pass "
            "off_contig='pad' to fill with N or off_contig='drop' to leave them out",
            record=str(table.index[i]),
        )
    obs = pd.DataFrame(
        {
            "gene_id": table["gene_id"].astype(str),
            "gene_name": table["gene_name"].astype(str),
            "gene_type": table["gene_type"].astype(str),
            "chrom": chrom.astype(str),
            "start": bounds[:, 0],
            "end": bounds[:, 1],
            "strand": table["strand"].astype(str),
            "tss": table["tss"].astype(np.int64),
            "gene_start": table["start"].astype(np.int64),
            "gene_end": table["end"].astype(np.int64),
            "padded": outside,
        },
        index=pd.Index(table.index.astype(str), name=None),
    )
    if off_contig == "drop":
        obs = obs.loc[~outside]
    elif off_contig not in ("error", "pad"):
        raise ValueError(f"off_contig must be 'error', 'pad' or 'drop', got {off_contig!r}")
    if genes is None:
        contig_rank = {c: i for i, c in enumerate(lengths)}
        order = np.lexsort((obs["start"].to_numpy(), obs["chrom"].map(contig_rank).to_numpy()))
        obs = obs.iloc[order]
    panel = ad.AnnData(obs=obs)
    panel.uns["gl"] = {
        "kind": "gene_panel",
        "fasta": file_record(fasta),
        "annotation": file_record(source) if source is not None else "DataFrame",
        "width": int(width),
        "anchor": anchor,
        "off_contig": off_contig,
        "coordinates": "0-based half-open [start, end); anchor at index width // 2 "
        "of the gene-oriented sequence",
        "n_dropped_off_contig": int(outside.sum()) if off_contig == "drop" else 0,
    }
    return panel
