"""eQTL tables (GTEx ``*.egenes.txt.gz`` / ``*.signif_variant_gene_pairs.txt.gz`` layout)."""

from __future__ import annotations

import os

import pandas as pd

from .errors import InputFileError
from .files import existing_file

__all__ = ["read_eqtl"]

#: Our column → the names it may have in the file, first match wins.
_COLUMNS = {
    "rsid": ("rs_id_dbSNP151_GRCh38p7", "rs_id_dbSNP151_GRCh37p13", "rsid", "rs_id", "snp"),
    "gene_id": ("gene_id", "phenotype_id"),
    "gene_name": ("gene_name", "gene"),
    "chrom": ("chr", "chrom", "variant_chr"),
    "pos": ("variant_pos", "pos", "position"),
    "ref": ("ref",),
    "alt": ("alt",),
    "slope": ("slope", "beta"),
    "qval": ("qval", "pval_nominal", "pval"),
}
_REQUIRED = ("rsid", "ref", "alt", "slope")


def read_eqtl(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read an eQTL table: one row per variant–gene pair with the effect of the ALT allele.

    Parameters
    ----------
    path
        Tab-separated, optionally gzipped. GTEx v8 eGene and significant-pair files read as
        they are; other tables need at least an rsID column (``rsid``/``rs_id``/``snp``),
        ``ref``, ``alt`` and ``slope`` (or ``beta``).

    Returns
    -------
    DataFrame with columns ``rsid``, ``gene_id``, ``gene_name``, ``chrom``, ``position``
    (0-based, ``variant_pos - 1``; on the table's own genome build), ``ref``, ``alt``,
    ``slope`` (effect per ALT allele) and ``qval`` (the q-value, else the nominal p-value),
    absent columns filled with missing values; rows without an rsID are dropped.
    """
    path = existing_file(path)
    try:
        raw = pd.read_csv(path, sep="\t", dtype=str, comment=None)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise InputFileError(path, f"not a readable tab-separated table ({error})") from error
    columns = {}
    for ours, names in _COLUMNS.items():
        found = next((n for n in names if n in raw.columns), None)
        if found is None and ours in _REQUIRED:
            raise InputFileError(
                path, f"no {ours!r} column (looked for {', '.join(names)}); has "
                f"{', '.join(raw.columns[:12])}",
            )  # fmt: skip
        columns[ours] = raw[found] if found else pd.Series(pd.NA, index=raw.index, dtype=object)
    table = pd.DataFrame(columns)
    table = table[table["rsid"].notna() & (table["rsid"] != ".")].reset_index(drop=True)
    for name in ("slope", "qval"):
        values = pd.to_numeric(table[name], errors="coerce")
        bad = values.isna() & table[name].notna()
        if bad.any():
            row = int(bad.to_numpy().argmax())
            raise InputFileError(
                path, f"{name} {table[name].iloc[row]!r} is not a number",
                record=f"rsID {table['rsid'].iloc[row]}",
            )  # fmt: skip
        table[name] = values
    table["position"] = pd.to_numeric(table.pop("pos"), errors="coerce").astype("Int64") - 1
    order = ["rsid", "gene_id", "gene_name", "chrom", "position", "ref", "alt", "slope", "qval"]
    return table[order]
