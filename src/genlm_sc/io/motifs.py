"""Read transcription-factor motifs: JASPAR and MEME files, or the offline JASPAR database.

Parsing is Biopython's (:mod:`Bio.motifs`); the database is pyjaspar's offline SQLite copy of
JASPAR. Every reader returns the same representation: a list of
:class:`Bio.motifs.jaspar.Motif`, with ``.matrix_id``, ``.name`` and ``.counts`` (a
position frequency matrix over ``ACGT``).
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

from .errors import InputFileError
from .files import existing_file, open_text, read_errors

__all__ = ["read_motifs"]

_JASPAR_SUFFIXES = (".jaspar", ".pfm")
_MEME_SUFFIXES = (".meme", ".meme.txt")
_SHOWN = 10  # how many offending ids an error message lists


def read_motifs(
    source: str | os.PathLike[str] | None = None,
    *,
    release: str = "JASPAR2024",
    collection: str | None = "CORE",
    tax_group: str | Iterable[str] | None = "vertebrates",
    ids: Iterable[str] | None = None,
) -> list:
    """Read position frequency matrices of transcription-factor motifs.

    Parameters
    ----------
    source
        A JASPAR file (``>ID name`` headers followed by four rows of counts, as JASPAR's
        "JASPAR" and "PFM" downloads) or a MEME file in the minimal MEME motif format (as
        JASPAR's "MEME" download and the MEME suite's motif databases), either one plain or
        gzip-compressed (told apart by content). The format is recognised from the content
        (a first line starting with ``>`` or ``MEME version``), else from the name.
        ``None``: the offline JASPAR database of :mod:`pyjaspar` (the optional dependency
        ``pip install 'genlm_sc[motifs]'``), at ``release``.
    release
        JASPAR release of the offline database, pinned by default so results do not change
        when pyjaspar adds a release (its own default is the newest).
    collection
        JASPAR collection (database only): ``"CORE"``, ``"UNVALIDATED"``, ... ``None``: all.
    tax_group
        Taxonomic group(s) (database only): ``"vertebrates"``, ``"insects"``, ... ``None``:
        all. Like JASPAR's non-redundant downloads, only the latest version of each matrix
        is returned, so the defaults give the 879 motifs of JASPAR 2024 CORE vertebrates
        non-redundant.
    ids
        Keep only these matrices, in this order: versioned ids (``"MA0139.2"``) or base ids
        (``"MA0139"``, any version present). An id that is not in the source is an error.

    Returns
    -------
    list of :class:`Bio.motifs.jaspar.Motif`
        In file (or database) order, with ``matrix_id``, ``name`` (the TF name; the id when
        the file gives none) and ``counts``. A MEME file holds probabilities: Biopython turns
        them into counts as ``round(p * nsites)`` (``nsites`` defaults to 20), so with a
        pseudocount the scores differ slightly from those of the JASPAR counts.

    Raises
    ------
    InputFileError
        The file is missing, not a motif file, or holds a malformed matrix (the message
        names the file and the motif).
    KeyError
        Some ``ids`` are not in the source.
    ImportError
        ``source=None`` without pyjaspar installed.

    Examples
    --------
    >>> import genlm_sc as gl
    >>> motifs = gl.io.read_motifs(ids=["MA0139"])  # doctest: +SKIP
    >>> motifs[0].matrix_id, motifs[0].name  # doctest: +SKIP
    ('MA0139.2', 'CTCF')
    """
    if source is None:
        motifs = _read_database(release, collection, tax_group)
        where = f"pyjaspar {release}"
    else:
        path = existing_file(source)
        motifs = _read_file(path)
        where = os.fspath(path)
    if ids is not None:
        motifs = _select(motifs, ids, where)
    return motifs


# --------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------


def _read_file(path: Path) -> list:
    from Bio import motifs as bio_motifs

    with read_errors(path), open_text(path) as handle:
        text = handle.read()
    kind = _sniff(path, text)
    fmt = "jaspar" if kind == "jaspar" else "minimal"
    try:
        parsed = list(bio_motifs.parse(io.StringIO(text), fmt))
    except Exception as err:  # Biopython raises plain Exception for ragged rows
        raise InputFileError(
            path,
            f"cannot parse as a {_LABEL[kind]} motif file ({err})",
            record=_failing_record(text, kind),
        ) from err
    if kind == "meme":
        parsed = _meme_as_jaspar(path, text, parsed)
    else:
        _check_jaspar_headers(path, text, parsed)
    if not parsed:
        raise InputFileError(path, f"no motifs found in this {_LABEL[kind]} file")
    for motif in parsed:
        _check_matrix(path, motif)
    return parsed


_LABEL = {"jaspar": "JASPAR", "meme": "MEME"}


def _failing_record(text: str, kind: str) -> str | None:
    """The first motif that Biopython cannot parse on its own, for the error message."""
    from Bio import motifs as bio_motifs

    marker = ">" if kind == "jaspar" else "MOTIF"
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.lstrip().startswith(marker)]
    preamble = "" if kind == "jaspar" else "".join(lines[: starts[0]]) if starts else ""
    for n, (lo, hi) in enumerate(zip(starts, [*starts[1:], len(lines)], strict=True)):
        block = preamble + "".join(lines[lo:hi])
        try:
            list(bio_motifs.parse(io.StringIO(block), "jaspar" if kind == "jaspar" else "minimal"))
        except Exception:
            words = lines[lo].strip().removeprefix(marker).split()
            name = words[0] if words else f"number {n + 1}"
            return f"motif {name}, line {lo + 1}"
    return None


def _sniff(path: Path, text: str) -> str:
    """``"jaspar"`` or ``"meme"``, from the first non-blank line, else from the file name."""
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if first.startswith(">"):
        return "jaspar"
    if first.startswith("MEME version"):
        return "meme"
    name = path.name.lower().removesuffix(".gz")
    if name.endswith(_JASPAR_SUFFIXES):
        return "jaspar"
    if name.endswith(_MEME_SUFFIXES):
        return "meme"
    shown = first[:60] if first else "the file is empty"
    raise InputFileError(
        path,
        "not a motif file: expected JASPAR ('>ID name' headers) or minimal MEME format "
        f"(first line 'MEME version ...'), found {shown!r}",
        record="line 1",
    )


def _check_jaspar_headers(path: Path, text: str, parsed: list) -> None:
    """Every ``>`` header gave one motif (Biopython drops a matrix with too few rows)."""
    headers = [
        (number, (line.strip()[1:].split() or [""])[0])
        for number, line in enumerate(text.splitlines(), start=1)
        if line.lstrip().startswith(">")
    ]
    got = [motif.matrix_id for motif in parsed]
    if got == [wanted for _, wanted in headers]:
        return
    if None in got:
        raise InputFileError(path, "rows of counts before the first '>ID name' header")
    bad = next(
        (i for i, (_, wanted) in enumerate(headers) if i >= len(got) or got[i] != wanted),
        len(headers) - 1,
    )
    number, wanted = headers[bad] if headers else (1, "")
    raise InputFileError(
        path,
        "a matrix does not have four rows (A, C, G, T) of counts",
        record=f"motif {wanted}, line {number}",
    )


_MOTIF_LINE = re.compile(r"^MOTIF[ \t]+(\S+)(?:[ \t]+(\S+))?", re.MULTILINE)
_WIDTH = re.compile(r"\bw=\s*(\d+)")


def _meme_as_jaspar(path: Path, text: str, parsed: list) -> list:
    """Biopython's minimal-MEME motifs as JASPAR motifs: ``MOTIF id name`` gives both."""
    from Bio.motifs import jaspar

    headers = _MOTIF_LINE.findall(text)
    if len(headers) != len(parsed):
        raise InputFileError(
            path,
            f"{len(headers)} MOTIF lines but {len(parsed)} motifs could be read; "
            "is every motif followed by a 'letter-probability matrix:' block?",
        )
    blocks = re.split(r"^MOTIF[ \t]", text, flags=re.MULTILINE)[1:]
    out = []
    for (matrix_id, name), block, motif in zip(headers, blocks, parsed, strict=True):
        width = _WIDTH.search(block)
        if width is not None and int(width.group(1)) != motif.length:
            raise InputFileError(
                path,
                f"the matrix has {motif.length} rows of four probabilities where its "
                f"header says w= {width.group(1)}",
                record=f"motif {matrix_id}",
            )
        counts = {letter: list(motif.counts[letter]) for letter in "ACGT"}
        out.append(jaspar.Motif(matrix_id, name or matrix_id, counts=counts))
    return out


def _check_matrix(path: Path, motif) -> None:
    record = f"motif {motif.matrix_id}"
    if motif.matrix_id is None:
        raise InputFileError(path, "a matrix comes before any '>ID name' header")
    rows = [list(motif.counts[letter]) for letter in "ACGT"]
    lengths = {len(row) for row in rows}
    if len(lengths) != 1 or 0 in lengths:
        shown = ", ".join(f"{b}: {len(r)}" for b, r in zip("ACGT", rows, strict=True))
        raise InputFileError(path, f"rows of unequal or zero length ({shown})", record=record)
    values = [v for row in rows for v in row]
    if any(not math.isfinite(v) or v < 0 for v in values):
        raise InputFileError(path, "counts must be finite and non-negative", record=record)
    if any(sum(column) <= 0 for column in zip(*rows, strict=True)):
        raise InputFileError(path, "a column has no counts at all", record=record)


# --------------------------------------------------------------------------------------
# The offline JASPAR database
# --------------------------------------------------------------------------------------


def _read_database(
    release: str, collection: str | None, tax_group: str | Iterable[str] | None
) -> list:
    try:
        import pyjaspar
    except ImportError as err:
        raise ImportError(
            "reading the JASPAR database needs pyjaspar: pip install 'genlm_sc[motifs]' "
            "(or pip install pyjaspar), or pass a JASPAR/MEME file as source"
        ) from err
    known = list(getattr(pyjaspar, "jaspar_releases", {}))
    if release not in known:
        raise ValueError(f"unknown JASPAR release {release!r}; pyjaspar has {sorted(known)}")
    groups = (
        None
        if tax_group is None
        else [tax_group]
        if isinstance(tax_group, str)
        else list(tax_group)
    )
    database = pyjaspar.jaspardb(release=release)
    try:
        motifs = list(database.fetch_motifs(collection=collection, tax_group=groups))
    finally:
        database.conn.close()
    if not motifs:
        raise ValueError(
            f"JASPAR {release} has no motifs in collection {collection!r} for tax_group {groups}"
        )
    return motifs


def _select(motifs: list, ids: Iterable[str], where: str) -> list:
    if isinstance(ids, str):
        ids = [ids]
    by_id = {m.matrix_id: m for m in motifs}
    by_base: dict[str, object] = {}
    for m in motifs:  # the latest version wins
        base = str(m.matrix_id).partition(".")[0]
        current = by_base.get(base)
        if current is None or _version(m.matrix_id) > _version(current.matrix_id):
            by_base[base] = m
    chosen, missing = [], []
    for wanted in ids:
        motif = by_id.get(str(wanted), by_base.get(str(wanted)))
        (missing if motif is None else chosen).append(str(wanted) if motif is None else motif)
    if missing:
        raise KeyError(
            f"{len(missing)} motif ids are not in {where}: {missing[:_SHOWN]}"
            + (" ..." if len(missing) > _SHOWN else "")
        )
    return chosen


def _version(matrix_id: str) -> int:
    _, _, version = str(matrix_id).partition(".")
    return int(version) if version.isdigit() else -1
