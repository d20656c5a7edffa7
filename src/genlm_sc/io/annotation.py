"""Read a gene annotation (GTF, GFF3, BED or TSV) into one table with one row per gene.

Every reader returns the same layout (see :data:`ANNOTATION_COLUMNS`): 0-based, half-open
coordinates ``[start, end)`` on the contig, strand ``'+'`` or ``'-'`` and ``tss``, the 0-based
coordinate of the first transcribed base (``start`` on ``'+'``, ``end - 1`` on ``'-'``).
"""

from __future__ import annotations

import contextlib
import difflib
import gzip
import io
import os
import re
import warnings
import zlib
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd

from .errors import InputFileError
from .files import (
    as_int64,
    existing_file,
    is_gzip,
    numbered_lines,
    open_text,
    read_errors,
    row_record,
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

# A column holding, for each row, where it came from, for errors: a line number (int) or a
# description such as "gene ENSG...".
_WHERE = "_where"

_GFF_GENE_FEATURES = {"gtf": ("gene",), "gff3": ("gene", "ncRNA_gene", "pseudogene")}

_SUFFIX_FORMATS = {
    ".gtf": "gtf",
    ".gff3": "gff3",
    ".gff": "gff",
    ".bed": "bed",
    ".tsv": "tsv",
    ".txt": "tsv",
}

# Header names accepted for each output column (compared in lower case, without a leading '#').
_COLUMN_ALIASES = {
    "chrom": ("chrom", "chr", "chromosome", "seqname", "seqnames", "contig"),
    "start": ("start", "start0", "chromstart"),
    "end": ("end", "chromend"),
    "strand": ("strand",),
    "gene_id": ("gene_id", "geneid", "ensembl_gene_id", "id"),
    "gene_name": ("gene_name", "genename", "gene_symbol", "symbol", "name"),
    "gene_type": ("gene_type", "gene_biotype", "biotype", "type"),
    "tss": ("tss", "tss0"),
}
_REQUIRED_COLUMNS = ("chrom", "start", "end", "strand", "gene_id")
_SHOWN = 10  # how many offending ids an error message lists


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
        table = _table_from_frame(source)
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
            return _read_gff(path, fmt)
        if fmt == "bed":
            return _read_bed(path)
        return _read_tsv(path)


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


def _is_int(text: str) -> bool:
    return re.fullmatch(r"[+-]?\d+", text.strip()) is not None


def _is_skippable(line: str) -> bool:
    """Blank lines, ``##`` directives and UCSC ``track``/``browser`` lines."""
    stripped = line.strip()
    return not stripped or stripped.startswith(("##", "track", "browser"))


def _looks_like_header(fields: list[str]) -> bool:
    first = fields[0].strip().lower().lstrip("#")
    return len(fields) >= 3 and first in _COLUMN_ALIASES["chrom"] and not _is_int(fields[1])


def _sniff(head: list[str]) -> str:
    """Guess the format from the first lines of a file."""
    if any(line.startswith("##gff-version 3") for line in head):
        return "gff3"
    for line in head:
        if _is_skippable(line):
            continue
        fields = line.split("\t")
        if _looks_like_header(fields):
            return "tsv"
        if line.startswith("#"):
            continue
        if len(fields) >= 9 and _is_int(fields[3]) and _is_int(fields[4]):
            attributes = fields[8]
            gtf_like = re.search(r'\w+ "', attributes) or "=" not in attributes
            return "gtf" if gtf_like else "gff3"
        if len(fields) >= 3 and _is_int(fields[1]) and _is_int(fields[2]):
            return "bed"
        return "tsv"
    return "tsv"


# --------------------------------------------------------------------------------------
# GTF / GFF3 (pyranges)
# --------------------------------------------------------------------------------------


def _read_gff(path: Path, flavour: str) -> pd.DataFrame:
    """Read a GTF (``flavour="gtf"``) or GFF3 file with pyranges into the gene layout."""
    raw = _pyranges_rows(path, flavour)
    if raw.empty:
        raise InputFileError(path, f"no {flavour.upper()} records")
    rows = _gff_gene_fields(raw, flavour)
    is_gene = raw["Feature"].astype(str).isin(_GFF_GENE_FEATURES[flavour])
    if is_gene.any():
        genes = rows[is_gene.to_numpy()].copy()
        genes[_WHERE] = "gene " + genes["gene_id"].fillna("<no id>").astype(str)
        if genes["gene_id"].isna().any():
            first = genes[genes["gene_id"].isna()].iloc[0]
            place = f"{first['chrom']}:{first['start'] + 1}-{first['end']}"
            raise InputFileError(path, "a gene record has no gene id", record=place)
        return genes.reset_index(drop=True)
    return _genes_from_parts(rows, path, flavour)


def _pyranges_rows(path: Path, flavour: str) -> pd.DataFrame:
    """All records of a GTF/GFF3 file as pyranges reads them (0-based ``Start``)."""
    import pyranges

    compressed = path.name.lower().endswith(".gz")
    if is_gzip(path) != compressed:
        state = "is" if is_gzip(path) else "is not"
        raise InputFileError(
            path, f"the file {state} gzip-compressed; its name should end in '.gz' only if it is"
        )
    reader = pyranges.read_gtf if flavour == "gtf" else pyranges.read_gff3
    try:
        # pyranges prints a note to stdout before re-raising some parse errors.
        with contextlib.redirect_stdout(io.StringIO()):
            raw = reader(os.fspath(path), as_df=True)
    except (EOFError, zlib.error, gzip.BadGzipFile, UnicodeDecodeError, InputFileError):
        raise
    except Exception as err:  # pyranges raises bare Exception, ValueError, TypeError, ...
        raise _malformed_gff_error(path, flavour, err) from err
    if not all(pd.api.types.is_integer_dtype(raw[column]) for column in ("Start", "End")):
        raise _malformed_gff_error(path, flavour, ValueError("non-integer coordinates"))
    return raw


def _malformed_gff_error(path: Path, flavour: str, err: Exception) -> InputFileError:
    """Find the first bad line of a GTF/GFF3 that pyranges could not read."""
    found = _first_bad_gff_line(path, flavour)
    if found is None:
        return InputFileError(
            path, f"cannot be read as {flavour.upper()} ({type(err).__name__}: {err})"
        )
    number, problem = found
    return InputFileError(path, problem, record=None if number is None else f"line {number}")


def _first_bad_gff_line(path: Path, flavour: str) -> tuple[int | None, str] | None:
    in_records = False
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        if line.startswith("#"):
            if in_records and flavour == "gtf":
                return number, "a comment line after the first record (pyranges cannot read it)"
            continue
        in_records = True
        problem = _gff_line_problem(line, flavour)
        if problem is not None:
            return number, problem
    if not in_records:
        return None, f"no {flavour.upper()} records, only comments"
    return None


def _gff_line_problem(line: str, flavour: str) -> str | None:
    """What is wrong with one GTF/GFF3 record line, or None."""
    fields = line.split("\t")
    if len(fields) != 9:
        return f"expected 9 tab-separated fields, found {len(fields)}"
    start, end = fields[3], fields[4]
    if not (_is_int(start) and _is_int(end)):
        return f"start {start!r} and end {end!r} must be whole numbers"
    attributes = fields[8].rstrip("; ")
    if flavour == "gtf":
        bad = [item for item in attributes.split("; ") if len(item.split(None, 1)) != 2]
        form = 'key "value"'
    else:
        bad = [item for item in attributes.split(";") if item.count("=") != 1]
        form = "key=value"
    if bad:
        return f"attribute {bad[0]!r} is not of the form {form}"
    return None


def _attribute(raw: pd.DataFrame, names: Iterable[str]) -> pd.Series:
    """The first present attribute among ``names``, row by row (NaN where none is)."""
    out = pd.Series(np.nan, index=raw.index, dtype=object)
    for name in names:
        if name in raw.columns:
            out = out.where(out.notna(), raw[name])
    return out


def _gff_gene_fields(raw: pd.DataFrame, flavour: str) -> pd.DataFrame:
    """Gene id, name, type and coordinates of every record (before choosing gene rows)."""
    gene_id = _attribute(raw, ["gene_id"])
    if flavour == "gff3":
        is_gene = raw["Feature"].astype(str).isin(_GFF_GENE_FEATURES["gff3"])
        if "ID" in raw.columns:
            from_id = raw["ID"].where(is_gene).str.replace(r"^gene:", "", regex=True)
            gene_id = gene_id.where(gene_id.notna(), from_id)
    name = _attribute(raw, ["gene_name", "Name"])
    gene_type = _attribute(raw, ["gene_type", "gene_biotype", "biotype"])
    rows = pd.DataFrame(
        {
            "gene_id": gene_id,
            "gene_name": name,
            "gene_type": gene_type,
            "chrom": raw["Chromosome"].astype(str),
            "start": raw["Start"],
            "end": raw["End"],
            "strand": raw["Strand"].astype(str),
        }
    )
    if flavour == "gff3":
        for column in ("gene_id", "gene_name", "gene_type"):
            rows[column] = rows[column].map(unquote, na_action="ignore")
    return rows


def _genes_from_parts(rows: pd.DataFrame, path: Path, flavour: str) -> pd.DataFrame:
    """Build genes from transcript/exon rows: per gene id, smallest start and largest end."""
    rows = rows[rows["gene_id"].notna()]
    if rows.empty:
        raise InputFileError(
            path, f"no gene records and no gene_id attributes: not a gene {flavour.upper()}"
        )
    genes = rows.groupby("gene_id", sort=False).agg(
        gene_name=("gene_name", "first"),
        gene_type=("gene_type", "first"),
        chrom=("chrom", "first"),
        start=("start", "min"),
        end=("end", "max"),
        strand=("strand", "first"),
        n_chrom=("chrom", "nunique"),
        n_strand=("strand", "nunique"),
    )
    mixed = genes.index[(genes["n_chrom"] > 1) | (genes["n_strand"] > 1)]
    if len(mixed):
        raise InputFileError(
            path,
            "records of one gene lie on several contigs or strands: " + _shown(mixed),
            record=f"gene {mixed[0]}",
        )
    genes = genes.drop(columns=["n_chrom", "n_strand"]).reset_index()
    genes[_WHERE] = "gene " + genes["gene_id"].astype(str)
    return genes


# --------------------------------------------------------------------------------------
# BED and TSV
# --------------------------------------------------------------------------------------


def _records(path: Path) -> tuple[list[int], list[list[str]]]:
    """Line numbers and tab-split fields of the records (skipping blank, ``#``, ``track`` and
    ``browser`` lines)."""
    numbers: list[int] = []
    rows: list[list[str]] = []
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            if line.startswith(("#", "track", "browser")) or not line.strip():
                continue
            numbers.append(number)
            rows.append(line.rstrip("\r\n").split("\t"))
    return numbers, rows


def _read_bed(path: Path) -> pd.DataFrame:
    """Read a headerless BED: GTEx-style (strand 4th) or BED6 (strand 6th)."""
    numbers, rows = _records(path)
    if not rows:
        raise InputFileError(path, "no BED records")
    strand_fourth = len(rows[0]) >= 4 and rows[0][3].strip() in ("+", "-", ".")
    needed = 5 if strand_fourth else 6
    for number, fields in zip(numbers, rows, strict=True):
        if len(fields) < needed:
            raise InputFileError(path, _bed_shape_problem(len(fields)), record=f"line {number}")
    if strand_fourth:
        columns = {"chrom": 0, "start": 1, "end": 2, "strand": 3, "gene_id": 4}
        columns |= {"gene_name": 5, "gene_type": 6}
    else:
        columns = {"chrom": 0, "start": 1, "end": 2, "gene_id": 3, "strand": 5}
    fields = pd.DataFrame(rows)  # ragged rows are padded with None
    table = pd.DataFrame({name: fields[i] for name, i in columns.items() if i < fields.shape[1]})
    table[_WHERE] = numbers
    return table


def _bed_shape_problem(n_fields: int) -> str:
    return (
        f"only {n_fields} tab-separated fields; a gene BED needs either "
        "chrom, start, end, strand, gene_id[, gene_name, gene_type] or BED6 "
        "chrom, start, end, name, score, strand"
    )


def _read_tsv(path: Path) -> pd.DataFrame:
    """Read a tab-separated table whose header names the columns."""
    lines = ((n, line) for n, line in numbered_lines(path) if not _is_skippable(line))
    first = next(lines, None)
    if first is None:
        raise InputFileError(path, "the file is empty")
    header = first[1].split("\t")
    positions = _map_columns(header, path)
    numbers: list[int] = []
    rows: list[list[str]] = []
    for number, line in lines:
        if line.startswith("#"):
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise InputFileError(
                path,
                f"{len(fields)} tab-separated fields where the header has {len(header)}",
                record=f"line {number}",
            )
        numbers.append(number)
        rows.append(fields)
    if not rows:
        raise InputFileError(path, "a header but no records")
    table = pd.DataFrame({name: [fields[i] for fields in rows] for name, i in positions.items()})
    table[_WHERE] = numbers
    return table


def _canonical_name(name: str) -> str | None:
    key = str(name).strip().lower().lstrip("#")
    for canonical, aliases in _COLUMN_ALIASES.items():
        if key in aliases:
            return canonical
    return None


def _map_columns(header: list[str], path: Path | None) -> dict[str, int]:
    """Map output column names to positions in ``header``, refusing missing or doubled ones."""
    positions: dict[str, int] = {}
    for i, name in enumerate(header):
        canonical = _canonical_name(name)
        if canonical is None:
            continue
        if canonical in positions:
            other = header[positions[canonical]]
            raise InputFileError(
                path, f"columns {other!r} and {name!r} both give {canonical!r}", record="header"
            )
        positions[canonical] = i
    missing = [name for name in _REQUIRED_COLUMNS if name not in positions]
    if missing:
        raise InputFileError(
            path,
            f"no column for {', '.join(missing)} (columns: {', '.join(map(str, header))}); "
            f"accepted names: "
            + "; ".join(f"{name}: {'/'.join(_COLUMN_ALIASES[name])}" for name in missing),
            record="header",
        )
    return positions


def _table_from_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Take a DataFrame in (or close to) the output layout as the gene table to validate."""
    if "gene_id" not in frame.columns and frame.index.name == "gene_id":
        frame = frame.reset_index()
    positions = _map_columns([str(column) for column in frame.columns], None)
    table = pd.DataFrame(
        {name: frame.iloc[:, i].to_numpy() for name, i in positions.items()},
    )
    table[_WHERE] = "gene " + table["gene_id"].astype(str)
    return table


# --------------------------------------------------------------------------------------
# Validation and the final layout
# --------------------------------------------------------------------------------------


def _finish(table: pd.DataFrame, path: Path | None) -> pd.DataFrame:
    """Validate a raw gene table and return it in the output layout."""
    table = _drop_pseudoautosomal_copies(table, path)
    where = table[_WHERE].reset_index(drop=True)
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
        f"{len(ids)} duplicate gene id(s): {_shown(ids)} ({ids[0]} at {', '.join(places)}); "
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


def _shown(ids: Iterable[str]) -> str:
    ids = [str(i) for i in ids]
    more = f" ... ({len(ids)} in all)" if len(ids) > _SHOWN else ""
    return ", ".join(ids[:_SHOWN]) + more


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
                f"{query!r} matches {len(matches)} genes: {_shown(ids.iloc[matches])}; "
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
    for query in unknown[:_SHOWN]:
        if query in known or _strip_version(query) in known:
            parts.append(f"{query!r} (excluded by gene_types)")
            continue
        close = difflib.get_close_matches(query, _candidates(query, names), n=1, cutoff=0.8)
        parts.append(f"{query!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    more = f" ... ({len(unknown)} in all)" if len(unknown) > _SHOWN else ""
    return f"unknown gene(s): {', '.join(parts)}{more}"


def _candidates(query: str, names: set[str]) -> list[str]:
    """Names worth comparing with ``query`` for a suggestion: same first letter, similar length."""
    first = query[:1].upper()
    return sorted(
        name for name in names if name[:1].upper() == first and abs(len(name) - len(query)) <= 3
    )
