"""Reconcile contig names between files (``chr20`` vs ``20``, ``chrM`` vs ``MT``)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence

from .errors import InputFileError

_SPECIAL = {"chrM": "MT", "MT": "chrM", "chrMT": "MT"}


def contig_aliases(name: str) -> list[str]:
    """Names under which a contig may appear in another file, the name itself first.

    Examples
    --------
    >>> contig_aliases("chr20")
    ['chr20', '20']
    >>> contig_aliases("MT")
    ['MT', 'chrM', 'chrMT']
    """
    names = [name]
    if name in _SPECIAL:
        names.append(_SPECIAL[name])
    if name == "MT":
        names.append("chrMT")
    if name.startswith("chr"):
        names.append(name[3:])
    else:
        names.append("chr" + name)
    seen: list[str] = []
    for n in names:
        if n not in seen:
            seen.append(n)
    return seen


def match_contigs(
    requested: Iterable[str],
    available: Sequence[str],
    *,
    path: str | os.PathLike | None,
    what: str = "contig",
) -> dict[str, str]:
    """Map each requested contig name to the name used in a file.

    Exact names win; otherwise ``chr``-prefixed and bare names are matched to each other
    (and ``chrM`` to ``MT``). A name with no counterpart is refused.

    Parameters
    ----------
    requested
        Contig names used by the caller (for example from a gene annotation).
    available
        Contig names present in the file.
    path
        The file, for the error message.
    what
        What the names are, for the error message.

    Returns
    -------
    A dict ``{requested name: name in the file}``.

    Raises
    ------
    InputFileError
        If a requested contig has no counterpart in the file.
    """
    present = set(available)
    mapping: dict[str, str] = {}
    for name in dict.fromkeys(requested):
        match = next((alias for alias in contig_aliases(name) if alias in present), None)
        if match is None:
            shown = ", ".join(list(available)[:10]) + (" ..." if len(available) > 10 else "")
            raise InputFileError(
                path,
                f"unknown {what} {name!r}: the file has no contig of that name "
                f"(also tried {contig_aliases(name)[1:]}); its contigs are: {shown or 'none'}",
            )
        mapping[name] = match
    return mapping
