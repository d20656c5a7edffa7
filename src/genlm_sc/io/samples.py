"""Sample descriptions: 1000 Genomes-style panel files."""

from __future__ import annotations

import os

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
