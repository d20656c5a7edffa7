"""Read expression matrices (TSV or FastQTL-style BED) and FastQTL covariate tables.

Everything is returned samples × features, float64, with the sample ids as the index
(named ``"sample"``).
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputFileError
from .files import as_int64, existing_file, is_gzip, numbered_lines, read_errors

__all__ = ["EXPRESSION_LAYOUTS", "read_covariates", "read_expression", "read_expression_bed_genes"]

#: Values accepted by ``read_expression(layout=...)``.
EXPRESSION_LAYOUTS = ("auto", "genes_by_samples", "samples_by_genes", "bed")

_BED_CHROM = ("chr", "chrom", "chromosome", "seqname", "contig")
_BED_START = ("start", "start0", "chromstart")
_BED_END = ("end", "chromend")

# Ensembl gene / transcript ids, optionally versioned.
_FEATURE_ID = re.compile(r"ENS[A-Z]*[GT]\d{6,}(\.\d+)?(_PAR_Y)?")
# 1000 Genomes / GEUVADIS, GTEx, TCGA, SRA / ENA runs and BioSamples.
_SAMPLE_ID = re.compile(r"(HG|NA)\d{5}|GTEX-\w+(-.*)?|TCGA-.+|[SED]RR\d+|SAM[NED][A-Z]?\d+")
_GENE_CORNERS = ("gene", "gene_id", "geneid", "gene_name", "targetid", "feature", "feature_id")
_SAMPLE_CORNERS = ("sample", "sample_id", "samples", "iid", "individual", "donor")
_SHOWN = 10


@dataclass
class _Table:
    """A labelled table as read: row ids, column ids and the raw values (positional columns)."""

    corner: str
    row_ids: pd.Index
    column_ids: pd.Index
    values: pd.DataFrame


# --------------------------------------------------------------------------------------
# Public functions
# --------------------------------------------------------------------------------------


def read_expression(
    source: str | os.PathLike[str] | pd.DataFrame, *, layout: str = "auto"
) -> pd.DataFrame:
    """Read an expression matrix as samples × genes.

    Parameters
    ----------
    source
        A tab-separated file (optionally gzip-compressed; ``.csv`` names are read as
        comma-separated) or a :class:`pandas.DataFrame` whose index and columns are the ids.
    layout
        How the file is laid out:

        * ``"genes_by_samples"``: a header of sample ids; the first column holds gene ids.
        * ``"samples_by_genes"``: a header of gene ids; the first column holds sample ids.
        * ``"bed"``: FastQTL / tensorQTL phenotype BED: ``#Chr, start, end, TargetID``, then
          one column per sample (see :func:`read_expression_bed_genes` for the coordinates).
        * ``"auto"`` (default): ``"bed"`` if the header starts with ``#chr`` or with
          chrom/start/end columns; otherwise the orientation is taken from the ids (Ensembl
          ``ENSG…``/``ENST…`` ids on one axis, or sample ids such as ``HG00096``, ``NA12878``,
          ``GTEX-…`` on the other, or a corner label such as ``gene_id``). When the ids do not
          tell, an error asks for ``layout=``.

    Returns
    -------
    pandas.DataFrame
        float64 values, index = sample ids (named ``"sample"``), columns = gene ids (named
        ``"gene_id"``), in file order. Missing values (``NA``, empty) are NaN.

    Raises
    ------
    InputFileError
        For a missing, empty, truncated or corrupt file, a line with the wrong number of
        fields, duplicate sample or gene ids, a value that is not a number (named by row and
        column), or an orientation that cannot be told.
    ValueError
        For an unknown ``layout``.

    Examples
    --------
    >>> expr = read_expression("phenotypes.bed.gz")  # doctest: +SKIP
    >>> expr.shape  # doctest: +SKIP
    (373, 364)
    """
    if layout not in EXPRESSION_LAYOUTS:
        raise ValueError(f"layout must be one of {EXPRESSION_LAYOUTS}, not {layout!r}")
    if isinstance(source, pd.DataFrame):
        if layout == "bed":
            raise ValueError("layout='bed' is for files; pass a DataFrame of values instead")
        return _expression_from_table(_table_from_frame(source), layout, None)
    path = existing_file(source)
    with read_errors(path):
        header = _header(path)
        if layout == "bed" or (layout == "auto" and _looks_like_bed(header)):
            table = _read_table(path, header, id_position=3, first_value=4)
            return _expression_from_table(table, "genes_by_samples", path)
        table = _read_table(path, header, id_position=0, first_value=1)
    return _expression_from_table(table, layout, path)


def read_expression_bed_genes(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read the gene coordinates of a FastQTL-style expression BED (its first four columns).

    Parameters
    ----------
    path
        A BED-layout expression file (``#Chr, start, end, TargetID, samples...``), as read by
        :func:`read_expression` with ``layout="bed"``.

    Returns
    -------
    pandas.DataFrame
        Columns ``chrom`` (as written), ``start``, ``end`` (int64, 0-based half-open, as in
        the file; in FastQTL files this is usually the 1-bp TSS, ``end = start + 1``) and
        ``gene_id``; index = gene id (named ``"gene_id"``). Strand is not part of the layout.

    Raises
    ------
    InputFileError
        For a missing, empty or corrupt file, non-integer or negative coordinates,
        ``start >= end`` or duplicate gene ids.
    """
    path = existing_file(path)
    with read_errors(path):
        header = _header(path)
        if len(header) < 4:
            raise InputFileError(path, "a BED expression file needs at least 4 columns")
        body = _read_body(path, header, text=[0, 3], usecols=[0, 1, 2, 3])
    where = pd.Series([f"gene {gene}" for gene in body[3]])
    genes = pd.DataFrame(
        {
            "chrom": body[0].astype(str).to_numpy(dtype=object),
            "start": as_int64(body[1], what="start", where=where, path=path).to_numpy(),
            "end": as_int64(body[2], what="end", where=where, path=path).to_numpy(),
            "gene_id": body[3].astype(str).to_numpy(dtype=object),
        }
    )
    _check_intervals(genes, path)
    _check_unique(pd.Index(genes["gene_id"]), "gene", path)
    genes.index = pd.Index(genes["gene_id"].to_numpy(dtype=object), name="gene_id")
    return genes


def read_covariates(source: str | os.PathLike[str] | pd.DataFrame) -> pd.DataFrame:
    """Read a FastQTL covariate table as samples × covariates.

    Parameters
    ----------
    source
        A tab-separated file (optionally gzip-compressed) whose first column (headed ``id``)
        names the covariates and whose other columns are samples, as FastQTL and tensorQTL
        read it; or a DataFrame laid out the same way (covariates × samples).

    Returns
    -------
    pandas.DataFrame
        float64 values, index = sample ids (named ``"sample"``), columns = covariate names
        (named ``"covariate"``), in file order.

    Raises
    ------
    InputFileError
        For a missing, empty, truncated or corrupt file, a line with the wrong number of
        fields, duplicate sample or covariate names, or a value that is not a number (for
        example an unencoded categorical covariate).
    """
    if isinstance(source, pd.DataFrame):
        path = None
        table = _table_from_frame(source)
    else:
        path = existing_file(source)
        with read_errors(path):
            header = _header(path)
            table = _read_table(path, header, id_position=0, first_value=1)
    return _samples_by(table, path, row_kind="covariate", column_kind="sample")


# --------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------


def _separator(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz").removesuffix(".bgz")
    return "," if name.endswith(".csv") else "\t"


def _header(path: Path) -> list[str]:
    """The first non-blank line, split into fields."""
    for _, line in numbered_lines(path):
        if line.strip():
            return [field.strip() for field in line.split(_separator(path))]
    raise InputFileError(path, "the file is empty")


def _looks_like_bed(header: Sequence[str]) -> bool:
    names = [name.strip().lower() for name in header]
    if names[0].startswith("#chr"):
        return True
    return (
        len(names) >= 4
        and names[0].lstrip("#") in _BED_CHROM
        and names[1] in _BED_START
        and names[2] in _BED_END
    )


def _read_body(
    path: Path, header: list[str], *, text: Sequence[int], usecols: list[int] | None = None
) -> pd.DataFrame:
    """The lines after the header, with positional column labels; ``text`` columns as str."""
    try:
        body = pd.read_csv(
            path,
            sep=_separator(path),
            header=None,
            skiprows=_header_line(path),
            dtype=dict.fromkeys(text, str),
            usecols=usecols,
            compression="gzip" if is_gzip(path) else None,
            low_memory=False,
        )
    except pd.errors.EmptyDataError as err:
        raise InputFileError(path, "a header but no data lines") from err
    except pd.errors.ParserError as err:
        raise _ragged_error(path, len(header)) or InputFileError(path, str(err)) from err
    if body.empty:
        raise InputFileError(path, "a header but no data lines")
    return body


def _header_line(path: Path) -> int:
    """Number of lines up to and including the header (blank lines before it count)."""
    for number, line in numbered_lines(path):
        if line.strip():
            return number
    return 0


def _read_table(path: Path, header: list[str], *, id_position: int, first_value: int) -> _Table:
    """Read a labelled matrix: ids in column ``id_position``, values from ``first_value`` on."""
    body = _read_body(path, header, text=[id_position])
    if id_position == 0 and body.shape[1] == len(header) + 1:
        header = ["", *header]  # R's write.table leaves out the corner label
    elif body.shape[1] != len(header):
        raise _ragged_error(path, len(header)) or InputFileError(
            path, f"{body.shape[1]} columns of values but {len(header)} header fields"
        )
    values = body.iloc[:, first_value:]
    if values.shape[1] == 0:
        raise InputFileError(path, "no value columns after the id column(s)")
    if values.isna().to_numpy().any():
        ragged = _ragged_error(path, len(header))
        if ragged is not None:
            raise ragged
    row_ids = body[id_position].fillna("").astype(str).str.strip()
    if (row_ids == "").any():
        line = int(np.flatnonzero((row_ids == "").to_numpy())[0])
        raise InputFileError(path, "empty id in the first column", record=f"data row {line + 1}")
    return _Table(
        corner=header[id_position],
        row_ids=pd.Index(row_ids.to_numpy(dtype=object)),
        column_ids=pd.Index(header[first_value:], dtype=object),
        values=values.set_axis(range(values.shape[1]), axis=1).reset_index(drop=True),
    )


def _ragged_error(path: Path, n_fields: int) -> InputFileError | None:
    """An error naming the first data line whose field count differs from ``n_fields``."""
    separator = _separator(path)
    lines = ((n, line) for n, line in numbered_lines(path) if line.strip())
    next(lines, None)  # the header
    for number, line in lines:
        count = line.count(separator) + 1
        if count != n_fields:
            return InputFileError(
                path, f"{count} fields where the header has {n_fields}", record=f"line {number}"
            )
    return None


def _table_from_frame(frame: pd.DataFrame) -> _Table:
    return _Table(
        corner=str(frame.index.name or ""),
        row_ids=pd.Index([str(i) for i in frame.index], dtype=object),
        column_ids=pd.Index([str(c) for c in frame.columns], dtype=object),
        values=frame.set_axis(range(frame.shape[1]), axis=1).reset_index(drop=True),
    )


# --------------------------------------------------------------------------------------
# Orientation, checks and the final layout
# --------------------------------------------------------------------------------------


def _expression_from_table(table: _Table, layout: str, path: Path | None) -> pd.DataFrame:
    if layout == "auto":
        layout = _guess_orientation(table, path)
    if layout == "genes_by_samples":
        out = _samples_by(table, path, row_kind="gene", column_kind="sample")
    else:
        out = _rows_as_is(table, path, row_kind="sample", column_kind="gene")
    out.columns.name = "gene_id"
    return out


def _all_match(ids: pd.Index, pattern: re.Pattern[str]) -> bool:
    return len(ids) > 0 and all(pattern.fullmatch(str(i)) for i in ids)


def _guess_orientation(table: _Table, path: Path | None) -> str:
    """``"genes_by_samples"`` or ``"samples_by_genes"`` from the ids, or an error."""
    votes = set()
    if _all_match(table.row_ids, _FEATURE_ID) or _all_match(table.column_ids, _SAMPLE_ID):
        votes.add("genes_by_samples")
    if _all_match(table.column_ids, _FEATURE_ID) or _all_match(table.row_ids, _SAMPLE_ID):
        votes.add("samples_by_genes")
    corner = table.corner.strip().lower().lstrip("#")
    if corner in _GENE_CORNERS:
        votes.add("genes_by_samples")
    elif corner in _SAMPLE_CORNERS:
        votes.add("samples_by_genes")
    if len(votes) == 1:
        return votes.pop()
    seen = (
        f"rows {_shown(table.row_ids[:3])}; columns {_shown(table.column_ids[:3])}; "
        f"corner label {table.corner!r}"
    )
    problem = "conflicting clues" if votes else "no recognisable ids"
    raise InputFileError(
        path,
        f"cannot tell whether rows are genes or samples ({problem}: {seen}); "
        "pass layout='genes_by_samples' or layout='samples_by_genes'",
    )


def _samples_by(
    table: _Table, path: Path | None, *, row_kind: str, column_kind: str
) -> pd.DataFrame:
    """Features (or covariates) × samples on disk -> samples × features, float64."""
    out = _rows_as_is(table, path, row_kind=row_kind, column_kind=column_kind).T
    out.index.name = column_kind
    out.columns.name = row_kind
    return out


def _rows_as_is(
    table: _Table, path: Path | None, *, row_kind: str, column_kind: str
) -> pd.DataFrame:
    """The table as laid out, after checks, as a float64 DataFrame."""
    if len(table.row_ids) == 0 or len(table.column_ids) == 0:
        raise InputFileError(path, "the table is empty")
    _check_unique(table.row_ids, row_kind, path)
    _check_unique(table.column_ids, column_kind, path)
    values = _as_float(table, path)
    out = pd.DataFrame(values, index=table.row_ids.copy(), columns=table.column_ids.copy())
    out.index.name = row_kind
    out.columns.name = column_kind
    return out


def _check_unique(ids: pd.Index, kind: str, path: Path | None) -> None:
    doubled = ids[ids.duplicated()].unique()
    if len(doubled):
        raise InputFileError(
            path,
            f"{len(doubled)} duplicate {kind} id(s): {_shown(doubled)}",
            record=f"{kind} {doubled[0]}",
        )


def _is_number_column(column: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column)


def _as_float(table: _Table, path: Path | None) -> np.ndarray:
    """The values as a float64 array, naming the first cell that is not a number."""
    values = table.values
    array = np.empty(values.shape, dtype="float64")
    numeric = [_is_number_column(values.iloc[:, i]) for i in range(values.shape[1])]
    numeric_positions = np.flatnonzero(numeric)
    array[:, numeric_positions] = values.iloc[:, numeric_positions].to_numpy(dtype="float64")
    for position in np.flatnonzero(~np.asarray(numeric, dtype=bool)):
        array[:, position] = _column_as_float(table, int(position), path)
    return array


def _column_as_float(table: _Table, position: int, path: Path | None) -> np.ndarray:
    column = table.values.iloc[:, position]
    if pd.api.types.is_bool_dtype(column):
        converted = pd.Series(np.nan, index=column.index)
    else:
        converted = pd.to_numeric(column.astype(object), errors="coerce")
    bad = converted.isna() & column.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputFileError(
            path,
            f"value {column.iloc[row]!r} is not a number "
            f"(row {table.row_ids[row]!r}, column {table.column_ids[position]!r})",
            record=f"row {table.row_ids[row]}",
        )
    return converted.to_numpy(dtype="float64")


def _check_intervals(genes: pd.DataFrame, path: Path) -> None:
    bad = (genes["start"] < 0) | (genes["start"] >= genes["end"])
    if bad.any():
        row = genes[bad].iloc[0]
        raise InputFileError(
            path,
            f"bad interval start {row['start']}, end {row['end']} (need 0 <= start < end)",
            record=f"gene {row['gene_id']}",
        )


def _shown(ids: Sequence[str] | pd.Index) -> str:
    ids = [str(i) for i in ids]
    more = f" ... ({len(ids)} in all)" if len(ids) > _SHOWN else ""
    return ", ".join(ids[:_SHOWN]) + more
