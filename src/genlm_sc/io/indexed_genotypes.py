"""The region reading shared by genotype files whose variant table is read whole at opening.

PGEN (``.pvar``), VCF Zarr (``variant_contig``, ``variant_position``) and BGEN (its
index) all list every record's contig and position up front; a region is then two binary
searches within its contig, and only the genotypes of the records found are read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import InputFileError
from .variants import VariantBlock, check_allele_indices, check_bases


class IndexedGenotypes:
    """Base of the PGEN, VCF Zarr and BGEN readers (the interface of :class:`VariantFile`).

    Subclasses set up the variant table with :meth:`_index` and read genotypes in
    :meth:`_read`; records of a contig must be together and sorted by position.
    """

    #: Name of the format, recorded in provenance (``"pgen"``, ``"vcf_zarr"``, ``"bgen"``).
    format: str = ""
    #: How to sort such a file, for messages.
    sort_hint: str = ""

    path: Path
    samples: list[str]
    files: list[Path]
    #: Whether the format keeps ``FILTER`` (``VariantBlock.passed_filters`` is filled).
    has_filters: bool = False
    #: The ``INFO`` field read as imputation R², or ``None``.
    r2_field: str | None = None

    def _index(
        self,
        contigs: Sequence[str],
        codes: np.ndarray,
        positions: np.ndarray,
        *,
        lengths: dict[str, int] | None = None,
        assembly: str | None = None,
    ) -> None:
        """Record where each contig's records lie, refusing scattered or unsorted ones.

        Parameters
        ----------
        contigs
            Contig names, indexed by ``codes``.
        codes
            Contig of each record (an index into ``contigs``).
        positions
            0-based position of each record.
        lengths, assembly
            Contig lengths and genome build the file declares.
        """
        codes = np.asarray(codes, dtype=np.int64)
        self._positions = np.asarray(positions, dtype=np.int64)
        self._contig_list = list(contigs)
        self._lengths = dict(lengths or {})
        self._assembly = assembly
        self._ranges: dict[str, tuple[int, int]] = {}
        starts = np.flatnonzero(np.diff(codes, prepend=-1) != 0) if len(codes) else []
        stops = [*starts[1:], len(codes)]
        for first, stop in zip(starts, stops, strict=True):
            name = self._contig_list[codes[first]]
            if name in self._ranges:
                raise InputFileError(
                    self.path,
                    f"the records of contig {name} are not together; {self.sort_hint}",
                    record=f"record {name}:{self._positions[first] + 1}",
                )
            self._ranges[name] = (int(first), int(stop))
            unsorted = np.flatnonzero(np.diff(self._positions[first:stop]) < 0)
            if len(unsorted):
                raise InputFileError(
                    self.path,
                    f"records are not sorted by position; {self.sort_hint}",
                    record=f"record {name}:{self._positions[first + unsorted[0] + 1] + 1}",
                )

    def header_contig_lengths(self) -> dict[str, int]:
        """Contig lengths the file declares."""
        return dict(self._lengths)

    def contig_names(self) -> list[str]:
        """Contigs with records, then any more the file declares."""
        return list(dict.fromkeys([*self._ranges, *self._lengths]))

    def header_assembly(self) -> str | None:
        """The genome build the file declares, if any."""
        return self._assembly

    def has_records(self) -> bool:
        """Whether the file holds at least one record."""
        return bool(len(self._positions))

    def fetch(self, chrom: str, start: int, end: int) -> VariantBlock:
        """Records whose position lies in ``[start, end)`` (0-based), in file order.

        Raises
        ------
        InputFileError
            On a genotype pointing past its record's alleles, an allele that is not bases, or
            a record the format's library cannot read.
        """
        first, stop = self._ranges.get(chrom, (0, 0))
        lo, hi = first + np.searchsorted(self._positions[first:stop], [start, end])
        if hi <= lo:
            return self._empty(chrom)
        block = self._read(chrom, int(lo), int(hi))
        check_allele_indices(self.path, block)
        check_bases(self.path, block)
        return block

    def _empty(self, chrom: str) -> VariantBlock:
        n = len(self.samples)
        return VariantBlock(
            chrom=chrom,
            positions=np.zeros(0, dtype=np.int64),
            alleles=np.zeros((0, n, 2), dtype=np.int8),
            phased=np.zeros((0, n), dtype=bool),
            passed_filters=np.zeros(0, dtype=bool) if self.has_filters else None,
            imputation_r2=None if self.r2_field is None else np.zeros(0, dtype=np.float32),
        )

    def _read(self, chrom: str, lo: int, hi: int) -> VariantBlock:
        """Records ``lo`` to ``hi - 1`` of the file (all on ``chrom``)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the file."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def import_reader_library(module: str, *, what: str):
    """Import the library that reads a genotype format, telling how to install it if absent."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"reading {what} needs {module}: pip install 'genlm_sc[formats]' "
            f"(or pip install {module})"
        ) from err


def companion(path: Path, suffixes: Sequence[str], *, what: str) -> Path:
    """The file next to ``path`` with the same stem and one of ``suffixes``.

    Raises
    ------
    InputFileError
        Naming ``path`` and the names looked for, when none exists.
    """
    stem = os.fspath(path.with_suffix(""))
    for suffix in suffixes:
        candidate = Path(stem + suffix)
        if candidate.is_file():
            return candidate
    names = " or ".join(Path(stem + s).name for s in suffixes)
    raise InputFileError(path, f"its {what} is missing: no {names} next to it")
