"""Small helpers shared by the readers: existence, gzip, numbered lines, error records."""

from __future__ import annotations

import contextlib
import gzip
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

import numpy as np
import pandas as pd

from .errors import InputFileError


def existing_file(source: str | os.PathLike[str], *, what: str = "file") -> Path:
    """Return ``source`` as a :class:`~pathlib.Path`, refusing a missing file or a folder.

    Parameters
    ----------
    source
        The path to check.
    what
        What the file should be, for the message (``"VCF file"``, ``"sample panel"``).

    Returns
    -------
    pathlib.Path
        The same path.

    Raises
    ------
    InputFileError
        If nothing is there, or it is a folder.
    """
    path = Path(source)
    if not path.exists():
        raise InputFileError(path, f"no such {what}")
    if path.is_dir():
        raise InputFileError(
            path, f"is a folder, not a {what}; pass the path of the {what} inside it"
        )
    return path


def is_gzip(path: Path) -> bool:
    """Whether the file starts with the gzip magic bytes.

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    bool
        True for a gzip (or bgzip) file.
    """
    with open(path, "rb") as handle:
        return handle.read(2) == b"\x1f\x8b"


def open_text(path: Path) -> TextIO:
    """Open a plain or gzip-compressed text file (told apart by content, not by name).

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    TextIO
        A text handle; close it after use.
    """
    if is_gzip(path):
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


@contextlib.contextmanager
def read_errors(path: Path) -> Iterator[None]:
    """Turn decompression and decoding failures inside the block into :class:`InputFileError`.

    Parameters
    ----------
    path
        The file being read, for the message.

    Yields
    ------
    None
    """
    try:
        yield
    except EOFError as err:
        raise InputFileError(path, f"the gzip stream is truncated ({err})") from err
    except (zlib.error, gzip.BadGzipFile) as err:
        raise InputFileError(path, f"the gzip stream is corrupt ({err})") from err
    except UnicodeDecodeError as err:
        raise InputFileError(path, f"not a UTF-8 text file ({err})") from err


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Yield ``(line number, line without its line ending)``, numbering from 1.

    Parameters
    ----------
    path
        A plain or gzip-compressed text file.

    Yields
    ------
    tuple of int and str
    """
    with open_text(path) as handle:
        for number, line in enumerate(handle, start=1):
            yield number, line.rstrip("\r\n")


def as_int64(
    values: pd.Series, *, what: str, where: pd.Series | None, path: Path | None
) -> pd.Series:
    """Convert a column of whole numbers (as numbers or text) to int64.

    Parameters
    ----------
    values
        The column.
    what
        Its name, for the message.
    where
        For each row, the record it came from (``"line 12"``), for the message; ``None`` to
        name rows by their position.
    path
        The file, for the message.

    Returns
    -------
    pandas.Series
        The values as int64.

    Raises
    ------
    InputFileError
        Naming the first value that is not a whole number.
    """
    if pd.api.types.is_integer_dtype(values) and not pd.api.types.is_bool_dtype(values):
        return values.astype("int64")
    if pd.api.types.is_float_dtype(values):
        good = values.notna() & np.isfinite(values) & (values % 1 == 0)
        if good.all():
            return values.astype("int64")
    else:
        with contextlib.suppress(ValueError, TypeError, OverflowError):
            return values.astype(str).astype("int64")
        good = values.astype(str).str.strip().str.fullmatch(r"[+-]?\d+").fillna(False)
        if good.all():  # e.g. beyond the int64 range
            good = pd.Series(False, index=values.index)
    row = int(np.flatnonzero(~good.to_numpy(dtype=bool))[0])
    record = row_record(where, row) if where is not None else f"row {row + 1}"
    raise InputFileError(path, f"{what} {values.iloc[row]!r} is not a whole number", record=record)


def row_record(where: pd.Series, row: int) -> str:
    """Describe the record of row ``row``: ``"line 12"`` for a line number, else as given."""
    value = where.iloc[row]
    if isinstance(value, int | np.integer):
        return f"line {value}"
    return str(value)


#: The empty block that ends every complete bgzip file.
BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")


def check_bgzip(path: Path, *, what: str, index_hint: str) -> None:
    """Refuse plain gzip where random access needs bgzip, and truncated files.

    Parameters
    ----------
    path
        The file; uncompressed files pass.
    what
        What the file is, for the message (``"FASTA"``, ``"VCF"``).
    index_hint
        The command that indexes such a file, for the message.
    """
    with open(path, "rb") as handle:
        magic = handle.read(4)
    if magic[:2] != b"\x1f\x8b":
        return
    if len(magic) < 4 or not (magic[3] & 0x04):  # bgzip blocks always carry FEXTRA
        raise InputFileError(
            path,
            f"{what} compressed with plain gzip; random access needs bgzip "
            f"(`gunzip` then `bgzip` it, and index it with `{index_hint}`)",
        )
    size = path.stat().st_size
    with open(path, "rb") as handle:
        handle.seek(max(size - len(BGZF_EOF), 0))
        tail = handle.read()
    if tail.endswith(BGZF_EOF):
        return
    try:
        with gzip.open(path, "rb") as handle:
            while handle.read(1 << 20):
                pass
    except (EOFError, OSError, zlib.error) as err:
        raise InputFileError(path, f"truncated or corrupt gzip data ({err})") from err
