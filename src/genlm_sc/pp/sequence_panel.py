"""A panel of sequences given directly (promoter tables, labelled sequence sets)."""

from __future__ import annotations

import re
from collections.abc import Mapping

import anndata as ad
import numpy as np
import pandas as pd

__all__ = ["sequence_panel"]

_NOT_DNA = re.compile(r"[^ACGTN]")


def sequence_panel(
    sequences: pd.DataFrame | pd.Series | Mapping[str, str],
    *,
    sequence_column: str = "sequence",
    name: str | None = None,
) -> ad.AnnData:
    """AnnData with one observation per sequence, sequences in ``obs["sequence"]``.

    Parameters
    ----------
    sequences
        A table with a sequence column (other columns become ``obs`` columns), a Series
        or a mapping id → sequence. The index (or keys) become ``obs_names``.
    sequence_column
        The column holding sequences, for a table.
    name
        Recorded in ``uns["gl"]["source"]`` (default: a table's ``attrs["source"]``, e.g.
        the path :func:`genlm_sc.io.read_labelled_sequences` read, else ``"sequences"``).

    Returns
    -------
    AnnData with no variables; every tool that reads sequences of a panel
    (:func:`genlm_sc.get.sequences`) takes them from ``obs["sequence"]``.
    Sequences are upper-cased and any letter other than ``ACGTN`` becomes ``N``.
    """
    if name is None:
        name = str(getattr(sequences, "attrs", {}).get("source", "sequences"))
    if isinstance(sequences, pd.DataFrame):
        if sequence_column not in sequences.columns:
            raise KeyError(f"no column {sequence_column!r} among {list(sequences.columns)[:10]}")
        obs = sequences.rename(columns={sequence_column: "sequence"}).copy()
    else:
        obs = pd.Series(dict(sequences) if isinstance(sequences, Mapping) else sequences)
        obs = obs.rename("sequence").to_frame()
    obs.index = obs.index.astype(str)
    if obs.index.has_duplicates:
        raise ValueError(f"duplicate sequence ids, e.g. {obs.index[obs.index.duplicated()][0]!r}")
    obs["sequence"] = [_NOT_DNA.sub("N", str(s).upper()) for s in obs["sequence"]]
    obs["length"] = np.array([len(s) for s in obs["sequence"]], dtype=np.int64)
    adata = ad.AnnData(obs=obs)
    adata.uns["gl"] = {"kind": "sequence_panel", "source": name}
    return adata
