"""Sample descriptions: 1000 Genomes-style panel files."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence

import pandas as pd

from .errors import InputFileError
from .files import existing_file

_COLUMN_NAMES = {
    "sample": "sample",
    "pop": "population",
    "population": "population",
    "super_pop": "super_population",
    "super_population": "super_population",
    "gender": "sex",
    "sex": "sex",
}


def read_sample_panel(path: str | os.PathLike) -> pd.DataFrame:
    """Read a whitespace-separated sample panel (1000 Genomes ``*.panel`` layout).

    Parameters
    ----------
    path
        File with a header naming at least ``sample``; ``pop``, ``super_pop`` and
        ``gender`` are renamed ``population``, ``super_population`` and ``sex``.

    Returns
    -------
    DataFrame indexed by sample id.
    """
    path = existing_file(path, what="sample panel")
    try:
        table = pd.read_csv(path, sep=r"\s+", dtype=str)
    except pd.errors.EmptyDataError as err:
        raise InputFileError(
            path,
            "the sample panel is empty; it needs a header line naming at least a 'sample' "
            "column (as in 1000 Genomes: sample pop super_pop gender), then one line per sample",
        ) from err
    except (pd.errors.ParserError, UnicodeDecodeError, EOFError, OSError) as err:
        raise InputFileError(path, f"cannot parse the sample panel ({err})") from err
    table = table.rename(columns={c: _COLUMN_NAMES.get(c.lower(), c) for c in table.columns})
    if "sample" not in table.columns:
        raise InputFileError(path, "no 'sample' column in the header", record="line 1")
    duplicated = table["sample"][table["sample"].duplicated()].unique()
    if len(duplicated):
        raise InputFileError(path, f"duplicate sample ids: {', '.join(duplicated[:10])}")
    return table.set_index("sample")


def select_samples(
    path: str | os.PathLike,
    available: Sequence[str],
    samples: Sequence[str] | None,
    *,
    what: str = "VCF",
    listing: str = "header",
    record: str | None = "#CHROM line",
) -> list[str]:
    """The sample ids to read from a genotype file, checked against those it holds.

    Parameters
    ----------
    path
        The genotype file, for messages.
    available
        The sample ids the file holds, in its order.
    samples
        The ids asked for, in the order wanted; ``None`` for all of them.
    what
        The kind of file, for messages (``"VCF"``, ``"PGEN"``).
    listing, record
        Where the file lists its samples, in words and as a record, for messages.

    Returns
    -------
    list of str
        The ids to read, in order.

    Raises
    ------
    InputFileError
        If the file lists a sample twice, or a requested sample is not in it.
    ValueError
        If ``samples`` repeats an id.
    """
    duplicated = [s for s, n in Counter(available).items() if n > 1]
    if duplicated:
        raise InputFileError(
            path,
            f"duplicate sample ids in the {listing}: {', '.join(map(str, duplicated[:10]))}",
            record=record,
        )
    if samples is None:
        return list(available)
    samples = list(samples)
    repeated = [s for s, n in Counter(samples).items() if n > 1]
    if repeated:
        raise ValueError(f"duplicate sample ids in samples=: {', '.join(repeated[:10])}")
    known = set(available)
    missing = [s for s in samples if s not in known]
    if missing:
        raise InputFileError(
            path,
            f"{len(missing)} requested samples are not in the {what}: {', '.join(missing[:10])}",
        )
    return samples
