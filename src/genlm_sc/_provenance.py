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


def check_file_record(record: dict | str, *, what: str) -> str:
    """The path of a recorded input file, after checking it is the file that was recorded.

    Parameters
    ----------
    record
        What :func:`file_record` returned when the file was first used (or a bare path, as
        stores of older versions recorded; it is returned unchecked).
    what
        What the file is, for messages (``"FASTA"``).

    Returns
    -------
    The path. A file that is gone, or whose size or fingerprint changed, is an error naming
    the path and telling the user to pass the file explicitly.
    """
    if not isinstance(record, dict):
        return os.fspath(record)
    path = record["path"]
    if not os.path.exists(path):
        raise FileNotFoundError(f"the recorded {what} {path} is gone; pass the file explicitly")
    fingerprint = record.get("sha256_edges")
    if fingerprint is not None and file_record(path)["sha256_edges"] != fingerprint:
        raise ValueError(
            f"the recorded {what} {path} has changed since it was used (its fingerprint "
            f"differs): results would come from another file; pass the file explicitly "
            f"if it is the right one"
        )
    return path
