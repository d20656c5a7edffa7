"""Labelled sequences: ``sequence,label`` tables and GUE task folders."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from .errors import InputFileError
from .files import existing_file, is_gzip

__all__ = ["read_labelled_sequences"]

#: Splits of a task folder, in the order they are read.
SPLITS = ("train", "dev", "test")
_SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz")


def read_labelled_sequences(
    path: str | os.PathLike,
    *,
    splits: Sequence[str] = SPLITS,
    sequence_column: str = "sequence",
    label_column: str = "label",
    split_key: str = "split",
) -> pd.DataFrame:
    """Read labelled sequences into a table (make it a panel with
    :func:`genlm_sc.pp.sequence_panel`).

    Parameters
    ----------
    path
        A ``sequence,label`` table (``.csv`` or ``.tsv``, optionally gzipped; a header row
        naming the two columns, further columns kept), or a task folder holding one table
        per split named ``<split>.csv`` (or ``.csv.gz``, ``.tsv``, ``.tsv.gz``; the GUE layout:
        ``train``, ``dev``, ``test``).
    splits
        For a folder: the splits to read; each must be there.
    sequence_column, label_column
        Column names in the files; they become the columns ``sequence`` and ``label``.
    split_key
        For a folder: the column that names each row's split (categorical, in the order of
        ``splits``).

    Returns
    -------
    One row per sequence, indexed ``<split>_<row>`` for a folder and ``<row>`` for a file
    (rows numbered from 0 in file order), with the columns ``sequence`` (as read),
    ``label`` (as read: integers stay integers), any further columns of the files and, for
    a folder, ``split_key``. ``attrs["source"]`` is the path.
    :func:`genlm_sc.pp.sequence_panel` turns it into a panel that
    :func:`genlm_sc.tl.embed`, :func:`genlm_sc.tl.kmer_profile` and
    :func:`genlm_sc.tl.fit_classifier` take::

        panel = gl.pp.sequence_panel(gl.io.read_labelled_sequences("gue/prom_300_tata"))
    """
    path = Path(path)
    if path.is_dir():
        if not splits:
            raise ValueError("splits must name at least one split")
        parts = []
        for split in splits:
            table = _read_table(_split_file(path, split), sequence_column, label_column)
            table.index = [f"{split}_{i}" for i in range(len(table))]
            table[split_key] = split
            parts.append(table)
        table = pd.concat(parts)
        table[split_key] = pd.Categorical(table[split_key], categories=list(dict.fromkeys(splits)))
    else:
        table = _read_table(existing_file(path), sequence_column, label_column)
        table.index = table.index.astype(str)
    table.attrs["source"] = os.fspath(path)
    return table


def _split_file(folder: Path, split: str) -> Path:
    found = [folder / f"{split}{s}" for s in _SUFFIXES if (folder / f"{split}{s}").is_file()]
    if not found:
        raise InputFileError(folder, f"no {split}.csv or {split}.csv.gz in this folder")
    if len(found) > 1:
        raise InputFileError(
            folder, f"several files for split {split!r}: {[p.name for p in found]}"
        )
    return found[0]


def _read_table(path: Path, sequence_column: str, label_column: str) -> pd.DataFrame:
    separator = "\t" if ".tsv" in path.suffixes else ","
    try:
        table = pd.read_csv(path, sep=separator, compression="gzip" if is_gzip(path) else None)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, EOFError,
            OSError) as err:  # fmt: skip
        raise InputFileError(path, f"cannot parse the labelled sequences ({err})") from err
    missing = [c for c in (sequence_column, label_column) if c not in table.columns]
    if missing:
        raise InputFileError(
            path, f"no column {missing[0]!r} in the header {list(table.columns)}", record="line 1"
        )
    empty = table[sequence_column].isna() | table[label_column].isna()
    if empty.any():
        line = int(empty.to_numpy().argmax()) + 2  # the header is line 1
        raise InputFileError(path, "empty sequence or label", record=f"line {line}")
    table = table.rename(columns={sequence_column: "sequence", label_column: "label"})
    return table.reset_index(drop=True)
