"""What is recorded about input files so that an analysis can be redone."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

_EDGE = 1 << 20


def file_record(path: str | os.PathLike) -> dict[str, str | int]:
    """Path, size and a content fingerprint of a file.

    The fingerprint is the SHA-256 of the size and of the first and last MiB: cheap on large
    genotype files, changed by truncation, re-compression and most edits, though not by a
    same-size change in the middle of a file larger than 2 MiB.
    """
    path = Path(path).absolute()
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as handle:
        digest.update(handle.read(_EDGE))
        if size > _EDGE:
            handle.seek(max(size - _EDGE, _EDGE))
            digest.update(handle.read())
    return {"path": os.fspath(path), "size": size, "sha256_edges": digest.hexdigest()}
