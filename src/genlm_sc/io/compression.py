"""Checks of bgzip-compressed inputs (FASTA, VCF, BCF) before they are opened."""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

from .errors import InputFileError

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
