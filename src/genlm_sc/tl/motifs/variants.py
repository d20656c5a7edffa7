"""Motif matches that a cohort's variants make or break, or that cover given positions.

Everything is on the reference forward strand; the scanning and its exact p-values are
:mod:`genlm_sc.tl.motifs.scanner`'s.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import anndata as ad
import numpy as np
import pandas as pd

from ...get import gene_index, haplotype_store, recorded_fasta
from ...io.fasta import FastaReference
from ...pp.haplotypes import reverse_complement_text
from .scanner import (
    SCAN_COLUMNS,
    CompiledMotif,
    check_pvalue,
    compile_motifs,
    encode,
    scan_compiled,
    scan_table,
    scores_at,
)

__all__ = ["motif_matches"]

VARIANT_COLUMNS = (
    "variant_id",
    "position",
    "ref",
    "alt",
    "motif_id",
    "motif_name",
    "strand",
    "start",
    "end",
    "ref_score",
    "alt_score",
    "ref_pvalue",
    "alt_pvalue",
    "effect",
    "ref_sequence",
    "alt_sequence",
)
POSITION_COLUMNS = ("position", *SCAN_COLUMNS)


def motif_matches(
    adata: ad.AnnData,
    *,
    gene: str,
    motifs,
    variants: pd.DataFrame | Iterable[str] | None = None,
    positions: Iterable[int] | None = None,
    flank: int = 30,
    pvalue: float = 1e-4,
    background: Mapping[str, float] | float | None = None,
    pseudocount: float = 0.8,
    fasta: str | os.PathLike | None = None,
    key_added: str = "gl_motifs",
    copy: bool = False,
) -> ad.AnnData | None:
    """Motif matches made or broken by a gene's variants, or covering given positions.

    Everything is on the **reference forward (+) strand**, whatever the gene's strand:
    sequences are read from the FASTA as they are on the ``+`` strand, ``start`` is a 0-based
    reference coordinate, and ``strand`` is the strand of the reference the motif matches
    (``"-"``: the motif's reverse complement is on the ``+`` strand). It is not the gene
    orientation of :func:`genlm_sc.get.sequences`.

    Parameters
    ----------
    adata
        A cohort (:func:`genlm_sc.pp.personal_sequences`,
        :func:`genlm_sc.datasets.example_cohort`).
    gene
        Gene id or unique gene name.
    motifs
        Motifs from :func:`genlm_sc.io.read_motifs` (or a JASPAR/MEME path).
    variants
        Without ``positions``: which of the gene's variants (those of its window in the
        haplotype store) to test; default all. A list of variant ids, or a DataFrame with a
        ``variant_id`` column or else a ``position`` column (0-based, as in the store). A
        requested variant that is not in the gene's window is an error.
    positions
        Instead of variants: 0-based reference coordinates inside the gene's window (e.g.
        attribution hotspots, converted from window indices first); report the reference's
        matches that cover each.
    flank
        Bases of reference scanned on each side of the variant or position. Only matches
        overlapping it are reported, so the results do not change once ``flank`` reaches
        the longest motif's length - 1; a smaller ``flank`` is raised to that.
    pvalue, background, pseudocount
        As in :func:`~genlm_sc.tl.scan_motifs`: a match is a placement with p-value < ``pvalue``.
    fasta
        The reference; default: the FASTA recorded in ``adata.uns["gl"]``.
    key_added
        The table is stored in ``adata.uns[key_added][gene_id]`` (replacing an earlier
        result for the gene), where :func:`genlm_sc.write` and ``write_h5ad`` save it.
    copy
        Work on and return a copy of ``adata``.

    Returns
    -------
    ``None``, or the annotated copy when ``copy=True``. The table
    (:func:`genlm_sc.get.motif_matches`): for variants, one row per (variant, ALT allele, motif
    placement) significant with either allele and overlapping the variant, i.e. including at least
    one base that the ALT allele changes (a placement that only touches unchanged bases scores the
    same with both alleles; so does one whose bases an indel in a repeat leaves as they were, and it
    is left out too). Each ALT of a multi-allelic record is tested on its own, in the reference
    context. Columns:

    ``variant_id``, ``position``, ``ref``, ``alt``
        As in the store (``position`` 0-based; ``alt`` one allele).
    ``motif_id``, ``motif_name``, ``strand``
        The motif and the reference strand it matches.
    ``start``, ``end``
        The placement on the reference, 0-based half-open. A placement that starts before
        the changed bases has the same start with both alleles. For an indel, one starting
        inside or after them is paired with the ALT placement that ends at the same
        reference base (so both share the bases downstream); one with no partner
        (inside deleted bases: REF only; inside inserted bases: ALT only) has NaN score
        and p-value for the other allele, and an ALT-only placement's ``start`` counts the
        ALT allele's bases from its first changed base.
    ``ref_score``, ``alt_score``, ``ref_pvalue``, ``alt_pvalue``
        Log-odds score (bits) and exact p-value with each allele (see
        :func:`~genlm_sc.tl.scan_motifs`).
    ``effect``
        ``"breaks"`` (significant with REF, not with ALT), ``"creates"`` (the reverse),
        ``"weakens"`` / ``"strengthens"`` (significant with both, lower / higher score
        with ALT), ``"unchanged"`` (significant with both, equal scores: the changed base
        is scored the same).
    ``ref_sequence``, ``alt_sequence``
        The placement's bases with each allele, read on the match's strand (``""`` when
        the allele has no such placement).

    For ``positions``, one row per (position, match covering it) with the columns of
    :func:`~genlm_sc.tl.scan_motifs` (coordinates on the reference) after ``position``.

    Variants with symbolic or missing alleles (``<DEL>``, ``*``, ``.``) are skipped, and so
    are records whose REF does not match the FASTA (with a warning).
    """
    if variants is not None and positions is not None:
        raise ValueError("give variants or positions, not both")
    check_pvalue(pvalue)
    if flank < 0:
        raise ValueError(f"flank must be non-negative, got {flank}")
    adata = adata.copy() if copy else adata
    ds = haplotype_store(adata)
    g, _, _ = gene_index(adata, gene)
    gene_id = str(ds["gene"].values[g])
    chrom = str(ds["gene_chrom"].values[g])
    window = (int(ds["gene_window_start"].values[g]), int(ds["gene_window_end"].values[g]))
    compiled = compile_motifs(motifs, background, pseudocount)
    half = max(int(flank), max(c.length for c in compiled) - 1)
    fasta = recorded_fasta(adata) if fasta is None else fasta
    with FastaReference(fasta) as reference:
        if positions is not None:
            table = _position_matches(
                compiled, reference, chrom, window, gene_id, positions, half, pvalue
            )
        else:
            alleles = _gene_alleles(ds, g, gene_id, variants, reference, chrom, half)
            table = _variant_matches(compiled, alleles, pvalue)
    store = adata.uns.get(key_added)
    if not isinstance(store, dict):
        store = adata.uns[key_added] = {}
    store[gene_id] = table
    return adata if copy else None


def _position_matches(
    compiled, reference, chrom, window, gene_id, positions, half, pvalue
) -> pd.DataFrame:
    if isinstance(positions, Iterable):
        positions = list(positions)
    wanted = np.atleast_1d(np.asarray(positions, dtype=np.int64)).ravel()
    outside = wanted[(wanted < window[0]) | (wanted >= window[1])]
    if outside.size:
        raise ValueError(
            f"positions {outside[:10].tolist()} are outside the window [{window[0]}, "
            f"{window[1]}) of gene {gene_id}; positions are 0-based reference coordinates, "
            "not indices into the gene-oriented window sequence"
        )
    pieces = [
        reference.fetch_str(chrom, int(p) - half, int(p) + half + 1, pad=True) for p in wanted
    ]
    # one N between windows: no placement spans two of them
    text = "N".join(pieces).upper()
    m, start, sign, score, p = scan_compiled(compiled, text, pvalue)
    lengths = np.array([c.length for c in compiled], dtype=np.int64)[m]
    table = scan_table(compiled, text, m, start, sign, score, p, lengths)
    width = 2 * half + 2
    which = start // width
    offset = start - which * width
    table["position"] = wanted[which]
    table["start"] = table["position"] - half + offset
    table["end"] = table["start"] + lengths
    covers = (table["start"] <= table["position"]) & (table["position"] < table["end"])
    table = table.loc[covers.to_numpy()]
    table = table.sort_values(["position", "start", "strand", "motif_index"], kind="stable")
    return table[list(POSITION_COLUMNS)].reset_index(drop=True)


@dataclass
class _Alleles:
    """Each tested (variant, ALT) pair, trimmed to the bases it changes, with context."""

    rows: pd.DataFrame  # variant_id, position, ref, alt: one per pair
    changed: np.ndarray  # first changed reference coordinate (p0)
    deleted: np.ndarray  # reference bases replaced (d)
    inserted: np.ndarray  # ALT bases put in their place (k)
    ref_text: list[str]  # reference [p0 - half, p0 + d + half)
    alt_text: list[str]  # the same with the ALT bases written in
    half: int


def _gene_alleles(ds, g, gene_id, variants, reference, chrom, half) -> _Alleles:
    """The gene's variants from the store (optionally selected), one entry per ALT."""
    mask = ds["variant_gene"].values == g
    table = pd.DataFrame(
        {
            "variant_id": ds["variant_id"].values[mask].astype(str),
            "position": ds["variant_position"].values[mask].astype(np.int64),
            "ref": ds["variant_ref"].values[mask].astype(str),
            "alt": ds["variant_alt"].values[mask].astype(str),
        }
    )
    if variants is not None:
        table = table.loc[_selected(table, variants, gene_id)]
    rows, changed, deleted, inserted, ref_text, alt_text = [], [], [], [], [], []
    mismatched = []
    for variant_id, position, ref, alts in table.itertuples(index=False):
        ref = ref.upper()
        if reference.fetch_str(chrom, position, position + len(ref), pad=True) != ref:
            mismatched.append(variant_id)
            continue
        for alt in alts.split(","):
            alt = alt.upper()
            if not alt or not ref or set(alt + ref) - set("ACGTN") or alt == ref:
                continue  # symbolic (<DEL>), spanning deletion (*), missing (.)
            prefix = 0
            while prefix < min(len(ref), len(alt)) and ref[prefix] == alt[prefix]:
                prefix += 1
            suffix = 0
            while (
                suffix < min(len(ref), len(alt)) - prefix
                and ref[len(ref) - 1 - suffix] == alt[len(alt) - 1 - suffix]
            ):
                suffix += 1
            p0 = position + prefix
            d = len(ref) - prefix - suffix
            new = alt[prefix : len(alt) - suffix]
            context = reference.fetch_str(chrom, p0 - half, p0 + d + half, pad=True)
            rows.append((variant_id, position, ref, alt))
            changed.append(p0)
            deleted.append(d)
            inserted.append(len(new))
            ref_text.append(context)
            alt_text.append(context[:half] + new + context[half + d :])
    if mismatched:
        warnings.warn(
            f"{len(mismatched)} variants of gene {gene_id} were skipped: their REF does "
            f"not match the FASTA ({mismatched[:10]})",
            stacklevel=3,
        )
    return _Alleles(
        rows=pd.DataFrame(rows, columns=["variant_id", "position", "ref", "alt"]),
        changed=np.array(changed, dtype=np.int64),
        deleted=np.array(deleted, dtype=np.int64),
        inserted=np.array(inserted, dtype=np.int64),
        ref_text=ref_text,
        alt_text=alt_text,
        half=half,
    )


def _selected(table: pd.DataFrame, variants, gene_id: str) -> np.ndarray:
    """Rows of the gene's variant table named by ``variants`` (ids or positions)."""
    if isinstance(variants, pd.DataFrame):
        if "variant_id" in variants.columns:
            column, wanted = "variant_id", variants["variant_id"].astype(str)
        elif "position" in variants.columns:
            column, wanted = "position", variants["position"].astype(np.int64)
        else:
            raise KeyError("variants needs a 'variant_id' or a 'position' column")
    elif isinstance(variants, str):
        column, wanted = "variant_id", pd.Series([variants])
    else:
        column, wanted = "variant_id", pd.Series([str(v) for v in variants], dtype=object)
    known = set(table[column])
    missing = [w for w in pd.unique(wanted) if w not in known]
    if missing:
        hint = " (positions are 0-based)" if column == "position" else ""
        raise KeyError(
            f"{len(missing)} requested variants are not in the window of gene {gene_id}"
            f"{hint}: {missing[:10]}"
        )
    return table[column].isin(set(wanted)).to_numpy()


def _placements(alleles: _Alleles, length: int) -> dict[str, np.ndarray]:
    """All placements of a motif of ``length`` overlapping each variant, REF paired to ALT.

    With ``p0`` the first changed base, ``d`` REF bases replaced by ``k`` ALT bases, in
    reference coordinates for REF and in ALT coordinates (the left flank shared) for ALT:

    * starts ``p0 - length + 1 .. p0 - 1``: the same start with both alleles;
    * starts ``s >= p0 + max(0, d - k)`` up to ``p0 + d - 1``: REF ``s`` with ALT
      ``s - d + k`` (same end, shared downstream bases); ``min(d, k)`` of them;
    * REF only: ``p0 .. p0 + d - k - 1`` (inside deleted bases) when ``d > k``;
    * ALT only: ``p0 .. p0 + k - d - 1`` (inside inserted bases) when ``k > d``.

    Returns offsets into each allele's text (``-1``: no such placement), the allele
    index and the reported reference start.
    """
    p0, d, k, half = alleles.changed, alleles.deleted, alleles.inserted, alleles.half
    n_left = np.full(p0.size, length - 1)
    n_right = np.minimum(d, k)
    n_ref_only = np.maximum(d - k, 0)
    n_alt_only = np.maximum(k - d, 0)
    counts = np.stack([n_left, n_right, n_ref_only, n_alt_only])  # (4, alleles)
    allele = np.concatenate([np.repeat(np.arange(p0.size), c) for c in counts])
    kind = np.concatenate([np.repeat(np.full(p0.size, i), c) for i, c in enumerate(counts)])
    rank = _ranks(counts)
    q, dd, kk = p0[allele], d[allele], k[allele]
    ref_start = np.select(
        [kind == 0, kind == 1, kind == 2, kind == 3],
        [q - length + 1 + rank, q + np.maximum(0, dd - kk) + rank, q + rank, q + rank],
    )
    alt_start = np.select(
        [kind == 0, kind == 1, kind == 3], [ref_start, ref_start - dd + kk, q + rank], -1
    )
    lo = q - half  # both texts start at this reference coordinate
    return {
        "allele": allele,
        "start": ref_start,
        "ref_offset": np.where(kind == 3, -1, ref_start - lo),
        "alt_offset": np.where(kind == 2, -1, alt_start - lo),
    }


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, ..., c - 1 for every count, in the order of ``counts.ravel()``."""
    flat = counts.ravel()
    total = int(flat.sum())
    starts = np.repeat(np.cumsum(flat) - flat, flat)
    return np.arange(total) - starts


def _variant_matches(
    compiled: list[CompiledMotif], alleles: _Alleles, pvalue: float
) -> pd.DataFrame:
    if not len(alleles.rows):
        return _empty(VARIANT_COLUMNS)
    ref_codes, ref_at = _joined(alleles.ref_text)
    alt_codes, alt_at = _joined(alleles.alt_text)
    by_length: dict[int, dict[str, np.ndarray]] = {}
    parts = []
    for m, motif in enumerate(compiled):
        place = by_length.get(motif.length)
        if place is None:
            place = by_length[motif.length] = _placements(alleles, motif.length)
        has_ref = place["ref_offset"] >= 0
        has_alt = place["alt_offset"] >= 0
        for strand in ("+", "-"):
            ref_score = np.full(place["start"].size, np.nan)
            alt_score, ref_p, alt_p = ref_score.copy(), ref_score.copy(), ref_score.copy()
            at = ref_at[place["allele"][has_ref]] + place["ref_offset"][has_ref]
            ref_score[has_ref], ref_p[has_ref] = scores_at(motif, strand, ref_codes, at)
            at = alt_at[place["allele"][has_alt]] + place["alt_offset"][has_alt]
            alt_score[has_alt], alt_p[has_alt] = scores_at(motif, strand, alt_codes, at)
            hit = (ref_p < pvalue) | (alt_p < pvalue)
            if hit.any():
                parts.append(
                    {
                        "motif": np.full(int(hit.sum()), m),
                        "strand": strand,
                        "allele": place["allele"][hit],
                        "start": place["start"][hit],
                        "ref_offset": place["ref_offset"][hit],
                        "alt_offset": place["alt_offset"][hit],
                        "ref_score": ref_score[hit],
                        "alt_score": alt_score[hit],
                        "ref_pvalue": ref_p[hit],
                        "alt_pvalue": alt_p[hit],
                    }
                )
    if not parts:
        return _empty(VARIANT_COLUMNS)
    hits = {
        key: np.concatenate([np.broadcast_to(p[key], p["motif"].shape) for p in parts])
        for key in parts[0]
    }
    lengths = np.array([c.length for c in compiled], dtype=np.int64)[hits["motif"]]
    table = alleles.rows.iloc[hits["allele"]].reset_index(drop=True)
    table["motif_id"] = [compiled[i].motif_id for i in hits["motif"]]
    table["motif_name"] = [compiled[i].name for i in hits["motif"]]
    table["strand"] = hits["strand"].astype(object)
    table["start"] = hits["start"].astype(np.int64)
    table["end"] = table["start"] + lengths
    for key in ("ref_score", "alt_score", "ref_pvalue", "alt_pvalue"):
        table[key] = hits[key].astype(float)
    table["effect"] = _effects(hits, pvalue)
    for allele, texts in (("ref", alleles.ref_text), ("alt", alleles.alt_text)):
        table[f"{allele}_sequence"] = [
            ""
            if offset < 0
            else (
                texts[a][offset : offset + n]
                if strand == "+"
                else reverse_complement_text(texts[a][offset : offset + n])
            )
            for a, offset, n, strand in zip(
                hits["allele"].tolist(),
                hits[f"{allele}_offset"].tolist(),
                lengths.tolist(),
                hits["strand"].tolist(),
                strict=True,
            )
        ]
    # an indel in a repeat can leave a placement's bases as they were: not affected
    table = table.loc[(table["ref_sequence"] != table["alt_sequence"]).to_numpy()].copy()
    table["_motif"] = hits["motif"][table.index]
    table["_allele"] = hits["allele"][table.index]
    table = table.sort_values(["_allele", "start", "strand", "_motif"], kind="stable")
    return table[list(VARIANT_COLUMNS)].reset_index(drop=True)


def _effects(hits: dict[str, np.ndarray], pvalue: float) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        in_ref = hits["ref_pvalue"] < pvalue
        in_alt = hits["alt_pvalue"] < pvalue
        delta = hits["alt_score"] - hits["ref_score"]
    return np.select(
        [in_ref & ~in_alt, ~in_ref & in_alt, delta < 0, delta > 0],
        ["breaks", "creates", "weakens", "strengthens"],
        "unchanged",
    ).astype(object)


def _joined(texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Codes of texts joined one ``N`` apart, and where each starts."""
    lengths = np.array([len(t) for t in texts], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths + 1)[:-1]])
    return encode("N".join(texts).upper()), starts


def _empty(columns: Sequence[str]) -> pd.DataFrame:
    numeric = {"position", "start", "end"}
    floats = {"score", "pvalue", "ref_score", "alt_score", "ref_pvalue", "alt_pvalue"}
    return pd.DataFrame(
        {
            c: pd.Series(dtype=np.int64 if c in numeric else float if c in floats else object)
            for c in columns
        }
    )
