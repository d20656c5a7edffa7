"""The records of gene annotation files: GFF3/GTF (through pyranges), BED and TSV tables.

Each reader returns a table in :data:`~genlm_sc.io.annotation.ANNOTATION_COLUMNS`' layout
plus a :data:`WHERE` column (where each row came from, for errors);
:func:`~genlm_sc.io.annotation.read_annotation` checks and finishes it.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import os
import re
import zlib
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pandas as pd

from .errors import InputFileError
from .files import is_gzip, numbered_lines, open_text

#: A column holding, for each row, where it came from, for errors: a line number (int) or a
#: description such as "gene ENSG...".
WHERE = "_where"
#: GFF feature types that are genes.
GFF_GENE_FEATURES = {"gtf": ("gene",), "gff3": ("gene", "ncRNA_gene", "pseudogene")}
#: Header names accepted for each output column (lower case, without a leading '#').
COLUMN_ALIASES = {
    "chrom": ("chrom", "chr", "chromosome", "seqname", "seqnames", "contig"),
    "start": ("start", "start0", "chromstart"),
    "end": ("end", "chromend"),
    "strand": ("strand",),
    "gene_id": ("gene_id", "geneid", "ensembl_gene_id", "id"),
    "gene_name": ("gene_name", "genename", "gene_symbol", "symbol", "name"),
    "gene_type": ("gene_type", "gene_biotype", "biotype", "type"),
    "tss": ("tss", "tss0"),
}
REQUIRED_COLUMNS = ("chrom", "start", "end", "strand", "gene_id")
#: How many offending ids an error message lists.
SHOWN = 10


def is_int(text: str) -> bool:
    return re.fullmatch(r"[+-]?\d+", text.strip()) is not None


def is_skippable(line: str) -> bool:
    """Blank lines, ``##`` directives and UCSC ``track``/``browser`` lines."""
    stripped = line.strip()
    return not stripped or stripped.startswith(("##", "track", "browser"))


def shown(ids: Iterable[str]) -> str:
    ids = [str(i) for i in ids]
    more = f" ... ({len(ids)} in all)" if len(ids) > SHOWN else ""
    return ", ".join(ids[:SHOWN]) + more


def read_gff(path: Path, flavour: str) -> pd.DataFrame:
    """Read a GTF (``flavour="gtf"``) or GFF3 file with pyranges into the gene layout."""
    raw = pyranges_rows(path, flavour)
    if raw.empty:
        raise InputFileError(path, f"no {flavour.upper()} records")
    rows = gff_gene_fields(raw, flavour)
    is_gene = raw["Feature"].astype(str).isin(GFF_GENE_FEATURES[flavour])
    if is_gene.any():
        genes = rows[is_gene.to_numpy()].copy()
        genes[WHERE] = "gene " + genes["gene_id"].fillna("<no id>").astype(str)
        if genes["gene_id"].isna().any():
            first = genes[genes["gene_id"].isna()].iloc[0]
            place = f"{first['chrom']}:{first['start'] + 1}-{first['end']}"
            raise InputFileError(path, "a gene record has no gene id", record=place)
        return genes.reset_index(drop=True)
    return genes_from_parts(rows, path, flavour)


def pyranges_rows(path: Path, flavour: str) -> pd.DataFrame:
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
        raise malformed_gff_error(path, flavour, err) from err
    if not all(pd.api.types.is_integer_dtype(raw[column]) for column in ("Start", "End")):
        raise malformed_gff_error(path, flavour, ValueError("non-integer coordinates"))
    return raw


def malformed_gff_error(path: Path, flavour: str, err: Exception) -> InputFileError:
    """Find the first bad line of a GTF/GFF3 that pyranges could not read."""
    found = first_bad_gff_line(path, flavour)
    if found is None:
        return InputFileError(
            path, f"cannot be read as {flavour.upper()} ({type(err).__name__}: {err})"
        )
    number, problem = found
    return InputFileError(path, problem, record=None if number is None else f"line {number}")


def first_bad_gff_line(path: Path, flavour: str) -> tuple[int | None, str] | None:
    in_records = False
    for number, line in numbered_lines(path):
        if not line.strip():
            continue
        if line.startswith("#"):
            if in_records and flavour == "gtf":
                return number, "a comment line after the first record (pyranges cannot read it)"
            continue
        in_records = True
        problem = gff_line_problem(line, flavour)
        if problem is not None:
            return number, problem
    if not in_records:
        return None, f"no {flavour.upper()} records, only comments"
    return None


def gff_line_problem(line: str, flavour: str) -> str | None:
    """What is wrong with one GTF/GFF3 record line, or None."""
    fields = line.split("\t")
    if len(fields) != 9:
        return f"expected 9 tab-separated fields, found {len(fields)}"
    start, end = fields[3], fields[4]
    if not (is_int(start) and is_int(end)):
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


def gff_attribute(raw: pd.DataFrame, names: Iterable[str]) -> pd.Series:
    """The first present attribute among ``names``, row by row (NaN where none is)."""
    out = pd.Series(np.nan, index=raw.index, dtype=object)
    for name in names:
        if name in raw.columns:
            out = out.where(out.notna(), raw[name])
    return out


def gff_gene_fields(raw: pd.DataFrame, flavour: str) -> pd.DataFrame:
    """Gene id, name, type and coordinates of every record (before choosing gene rows)."""
    gene_id = gff_attribute(raw, ["gene_id"])
    if flavour == "gff3":
        is_gene = raw["Feature"].astype(str).isin(GFF_GENE_FEATURES["gff3"])
        if "ID" in raw.columns:
            from_id = raw["ID"].where(is_gene).str.replace(r"^gene:", "", regex=True)
            gene_id = gene_id.where(gene_id.notna(), from_id)
    name = gff_attribute(raw, ["gene_name", "Name"])
    gene_type = gff_attribute(raw, ["gene_type", "gene_biotype", "biotype"])
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


def genes_from_parts(rows: pd.DataFrame, path: Path, flavour: str) -> pd.DataFrame:
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
            "records of one gene lie on several contigs or strands: " + shown(mixed),
            record=f"gene {mixed[0]}",
        )
    genes = genes.drop(columns=["n_chrom", "n_strand"]).reset_index()
    genes[WHERE] = "gene " + genes["gene_id"].astype(str)
    return genes


def table_records(path: Path) -> tuple[list[int], list[list[str]]]:
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


def read_bed(path: Path) -> pd.DataFrame:
    """Read a headerless BED: GTEx-style (strand 4th) or BED6 (strand 6th)."""
    numbers, rows = table_records(path)
    if not rows:
        raise InputFileError(path, "no BED records")
    strand_fourth = len(rows[0]) >= 4 and rows[0][3].strip() in ("+", "-", ".")
    needed = 5 if strand_fourth else 6
    for number, fields in zip(numbers, rows, strict=True):
        if len(fields) < needed:
            raise InputFileError(path, bed_shape_problem(len(fields)), record=f"line {number}")
    if strand_fourth:
        columns = {"chrom": 0, "start": 1, "end": 2, "strand": 3, "gene_id": 4}
        columns |= {"gene_name": 5, "gene_type": 6}
    else:
        columns = {"chrom": 0, "start": 1, "end": 2, "gene_id": 3, "strand": 5}
    fields = pd.DataFrame(rows)  # ragged rows are padded with None
    table = pd.DataFrame({name: fields[i] for name, i in columns.items() if i < fields.shape[1]})
    table[WHERE] = numbers
    return table


def bed_shape_problem(n_fields: int) -> str:
    return (
        f"only {n_fields} tab-separated fields; a gene BED needs either "
        "chrom, start, end, strand, gene_id[, gene_name, gene_type] or BED6 "
        "chrom, start, end, name, score, strand"
    )


def read_tsv(path: Path) -> pd.DataFrame:
    """Read a tab-separated table whose header names the columns."""
    lines = ((n, line) for n, line in numbered_lines(path) if not is_skippable(line))
    first = next(lines, None)
    if first is None:
        raise InputFileError(path, "the file is empty")
    header = first[1].split("\t")
    positions = map_columns(header, path)
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
    table[WHERE] = numbers
    return table


def canonical_name(name: str) -> str | None:
    key = str(name).strip().lower().lstrip("#")
    for canonical, aliases in COLUMN_ALIASES.items():
        if key in aliases:
            return canonical
    return None


def map_columns(header: list[str], path: Path | None) -> dict[str, int]:
    """Map output column names to positions in ``header``, refusing missing or doubled ones."""
    positions: dict[str, int] = {}
    for i, name in enumerate(header):
        canonical = canonical_name(name)
        if canonical is None:
            continue
        if canonical in positions:
            other = header[positions[canonical]]
            raise InputFileError(
                path, f"columns {other!r} and {name!r} both give {canonical!r}", record="header"
            )
        positions[canonical] = i
    missing = [name for name in REQUIRED_COLUMNS if name not in positions]
    if missing:
        raise InputFileError(
            path,
            f"no column for {', '.join(missing)} (columns: {', '.join(map(str, header))}); "
            f"accepted names: "
            + "; ".join(f"{name}: {'/'.join(COLUMN_ALIASES[name])}" for name in missing),
            record="header",
        )
    return positions


def table_from_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """Take a DataFrame in (or close to) the output layout as the gene table to validate."""
    if "gene_id" not in frame.columns and frame.index.name == "gene_id":
        frame = frame.reset_index()
    positions = map_columns([str(column) for column in frame.columns], None)
    table = pd.DataFrame(
        {name: frame.iloc[:, i].to_numpy() for name, i in positions.items()},
    )
    table[WHERE] = "gene " + table["gene_id"].astype(str)
    return table
