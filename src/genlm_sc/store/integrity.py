"""What makes a store trustworthy: its format attributes, its write id, its chunk manifests.

Every array of a store (format version 2) has a ``manifest.json`` beside its ``zarr.json``:
the SHA-256 of its metadata and the size and SHA-256 of each chunk file. Stores are read
through :class:`VerifyingStore`, which checks each chunk as it is read, so a missing,
truncated or altered chunk raises :class:`~genlm_sc.store.errors.CorruptStoreError` naming
the store, the array and the chunk instead of reading as fill values or wrong bases.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from zarr.abc.store import ByteRequest, Store
from zarr.core.buffer import Buffer, BufferPrototype
from zarr.storage import LocalStore, WrapperStore

from .common import FORMAT_NAME, FORMAT_VERSION, LEGACY_WORK, READABLE_VERSIONS
from .errors import CorruptStoreError, StoreError
from .files import write_json_atomic

MANIFEST = "manifest.json"
_MANIFEST_KIND = "genlm_sc.chunk-manifest"
_DAMAGED = (
    "the store is damaged or was changed by something other than genlm_sc; rebuild it "
    "(gl.pp.personal_sequences, then gl.write) or restore it from a copy"
)


def format_attrs() -> dict[str, Any]:
    """The ``genlm_sc`` attributes of the groups a write creates (without the write id)."""
    from .._version import __version__

    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "written_by": __version__}


def root_attrs() -> dict[str, Any]:
    """The root group's ``genlm_sc`` attributes, with a fresh write id."""
    return {**format_attrs(), "write_id": new_write_id()}


def new_write_id() -> str:
    """A fresh write id (recorded in the root attributes at every write)."""
    return uuid.uuid4().hex


# --------------------------------------------------------------------------------------
# Format attributes
# --------------------------------------------------------------------------------------


def validate_format(meta: Any, store: Path, group: str = "root group") -> dict[str, Any]:
    """Check the ``genlm_sc`` attributes of one group of a store; return them.

    ``format`` must be ``genlm_sc.cohort`` and ``format_version`` an integer (not a bool)
    that this genlm_sc reads.
    """
    if not isinstance(meta, Mapping) or meta.get("format") != FORMAT_NAME:
        raise StoreError(
            store,
            f"not a genlm_sc cohort store ({group} attributes: {meta}); give the path of a "
            "store written by gl.write or gl.pp.personal_sequences",
        )
    record = f"attribute genlm_sc.format_version of the {group}"
    readable = " and ".join(str(v) for v in READABLE_VERSIONS)
    if "format_version" not in meta:
        raise StoreError(
            store,
            f"is missing; this genlm_sc reads format versions {readable}: {_DAMAGED}",
            record=record,
        )
    version = meta["format_version"]
    if isinstance(version, bool) or not isinstance(version, int):
        raise StoreError(
            store,
            f"must be an integer, got {version!r} ({type(version).__name__}); this genlm_sc "
            f"reads format versions {readable}: {_DAMAGED}",
            record=record,
        )
    if version > FORMAT_VERSION:
        raise StoreError(
            store,
            f"written in format version {version}, newer than this genlm_sc reads "
            f"({FORMAT_VERSION}); upgrade genlm_sc",
            record=record,
        )
    if version not in READABLE_VERSIONS:
        raise StoreError(
            store,
            f"format version {version} is not a genlm_sc format version (this genlm_sc reads "
            f"{readable}): {_DAMAGED}",
            record=record,
        )
    return dict(meta)


def _group_document(store: Path, group: str = "") -> dict[str, Any]:
    path = store / group / "zarr.json"
    try:
        text = path.read_text()
    except (FileNotFoundError, NotADirectoryError) as err:
        if group:
            raise CorruptStoreError(store, f"{path} is missing; {_DAMAGED}", record=group) from err
        raise FileNotFoundError(f"{store}: no genlm_sc cohort store here") from err
    try:
        document = json.loads(text)
    except ValueError as err:
        raise CorruptStoreError(
            store, f"{path} is not valid JSON ({err}); {_DAMAGED}", record=group or "root group"
        ) from err
    if not isinstance(document, dict):
        raise CorruptStoreError(store, f"{path} is not a Zarr group; {_DAMAGED}")
    return document


def check_format(path: Path) -> dict[str, Any]:
    """Read and check the format attributes of a store (root and ``haplotypes`` groups).

    Returns the root group's ``genlm_sc`` attributes.
    """
    path = Path(path)
    attrs = _group_document(path).get("attributes") or {}
    meta = validate_format(attrs.get("genlm_sc") if isinstance(attrs, dict) else None, path)
    if (path / "haplotypes").is_dir():
        group_attrs = _group_document(path, "haplotypes").get("attributes") or {}
        group_meta = group_attrs.get("genlm_sc") if isinstance(group_attrs, dict) else None
        if group_meta is not None or meta["format_version"] >= 2:
            group_meta = validate_format(group_meta, path, "haplotypes group")
            if group_meta["format_version"] != meta["format_version"]:
                raise StoreError(
                    path,
                    f"is {group_meta['format_version']}, but the root group says "
                    f"{meta['format_version']}: {_DAMAGED}",
                    record="attribute genlm_sc.format_version of the haplotypes group",
                )
    if meta["format_version"] < FORMAT_VERSION:
        _warn_old_version(path, meta["format_version"])
    return meta


_WARNED: set[str] = set()


def _warn_old_version(path: Path, version: int) -> None:
    if os.fspath(path) in _WARNED:
        return
    _WARNED.add(os.fspath(path))
    warnings.warn(
        f"{path}: written in format version {version}, without chunk checksums, so damage to "
        f"its files is not detected; gl.write(gl.read(path), new_path) writes it in version "
        f"{FORMAT_VERSION}",
        UserWarning,
        stacklevel=4,
    )


def identity(path: Path) -> tuple[str | None, tuple[int, ...]]:
    """The write id of the store at ``path`` and the stat of its root ``zarr.json``."""
    stat = os.stat(path / "zarr.json")
    signature = (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
    return write_id(path), signature


def renew_write_id(store: Path) -> None:
    """Record a fresh write id in the root attributes (one atomic rename of ``zarr.json``)."""

    def update(document: dict[str, Any]) -> None:
        attrs = document.setdefault("attributes", {})
        attrs["genlm_sc"] = {**attrs.get("genlm_sc", {}), "write_id": new_write_id()}

    write_json_atomic(store / "zarr.json", update)


def write_id(path: Path) -> str | None:
    """The write id recorded in a store's root attributes (``None`` for version 1)."""
    try:
        attrs = json.loads((path / "zarr.json").read_text()).get("attributes") or {}
        value = attrs.get("genlm_sc", {}).get("write_id")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str) else None


# --------------------------------------------------------------------------------------
# Chunk manifests
# --------------------------------------------------------------------------------------


def _digest(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def array_folders(root: Path) -> Iterator[Path]:
    """The Zarr array folders under ``root`` (work folders, current and legacy, excluded)."""
    for folder, subfolders, files in os.walk(root):
        subfolders[:] = sorted(
            d for d in subfolders if not d.startswith(".") and not LEGACY_WORK.match(d)
        )
        if "zarr.json" not in files:
            continue
        try:
            kind = json.loads((Path(folder) / "zarr.json").read_text()).get("node_type")
        except (OSError, ValueError, AttributeError):
            continue
        if kind == "array":
            subfolders[:] = []
            yield Path(folder)


def _chunk_files(array: Path) -> Iterator[tuple[str, Path]]:
    for folder, subfolders, files in os.walk(array):
        subfolders[:] = sorted(d for d in subfolders if not d.startswith("."))
        for name in sorted(files):
            path = Path(folder) / name
            key = path.relative_to(array).as_posix()
            if key in ("zarr.json", MANIFEST) or name.startswith("."):
                continue
            yield key, path


def write_manifest(array: Path) -> None:
    """Record the metadata and chunk checksums of a complete array folder."""
    chunks = {}
    for key, path in _chunk_files(array):
        data = path.read_bytes()
        chunks[key] = [len(data), _digest(data)]
    manifest = {
        "kind": _MANIFEST_KIND,
        "algorithm": "sha256",
        "metadata": _digest((array / "zarr.json").read_bytes()),
        "chunks": chunks,
    }
    (array / MANIFEST).write_text(json.dumps(manifest, separators=(",", ":")))


def seal(root: Path) -> None:
    """Write a manifest for every array under ``root`` that has none yet."""
    for array in array_folders(root):
        if not (array / MANIFEST).exists():
            write_manifest(array)


def _load_manifest(store: Path, array: Path, name: str) -> dict[str, Any] | None:
    path = array / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise CorruptStoreError(
            store, f"its manifest {path} cannot be read ({err}); {_DAMAGED}", record=f"array {name}"
        ) from err
    if not isinstance(manifest, dict) or not isinstance(manifest.get("chunks"), dict):
        raise CorruptStoreError(
            store,
            f"its manifest {path} is not a chunk manifest; {_DAMAGED}",
            record=f"array {name}",
        )
    return manifest


def _check_chunk(
    store: Path, name: str, key: str, expected: Any, data: bytes | memoryview | None
) -> None:
    record = f"array {name}, chunk {key}"
    if data is None:
        raise CorruptStoreError(store, f"the chunk file is missing; {_DAMAGED}", record=record)
    size, digest = expected
    if len(data) != size:
        raise CorruptStoreError(
            store,
            f"the chunk file has {len(data)} bytes where {size} were written (truncated or "
            f"overwritten); {_DAMAGED}",
            record=record,
        )
    if _digest(data) != digest:
        raise CorruptStoreError(
            store, f"the chunk file does not match its checksum; {_DAMAGED}", record=record
        )


def verify_arrays(store: Path, root: Path, *, required: bool) -> None:
    """Read every chunk under ``root`` and check it against its array's manifest."""
    for array in array_folders(root):
        name = array.relative_to(store).as_posix()
        manifest = _load_manifest(store, array, name)
        if manifest is None:
            if required:
                raise CorruptStoreError(
                    store, f"its manifest.json is missing; {_DAMAGED}", record=f"array {name}"
                )
            continue
        _check_metadata(store, name, manifest, (array / "zarr.json").read_bytes())
        present = dict(_chunk_files(array))
        for key, expected in manifest["chunks"].items():
            path = present.pop(key, None)
            _check_chunk(store, name, key, expected, None if path is None else path.read_bytes())
        if present:
            raise CorruptStoreError(
                store,
                f"holds chunk files its manifest does not record ({', '.join(sorted(present))}); "
                + _DAMAGED,
                record=f"array {name}",
            )


def _check_metadata(store: Path, name: str, manifest: Mapping, data: bytes | None) -> None:
    if data is not None and _digest(data) != manifest.get("metadata"):
        raise CorruptStoreError(
            store,
            "its zarr.json differs from the one written (shape, type or codecs edited); "
            + _DAMAGED,
            record=f"array {name}",
        )


def _split_chunk_key(key: str) -> tuple[str, str] | None:
    """``("group/array", "c/0/1")`` for a chunk key; ``None`` for anything else."""
    parts = key.split("/")
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "c" and all(p.isdigit() for p in parts[i + 1 :]):
            return "/".join(parts[:i]), "/".join(parts[i:])
        if not parts[i].isdigit():
            return None
    return None


class VerifyingStore(WrapperStore[Store]):
    """A read-only store that checks each chunk it serves against the array's manifest.

    Parameters
    ----------
    store
        The wrapped store (a :class:`zarr.storage.LocalStore` at ``root``).
    root
        The folder the wrapped store reads.
    name
        The cohort store, for error messages (``root`` is it or a folder inside it).
    required
        Whether every array must have a manifest (format version 2 and later).
    """

    def __init__(self, store: Store, *, root: Path, name: Path | None = None, required: bool):
        super().__init__(store)
        self.root, self.name, self.required = root, name or root, required
        self._manifests: dict[str, dict[str, Any] | None] = {}
        self._write_id = write_id(self.name)

    @classmethod
    def at(cls, root: Path, *, name: Path | None = None, required: bool) -> VerifyingStore:
        """A verifying read-only store on the folder ``root``."""
        return cls(LocalStore(root, read_only=True), root=root, name=name, required=required)

    def _with_store(self, store: Store) -> VerifyingStore:
        return type(self)(store, root=self.root, name=self.name, required=self.required)

    def _array_name(self, array: str) -> str:
        return (self.root / array).relative_to(self.name).as_posix()

    def _manifest(self, array: str) -> dict[str, Any] | None:
        if array not in self._manifests:
            name = self._array_name(array)
            manifest = _load_manifest(self.name, self.root / array, name)
            if manifest is None and self.required:
                raise CorruptStoreError(
                    self.name, f"its manifest.json is missing; {_DAMAGED}", record=f"array {name}"
                )
            self._manifests[array] = manifest
        return self._manifests[array]

    async def get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None = None
    ) -> Buffer | None:
        try:
            return await self._checked_get(key, prototype, byte_range)
        except CorruptStoreError as err:
            if self._write_id is not None and write_id(self.name) != self._write_id:
                raise StoreError(
                    self.name,
                    "was replaced by another write after it was opened, so data opened "
                    "before cannot be read; read the store again (gl.read)",
                    record=err.record,
                ) from err
            raise

    async def _checked_get(
        self, key: str, prototype: BufferPrototype, byte_range: ByteRequest | None
    ) -> Buffer | None:
        data = await self._store.get(key, prototype, byte_range)
        if byte_range is not None:
            return data
        if key.endswith("/zarr.json"):
            array = key[: -len("/zarr.json")]
            if data is not None and (self.root / array / MANIFEST).exists():
                manifest = self._manifest(array)
                if manifest is not None:
                    _check_metadata(self.name, self._array_name(array), manifest, data.to_bytes())
            return data
        split = _split_chunk_key(key)
        if split is None:
            return data
        array, chunk = split
        manifest = self._manifest(array)
        if manifest is None:
            return data
        expected = manifest["chunks"].get(chunk)
        if expected is None:
            if data is None:
                return None  # never written: all fill value
            raise CorruptStoreError(
                self.name,
                f"a chunk file its manifest does not record is present; {_DAMAGED}",
                record=f"array {self._array_name(array)}, chunk {chunk}",
            )
        _check_chunk(
            self.name,
            self._array_name(array),
            chunk,
            expected,
            None if data is None else data.as_buffer_like(),
        )
        return data
