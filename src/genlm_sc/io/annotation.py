"""Read a gene annotation (GTF, GFF3, BED or TSV) into one table with one row per gene.

Every reader returns the same layout (see :data:`ANNOTATIONCOLUMNS`): 0-based, half-open
coordinates ``[start, end)`` on the contig, strand ``'+'`` or ``'-'`` and ``tss``, the 0-based
coordinate of the first transcribed base (``start`` on ``'+'``, ``end - 1`` on ``'-'``).
"""

import difflib
import os
import re
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputFileError
from .files import (
    as_int64,
    existing_file,
    numbered_lines,
    read_errors,
    row_record,
)
from .gene_records import (
    COLUMN_ALIASES,
    SHOWN,
    WHERE,
    is_int,
    is_skippable,
    read_bed,
    read_gff,
    read_tsv,
    shown,
    table_from_frame,
)

__all__ = ["ANNOTATION_COLUMNS", "read_annotation"]

#: The columns of the table returned by :func:`read_annotation`, in order.
ANNOTATION_COLUMNS = (
    "gene_id",
    "gene_name",
    "gene_type",
    "chrom",
    "start",
    "end",
    "strand",
    "tss",
)

_SUFFIX_FORMATS = {
    ".gtf": "gtf",
    ".gff3": "gff3",
    ".gff": "gff",
    ".bed": "bed",
    ".tsv": "tsv",
    ".txt": "tsv",
}


# --------------------------------------------------------------------------------------
# Public entry point
# --------------------------------------------------------------------------------------


def read_annotation(
    source: str | os.PathLike[str] | pd.DataFrame,
    *,
    gene_types: Iterable[str] | None = None,
    genes: Iterable[str] | None = None,
) -> pd.DataFrame:
    """Read a gene annotation into one row per gene.

    Parameters
    ----------
    source
        A GTF, GFF3, BED or headed TSV file (each optionally gzip-compressed), or a
        :class:`pandas.DataFrame` already in the output layout. The format is taken from the
        file name (``.gtf``, ``.gff3``, ``.gff``, ``.bed``, ``.tsv``, ``.txt``, each optionally
        followed by ``.gz``) and, where the name leaves it open, from the content.

        * GTF / GFF3 are read with :mod:`pyranges`. Rows whose feature is ``gene`` are used
          (in GFF3 also ``ncRNA_gene`` and ``pseudogene``); a file without gene rows has its
          genes built from the rows of each ``gene_id`` (smallest start, largest end). The
          gene id is the ``gene_id`` attribute (GFF3: else ``ID`` without a ``gene:``
          prefix); the name is ``gene_name`` (else ``Name``, else the id); the type is
          ``gene_type`` (else ``gene_biotype``, else ``biotype``, else ``""``).
        * BED is headerless, 0-based. Two layouts, told apart by the 4th column: if it holds
          strands, ``chrom, start, end, strand, gene_id[, gene_name[, gene_type]]`` (the
          GTEx / GENCODE gene-model BED); otherwise BED6 ``chrom, start, end, name, score,
          strand`` with the name taken as gene id.
        * TSV has a header naming its columns; 0-based ``start``/``start0``, ``end``,
          ``chrom``, ``strand``, ``gene_id`` are required, ``gene_name``, ``gene_type`` and
          ``tss``/``tss0`` are optional (other aliases, e.g. ``chr``, ``biotype``, are
          accepted). A given ``tss`` is checked against the strand and coordinates.
    gene_types
        Keep only genes of these types (e.g. ``["protein_coding"]``). A type that no gene
        has is an error.
    genes
        Keep only these genes, in this order. Each entry is a gene id (with or without its
        version suffix, e.g. ``ENSG00000088832`` or ``ENSG00000088832.10``) or a gene name.
        An entry that matches nothing, or a name shared by several genes, is an error.

    Returns
    -------
    pandas.DataFrame
        One row per gene, indexed by ``gene_id`` (unique strings, index named ``"gene_id"``),
        with the columns :data:`ANNOTATION_COLUMNS`: ``gene_id``, ``gene_name``,
        ``gene_type``, ``chrom`` (as written in the file), ``start``, ``end`` (int64, 0-based
        half-open), ``strand`` (``'+'`` or ``'-'``) and ``tss`` (int64, 0-based). Rows are in
        file order, or in the order of ``genes``.

    Raises
    ------
    InputFileError
        For a missing, empty, truncated or corrupt file, a malformed line, a bad coordinate
        (negative, or ``start >= end``), a strand other than ``+``/``-``, duplicate gene ids,
        a ``tss`` that disagrees with the coordinates, or an unknown or ambiguous gene.

    Examples
    --------
    >>> path = "gencode.v19.genes.v6p.hg19.bed.gz"
    >>> genes = read_annotation(path, genes=["FKBP1A"])  # doctest: +SKIP
    >>> genes.loc["ENSG00000088832.10", ["strand", "tss"]].tolist()  # doctest: +SKIP
    ['-', 1373805]
    """
    if isinstance(source, pd.DataFrame):
        path = None
        table = table_from_frame(source)
    else:
        path = existing_file(source)
        table = _read_file(path)
    everything = _finish(table, path)
    table = everything
    if gene_types is not None:
        table = _keep_gene_types(table, gene_types, path)
    if genes is not None:
        table = _select_genes(table, genes, path, everything=everything)
    return table


# --------------------------------------------------------------------------------------
# Format detection
# --------------------------------------------------------------------------------------


def _read_file(path: Path) -> pd.DataFrame:
    """Detect the format of ``path`` and read it into the gene layout (not yet validated)."""
    with read_errors(path):
        fmt = _detect_format(path)
        if fmt in ("gtf", "gff3"):
            return read_gff(path, fmt)
        if fmt == "bed":
            return read_bed(path)
        return read_tsv(path)


def _strip_compression(path: Path) -> list[str]:
    suffixes = [suffix.lower() for suffix in path.suffixes]
    if suffixes and suffixes[-1] in (".gz", ".bgz"):
        suffixes = suffixes[:-1]
    return suffixes


def _detect_format(path: Path) -> str:
    """Return ``"gtf"``, ``"gff3"``, ``"bed"`` or ``"tsv"`` from the name and the first lines."""
    suffixes = _strip_compression(path)
    by_name = _SUFFIX_FORMATS.get(suffixes[-1] if suffixes else "")
    head = _head_lines(path, 50)
    if not any(line.strip() for line in head):
        raise InputFileError(path, "the file is empty")
    if by_name in ("gtf", "gff3"):
        return by_name
    by_content = _sniff(head)
    if by_name == "gff":
        return by_content if by_content in ("gtf", "gff3") else "gff3"
    if by_name == "bed" and by_content not in ("tsv", "bed"):
        return "bed"
    return by_content


def _head_lines(path: Path, count: int) -> list[str]:
    lines = []
    for _, line in numbered_lines(path):
        lines.append(line)
        if len(lines) >= count:
            break
    return lines


def _looks_like_header(fields: list[str]) -> bool:
    first = fields[0].strip().lower().lstrip("#")
    return len(fields) >= 3 and first in COLUMN_ALIASES["chrom"] and not is_int(fields[1])


def _sniff(head: list[str]) -> str:
    """Guess the format from the first lines of a file."""
    if any(line.startswith("##gff-version 3") for line in head):
        return "gff3"
    for line in head:
        if is_skippable(line):
            continue
        fields = line.split("\t")
        if _looks_like_header(fields):
            return "tsv"
        if line.startswith("#"):
            continue
        if len(fields) >= 9 and is_int(fields[3]) and is_int(fields[4]):
            attributes = fields[8]
            gtf_like = re.search(r'\w+ "', attributes) or "=" not in attributes
            return "gtf" if gtf_like else "gff3"
        if len(fields) >= 3 and is_int(fields[1]) and is_int(fields[2]):
            return "bed"
        return "tsv"
    return "tsv"


# --------------------------------------------------------------------------------------
# GTF / GFF3 (pyranges)
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# BED and TSV
# --------------------------------------------------------------------------------------


# --------------------------------------------------------------------------------------
# Validation and the final layout
# --------------------------------------------------------------------------------------


def _finish(table: pd.DataFrame, path: Path | None) -> pd.DataFrame:
    """Validate a raw gene table and return it in the output layout."""
    table = _drop_pseudoautosomal_copies(table, path)
    where = table[WHERE].reset_index(drop=True)
    table = table.reset_index(drop=True)
    gene_id = _text_column(table, "gene_id", where, path, required=True)
    chrom = _text_column(table, "chrom", where, path, required=True)
    strand = _text_column(table, "strand", where, path, required=True)
    start = as_int64(table["start"], what="start", where=where, path=path)
    end = as_int64(table["end"], what="end", where=where, path=path)
    _check_coordinates(start, end, where, path)
    _check_strand(strand, where, path)
    _check_unique(gene_id, where, path)
    tss = pd.Series(np.where(strand == "+", start, end - 1), dtype="int64")
    if "tss" in table.columns:
        _check_tss(table["tss"], tss, where, path)
    name = _optional_text(table, "gene_name", default=gene_id)
    gene_type = _optional_text(table, "gene_type", default=pd.Series("", index=table.index))
    out = pd.DataFrame(
        {
            "gene_id": gene_id,
            "gene_name": name,
            "gene_type": gene_type,
            "chrom": chrom,
            "start": start,
            "end": end,
            "strand": strand,
            "tss": tss,
        }
    )
    out.index = pd.Index(gene_id.to_numpy(dtype=object), name="gene_id")
    return out


def _drop_pseudoautosomal_copies(table: pd.DataFrame, path: Path | None) -> pd.DataFrame:
    """Keep the chrX copy of genes annotated on both chrX and chrY (GENCODE's PAR genes)."""
    chrom = table["chrom"].astype(str)
    ids = table["gene_id"].astype(str)
    on_x = set(ids[chrom.isin(["chrX", "X"])])
    copies = (chrom.isin(["chrY", "Y"]) & ids.isin(on_x)).to_numpy()
    if copies.any():
        warnings.warn(
            f"{path or 'annotation'}: {int(copies.sum())} gene ids are on both chrX and chrY "
            "(pseudoautosomal regions); keeping their chrX copy",
            stacklevel=4,
        )
        table = table.loc[~copies]
    return table


def _text_column(
    table: pd.DataFrame, name: str, where: pd.Series, path: Path | None, *, required: bool
) -> pd.Series:
    values = table[name].where(table[name].notna(), "").astype(str)
    missing = values == ""
    if required and missing.any():
        row = int(np.flatnonzero(missing.to_numpy())[0])
        raise InputFileError(path, f"empty {name}", record=row_record(where, row))
    return values.astype(object)


def _optional_text(table: pd.DataFrame, name: str, *, default: pd.Series) -> pd.Series:
    if name not in table.columns:
        return default.astype(object)
    values = table[name].where(table[name].notna(), "").astype(str)
    return values.where(values != "", default).astype(object)


def _check_coordinates(
    start: pd.Series, end: pd.Series, where: pd.Series, path: Path | None
) -> None:
    negative = start < 0
    if negative.any():
        row = int(np.flatnonzero(negative.to_numpy())[0])
        raise InputFileError(
            path, f"negative 0-based start {start.iloc[row]}", record=row_record(where, row)
        )
    empty = start >= end
    if empty.any():
        row = int(np.flatnonzero(empty.to_numpy())[0])
        raise InputFileError(
            path,
            f"start {start.iloc[row]} is not before end {end.iloc[row]} "
            "(coordinates are 0-based, half-open)",
            record=row_record(where, row),
        )


def _check_strand(strand: pd.Series, where: pd.Series, path: Path | None) -> None:
    bad = ~strand.isin(["+", "-"])
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputFileError(
            path,
            f"strand {strand.iloc[row]!r}: need '+' or '-' to place the TSS",
            record=row_record(where, row),
        )


def _check_unique(gene_id: pd.Series, where: pd.Series, path: Path | None) -> None:
    doubled = gene_id.duplicated(keep=False)
    if not doubled.any():
        return
    ids = pd.unique(gene_id[doubled])
    places = [row_record(where, row) for row in np.flatnonzero((gene_id == ids[0]).to_numpy())]
    raise InputFileError(
        path,
        f"{len(ids)} duplicate gene id(s): {shown(ids)} ({ids[0]} at {', '.join(places)}); "
        "gene ids must be unique (pseudo-autosomal genes on chrX and chrY are a common cause)",
        record=places[-1],
    )


def _check_tss(given: pd.Series, expected: pd.Series, where: pd.Series, path: Path | None) -> None:
    given = as_int64(given, what="tss", where=where, path=path)
    wrong = given != expected
    if not wrong.any():
        return
    row = int(np.flatnonzero(wrong.to_numpy())[0])
    hint = ""
    if ((given - expected)[wrong] == 1).all():
        hint = "; the tss column looks 1-based, it should be 0-based"
    raise InputFileError(
        path,
        f"tss {given.iloc[row]} disagrees with strand and coordinates, which give "
        f"{expected.iloc[row]} (start on '+', end - 1 on '-'); "
        f"{int(wrong.sum())} row(s) disagree{hint}",
        record=row_record(where, row),
    )


# --------------------------------------------------------------------------------------
# Selection
# --------------------------------------------------------------------------------------


def _keep_gene_types(
    table: pd.DataFrame, gene_types: Iterable[str], path: Path | None
) -> pd.DataFrame:
    wanted = [gene_types] if isinstance(gene_types, str) else list(gene_types)
    present = set(table["gene_type"])
    unknown = [t for t in wanted if t not in present]
    if unknown:
        raise InputFileError(
            path,
            f"no gene of type {', '.join(map(repr, unknown))}; "
            f"types present: {', '.join(sorted(present)) or 'none'}",
        )
    return table[table["gene_type"].isin(wanted)]


_VERSION_SUFFIX = r"^(ENS[A-Z]*\d+)\.\d+(?=(?:_PAR_Y)?$)"


def _is_ensembl_id(text: str) -> bool:
    return re.fullmatch(r"ENS[A-Z]*\d+(\.\d+)?(_PAR_Y)?", text) is not None


def _strip_version(gene_id: str) -> str:
    """``ENSG00000088832.10`` -> ``ENSG00000088832`` (other ids are returned unchanged)."""
    return re.sub(_VERSION_SUFFIX, r"\1", gene_id)


def _select_genes(
    table: pd.DataFrame, genes: Iterable[str], path: Path | None, *, everything: pd.DataFrame
) -> pd.DataFrame:
    """Rows of ``table`` for the given ids or names, in order (each gene once)."""
    wanted = [genes] if isinstance(genes, str) else [str(g) for g in genes]
    ids = table["gene_id"]
    by_id = _positions(ids, set(wanted))
    other_versions = {_strip_version(q) for q in wanted if q not in by_id and _is_ensembl_id(q)}
    by_bare = _positions_by_bare_id(ids, other_versions) if other_versions else {}
    by_name = _positions(table["gene_name"], set(wanted))
    chosen: list[int] = []
    unknown: list[str] = []
    for query in wanted:
        matches = by_id.get(query) or by_bare.get(_strip_version(query)) or by_name.get(query)
        if not matches:
            unknown.append(query)
        elif len(matches) > 1:
            raise InputFileError(
                path,
                f"{query!r} matches {len(matches)} genes: {shown(ids.iloc[matches])}; "
                "give a gene id",
                record=f"gene {query}",
            )
        else:
            chosen.append(matches[0])
    if unknown:
        raise InputFileError(path, _unknown_message(unknown, table, everything))
    return table.iloc[list(dict.fromkeys(chosen))]


def _positions(keys: pd.Series, wanted: set[str]) -> dict[str, list[int]]:
    """``{key: row positions holding it}`` for the wanted keys that occur."""
    found: dict[str, list[int]] = {}
    for position in np.flatnonzero(keys.isin(wanted).to_numpy()):
        found.setdefault(keys.iat[position], []).append(int(position))
    return found


def _positions_by_bare_id(ids: pd.Series, bare_wanted: set[str]) -> dict[str, list[int]]:
    """Like :func:`_positions`, keyed by the ids without their version suffix."""
    prefixes = ids.str.split(".", n=1).str[0]
    found: dict[str, list[int]] = {}
    candidates = prefixes.isin({bare.partition(".")[0] for bare in bare_wanted})
    for position in np.flatnonzero(candidates.to_numpy()):
        bare = _strip_version(ids.iat[position])
        if bare in bare_wanted:
            found.setdefault(bare, []).append(int(position))
    return found


def _unknown_message(unknown: list[str], table: pd.DataFrame, everything: pd.DataFrame) -> str:
    known = set(everything["gene_id"]) | set(everything["gene_name"])
    known |= set(_positions_by_bare_id(everything["gene_id"], set(map(_strip_version, unknown))))
    names = set(table["gene_name"])
    parts = []
    for query in unknown[:SHOWN]:
        if query in known or _strip_version(query) in known:
            parts.append(f"{query!r} (excluded by gene_types)")
            continue
        close = difflib.get_close_matches(query, _candidates(query, names), n=1, cutoff=0.8)
        parts.append(f"{query!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    more = f" ... ({len(unknown)} in all)" if len(unknown) > SHOWN else ""
    return f"unknown gene(s): {', '.join(parts)}{more}"


def _candidates(query: str, names: set[str]) -> list[str]:
    """Names worth comparing with ``query`` for a suggestion: same first letter, similar length."""
    first = query[:1].upper()
    return sorted(
        name for name in names if name[:1].upper() == first and abs(len(name) - len(query)) <= 3
    )
