"""Where stores go on disk: safe targets, hidden work folders, atomic swaps, leftovers.

A store is written into a hidden sibling folder ``.NAME.partial-<owner>-<id>`` and swapped
into place when complete. ``<owner>`` is ``<pid>.<host tag>`` of the writing process, so a
later write can tell a folder left by a killed process (removed) from one still being
written by a live process (left alone).
"""

from __future__ import annotations

import ctypes
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import FORMAT_NAME
from .errors import StoreTargetError

#: Leftovers of another host are removed only once they are this old (seconds).
FOREIGN_LEFTOVER_AGE = 24 * 3600
_RENAME_NOREPLACE, _RENAME_EXCHANGE = 1, 2
_AT_FDCWD = -100


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]


def owner_tag() -> str:
    """``<pid>.<host tag>`` of this process, put in the names of its work folders."""
    return f"{os.getpid()}.{_host_tag()}"


def work_name(prefix: str) -> str:
    """A fresh name ``<prefix>-<owner>-<id>`` for a work folder of this process."""
    return f"{prefix}-{owner_tag()}-{uuid.uuid4().hex[:8]}"


_OWNED = r"(?:-(?P<pid>\d+)\.(?P<host>[0-9a-f]{6}))?-[0-9a-f]{8}"


def _abandoned(path: Path, pid: str | None, host: str | None) -> bool:
    """Whether a work folder was left by a process that is gone."""
    if pid is None:  # named by an earlier genlm_sc, without an owner
        return True
    if host != _host_tag():
        try:
            return time.time() - path.lstat().st_mtime > FOREIGN_LEFTOVER_AGE
        except OSError:
            return False
    if int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


def leftovers(target: Path, kinds: tuple[str, ...] = ("partial", "previous")) -> list[Path]:
    """Work folders that interrupted writes of ``target`` left beside it."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:{'|'.join(kinds)}){_OWNED}$")
    try:
        siblings = list(target.parent.iterdir())
    except OSError:
        return []
    return sorted(p for p in siblings if pattern.match(p.name))


def remove_abandoned(folder: Path, pattern: str) -> list[Path]:
    """Remove the entries of ``folder`` matching ``pattern`` + owner whose writer is gone.

    ``pattern`` is a regular expression for the name up to the owner part.
    """
    owned = re.compile(rf"^{pattern}{_OWNED}$")
    removed = []
    try:
        entries = list(folder.iterdir())
    except OSError:
        return removed
    for path in entries:
        match = owned.match(path.name)
        if match and _abandoned(path, match["pid"], match["host"]):
            _remove(path)
            removed.append(path)
    return removed


def remove_abandoned_siblings(target: Path) -> list[Path]:
    """Remove ``.NAME.partial-*`` and ``.NAME.previous-*`` folders left by dead writers."""
    return remove_abandoned(target.parent, rf"\.{re.escape(target.name)}\.(?:partial|previous)")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------


def is_cohort_store(path: Path) -> bool:
    """Whether ``path`` is the root folder of a genlm_sc cohort store (any version)."""
    try:
        meta = json.loads((path / "zarr.json").read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(meta, dict) or meta.get("node_type") != "group":
        return False
    attrs = meta.get("attributes")
    ours = isinstance(attrs, dict) and isinstance(attrs.get("genlm_sc"), dict)
    if not ours or attrs["genlm_sc"].get("format") != FORMAT_NAME:
        return False
    # the ``haplotypes`` group carries the same attributes: a store root has the groups
    return any((path / group / "zarr.json").is_file() for group in ("anndata", "haplotypes"))


def target_path(path: str | os.PathLike) -> Path:
    """The absolute, normalised path of a store to write (``.`` and ``..`` resolved)."""
    return Path(os.path.abspath(os.fspath(path)))


def check_target(target: Path) -> None:
    """Refuse to write a store where doing so would destroy something else.

    ``target`` may be absent, an empty folder, or a genlm_sc cohort store (which is replaced
    once the new one is complete). Anything else raises :class:`StoreTargetError`.
    """
    fix = (
        "nothing was written or removed; choose a new path for the store (conventionally "
        "ending in .zarr), or move that content away first"
    )
    if target.is_symlink():
        raise StoreTargetError(
            target,
            f"is a symbolic link (to {os.readlink(target)}); write to the folder it points to; "
            + fix,
        )
    if not target.exists():
        return
    if not target.is_dir():
        raise StoreTargetError(target, f"exists and is a file, not a cohort store; {fix}")
    if not is_cohort_store(target):
        try:
            content = sorted(p.name for p in target.iterdir())
        except OSError as err:
            raise StoreTargetError(target, f"cannot be listed ({err}); {fix}") from err
        if content:
            more = len(content) - 5
            shown = ", ".join(content[:5]) + (f" and {more} more" if more > 0 else "")
            raise StoreTargetError(
                target, f"exists and is not a genlm_sc cohort store (it holds {shown}); {fix}"
            )
    cwd = Path.cwd().absolute()
    if cwd == target or target in cwd.parents:
        raise StoreTargetError(
            target,
            "is the working directory or a folder above it; a store cannot replace it; " + fix,
        )


# --------------------------------------------------------------------------------------
# Swaps
# --------------------------------------------------------------------------------------


def _renameat2(source: Path, target: Path, flags: int) -> bool:
    """``renameat2`` (Linux); False where the system or file system does not offer it."""
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (AttributeError, OSError):
        return False
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    function.argtypes += [ctypes.c_uint]
    result = function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flags)
    if result == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), os.fspath(source), None, os.fspath(target))


def swap_into_place(
    partial: Path, target: Path, *, check: Callable[[Path], None] | None = None
) -> None:
    """Put the complete folder ``partial`` at ``target``, replacing what was there.

    Where the system allows (Linux), the two are exchanged in one atomic step and a reader
    sees either the old or the new folder, never none; elsewhere the old folder is renamed
    to ``.NAME.previous-*`` first and removed after the new one is in place. ``check`` runs
    on ``target`` just before the swap (to refuse a target that changed meanwhile).
    """
    if check is not None:
        check(target)
    if target.exists():
        if _renameat2(partial, target, _RENAME_EXCHANGE):
            _remove(partial)  # now the old folder
            return
        backup = target.with_name(work_name(f".{target.name}.previous"))
        os.rename(target, backup)
        os.rename(partial, target)
        _remove(backup)
        return
    if not _renameat2(partial, target, _RENAME_NOREPLACE):
        os.rename(partial, target)


def write_json_atomic(path: Path, update: Callable[[dict[str, Any]], None]) -> None:
    """Rewrite the JSON document at ``path`` after ``update`` changed it, in one rename."""
    document = json.loads(path.read_text())
    update(document)
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        temporary.write_text(json.dumps(document, indent=2))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def existing_store(path: Path) -> Path:
    """``path`` if it exists; a clear error otherwise (naming any copy an interrupted write left).

    A copy left by an interrupted swap is never read in place of the store: it may be an
    older version than the one the user expects.
    """
    if path.exists():
        return path
    message = "no such cohort store"
    copies = leftovers(path, ("previous",))
    if copies:
        message += (
            f"; an earlier version left by an interrupted write is at {copies[-1]}: rename it "
            f"to {path.name} to use it, or delete it"
        )
    raise FileNotFoundError(f"{path}: {message}")
