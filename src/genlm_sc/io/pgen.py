"""Genotypes from PLINK 2 filesets (``.pgen`` + ``.pvar`` + ``.psam``) through pgenlib.

Positions are 0-based (``POS - 1``); alleles index ``[REF, *ALT]`` as in the ``.pvar``
(multi-allelic records included); a missing call is ``-1``. Sample ids are the ``IID``
column of the ``.psam``. pgenlib is imported when a file is opened.

PGEN keeps the phase of heterozygous calls only: an unphased heterozygote comes back
with ``phased=False`` and its alleles in index order (``0/1`` for a VCF's ``1/0``), and
homozygous calls count as phased. PLINK stores haploid calls as homozygous diploid ones.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import InputFileError
from .indexed_genotypes import IndexedGenotypes, companion, import_reader_library
from .samples import select_samples
from .variants import VariantBlock, info_values, passed_filters, r2_field

_BIM_COLUMNS = {
    6: ["#CHROM", "ID", "CM", "POS", "ALT", "REF"],
    5: ["#CHROM", "ID", "POS", "ALT", "REF"],
}


def pgen_path(path: str | os.PathLike) -> Path | None:
    """The ``.pgen`` that ``path`` names (the file itself or a PLINK prefix), or ``None``."""
    path = Path(path)
    if path.suffix == ".pgen":
        return path
    candidate = Path(os.fspath(path) + ".pgen")
    return candidate if candidate.is_file() else None


class PgenFile(IndexedGenotypes):
    """A PLINK 2 fileset opened for region queries over a set of samples.

    Parameters
    ----------
    path
        The ``.pgen`` file, or the fileset prefix; ``.pvar`` (or ``.pvar.zst``) and ``.psam``
        must lie next to it.
    samples
        Sample ids (``IID``) to read, in this order; all samples when ``None``.
    """

    format = "pgen"
    sort_hint = "sort it: `plink2 --pfile PREFIX --sort-vars --make-pgen --out PREFIX.sorted`"

    def __init__(self, path: str | os.PathLike, *, samples: Sequence[str] | None = None):
        self.path = pgen_path(path) or Path(path)
        if not self.path.is_file():
            raise InputFileError(self.path, "no such PGEN file")
        pvar = companion(self.path, [".pvar", ".pvar.zst"], what="variant table (.pvar)")
        psam = companion(self.path, [".psam"], what="sample table (.psam)")
        table, header = _read_pvar(pvar)
        all_samples = _read_psam(psam)
        self.samples = select_samples(
            psam, all_samples, samples, what="PGEN", listing=".psam", record=None
        )
        self._pvar = pvar
        #: The files read (recorded in provenance).
        self.files = [self.path, pvar, psam]
        self._ids = table["ID"].to_numpy(dtype=object)
        self._refs = table["REF"].to_numpy(dtype=object)
        self._alts = table["ALT"].to_numpy(dtype=object)
        contigs, codes = np.unique(table["#CHROM"].to_numpy(dtype=str), return_inverse=True)
        positions = _positions(pvar, table)
        self.has_filters = True  # plink2 leaves FILTER out only when every value is missing
        self._filters = table["FILTER"].to_numpy(dtype=object) if "FILTER" in table else None
        self._infos = table["INFO"].to_numpy(dtype=object) if "INFO" in table else None
        self.r2_field = r2_field(
            line[len("##INFO=<ID=") :].split(",", 1)[0]
            for line in header
            if line.startswith("##INFO=<ID=")
        )
        self._index(
            [str(c) for c in contigs], codes, positions,
            lengths=_contig_lengths(header), assembly=None,
        )  # fmt: skip
        n_alleles = 1 + np.array([a.count(",") + 1 for a in self._alts], dtype=np.int64)
        offsets = None
        if (n_alleles > 2).any():
            offsets = np.concatenate([[0], np.cumsum(n_alleles)]).astype(np.uintp)
        pgenlib = import_reader_library("pgenlib", what="PGEN files")
        order = {s: i for i, s in enumerate(all_samples)}
        columns = np.array([order[s] for s in self.samples], dtype=np.uint32)
        subset = np.unique(columns)
        self._columns = np.searchsorted(subset, columns)
        if (self._columns == np.arange(len(subset))).all():
            self._columns = slice(None)  # the file's order: no reordering copy
        try:
            self._reader = pgenlib.PgenReader(
                os.fsencode(self.path),
                raw_sample_ct=len(all_samples),
                variant_ct=len(table),
                sample_subset=subset if len(subset) < len(all_samples) else None,
                allele_idx_offsets=offsets,
            )
        except RuntimeError as err:
            raise InputFileError(
                self.path,
                f"cannot open as PGEN with {len(table)} variants ({pvar.name}) and "
                f"{len(all_samples)} samples ({psam.name}): {err}",
            ) from err
        self._n_read = len(subset)

    def _read(self, chrom: str, lo: int, hi: int) -> VariantBlock:
        n = hi - lo
        calls = np.empty((n, 2 * self._n_read), dtype=np.int32)
        phase = np.empty((n, self._n_read), dtype=np.uint8)
        try:
            self._reader.read_alleles_and_phasepresent_range(lo, hi, calls, phase)
        except RuntimeError as err:
            raise InputFileError(
                self.path,
                f"cannot read genotypes ({err})",
                record=f"records {chrom}:{self._positions[lo] + 1}-{self._positions[hi - 1] + 1}",
            ) from err
        alleles = calls.reshape(n, self._n_read, 2)[:, self._columns].astype(np.int8)
        alleles[alleles < 0] = -1  # pgenlib writes -9
        phased = phase[:, self._columns].view(bool) | (alleles[..., 0] == alleles[..., 1])
        positions = self._positions[lo:hi]
        filters = self._filters[lo:hi] if self._filters is not None else ["."] * n
        r2 = None
        if self.r2_field is not None and self._infos is not None:
            infos = list(self._infos[lo:hi])
            r2 = info_values(self._pvar, infos, self.r2_field, chrom=chrom, positions=positions)
        return VariantBlock(
            chrom=chrom,
            positions=positions,
            ids=list(self._ids[lo:hi]),
            refs=list(self._refs[lo:hi]),
            alts=[a.split(",") for a in self._alts[lo:hi]],
            alleles=alleles,
            phased=phased,
            passed_filters=passed_filters(list(filters)),
            imputation_r2=r2,
        )

    def close(self) -> None:
        """Close the ``.pgen``."""
        self._reader.close()


def _read_pvar(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """The ``.pvar`` (or ``.bim``-like) table as strings, and its ``##`` header lines."""
    compression = "zstd" if path.suffix == ".zst" else None
    try:
        with _open_text(path) as handle:
            header = []
            for line in handle:
                if not line.startswith("##"):
                    break
                header.append(line.rstrip("\n"))
            first = line.rstrip("\n")
        names = first.split("\t") if first.startswith("#CHROM") else None
        table = pd.read_csv(
            path, sep="\t", comment=None, skiprows=len(header) + (names is not None),
            header=None, names=names, dtype=str, keep_default_na=False,
            compression=compression,
        )  # fmt: skip
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, EOFError) as err:
        raise InputFileError(path, f"cannot read as a PLINK 2 variant table ({err})") from err
    if names is None:
        if table.shape[1] not in _BIM_COLUMNS:
            raise InputFileError(
                path, "no #CHROM header line, and not the 5 or 6 columns of a .bim", record="line 1"
            )
        table.columns = _BIM_COLUMNS[table.shape[1]]
    missing = [c for c in ("#CHROM", "POS", "ID", "REF", "ALT") if c not in table.columns]
    if missing:
        raise InputFileError(
            path, f"the header line lacks column(s) {', '.join(missing)}", record="#CHROM line"
        )
    return table, header


def _open_text(path: Path):
    if path.suffix == ".zst":
        import io

        zstandard = import_reader_library("zstandard", what=".pvar.zst files")
        return io.TextIOWrapper(zstandard.ZstdDecompressor().stream_reader(open(path, "rb")))
    return open(path, encoding="utf-8")


def _positions(path: Path, table: pd.DataFrame) -> np.ndarray:
    """0-based positions from the ``POS`` column, refusing anything but whole numbers."""
    pos = table["POS"]
    bad = ~pos.str.fullmatch(r"\d+")
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise InputFileError(
            path,
            f"POS {pos.iloc[i]!r} is not a whole number",
            record=f"record {table['#CHROM'].iloc[i]}:{pos.iloc[i]} {table['ID'].iloc[i]}",
        )
    return pos.to_numpy(dtype=np.int64) - 1


def _contig_lengths(header: list[str]) -> dict[str, int]:
    lengths = {}
    for line in header:
        if line.startswith("##contig=<"):
            fields = dict(
                item.split("=", 1) for item in line[10:].rstrip(">").split(",") if "=" in item
            )
            if "ID" in fields and fields.get("length", "").isdigit():
                lengths[fields["ID"]] = int(fields["length"])
    return lengths


def _read_psam(path: Path) -> list[str]:
    """Sample ids: the ``IID`` column of a ``.psam`` (or the second column of a ``.fam``)."""
    with open(path, encoding="utf-8") as handle:
        lines = [line.rstrip("\n") for line in handle if line.strip()]
    while lines and lines[0].startswith("##"):
        lines.pop(0)
    if not lines:
        raise InputFileError(path, "no samples")
    if lines[0].startswith("#"):
        columns = lines[0][1:].split("\t")
        if "IID" not in columns:
            raise InputFileError(path, "the header line has no IID column", record="line 1")
        column, rows = columns.index("IID"), lines[1:]
    else:
        column, rows = 1, lines
    ids = []
    for number, line in enumerate(rows, start=len(lines) - len(rows) + 1):
        fields = line.split()
        if len(fields) <= column:
            raise InputFileError(path, "too few columns", record=f"line {number}")
        ids.append(fields[column])
    return ids
