"""Records of one region with their genotypes, whatever file format they came from.

Every genotype reader (VCF/BCF, PGEN, VCF Zarr, BGEN) returns a :class:`VariantBlock`, and
the checks here (allele indices, allele bases) are shared by all of them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import InputFileError

#: Second allele of a haploid call.
ABSENT = -2

#: IUPAC nucleotide codes, either case: what a REF or a sequence ALT allele may hold.
IUPAC_BASES = "ACGTNRYSWKMBDHVacgtnryswkmbdhv"
_IUPAC_BYTES = IUPAC_BASES.encode()


def is_symbolic_allele(allele: str) -> bool:
    """Whether an ALT allele names no sequence to write into a haplotype.

    Symbolic (``<DEL>``), spanning deletion (``*``), missing (``.``), breakend
    (``G]17:198982]``, ``G.``) and empty alleles are skipped when haplotypes are built.
    """
    return not allele or allele[0] == "<" or any(c in allele for c in "*.[]")


@dataclass
class VariantBlock:
    """The records of one region, with genotypes of the selected samples.

    Attributes
    ----------
    chrom
        Contig name as written in the VCF.
    positions
        0-based start of each record (``POS - 1``), ``int64``.
    ids, refs
        ``ID`` and ``REF`` of each record.
    alts
        ``ALT`` alleles of each record (a list per record).
    alleles
        ``int8`` array ``(record, sample, 2)`` of allele indices; ``-1`` is missing,
        :data:`ABSENT` the second allele of a haploid call.
    phased
        ``bool`` array ``(record, sample)``: whether the call is phased (``|``).
    passed_filters
        ``bool`` per record: its ``FILTER`` is ``PASS`` or missing (``.``); ``None`` when
        the file holds no ``FILTER`` information (BGEN).
    imputation_r2
        ``float`` per record: the imputation R² from ``INFO`` (``R2``, ``DR2`` or ``INFO``),
        NaN where a record has none; ``None`` when the file declares no such field.
    """

    chrom: str
    positions: np.ndarray
    ids: list[str] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)
    alts: list[list[str]] = field(default_factory=list)
    alleles: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 2), np.int8))
    phased: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), bool))
    passed_filters: np.ndarray | None = None
    imputation_r2: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.positions)

    def slice(self, start: int, stop: int) -> VariantBlock:
        """Records ``start`` to ``stop - 1`` (views, no copies of the genotypes)."""
        return self._take(slice(start, stop), lambda values: values[start:stop])

    def select(self, mask: np.ndarray) -> VariantBlock:
        """The records where ``mask`` is true."""
        index = np.flatnonzero(mask)
        return self._take(index, lambda values: [values[i] for i in index])

    def _take(self, index, take_list) -> VariantBlock:
        def optional(values):
            return None if values is None else values[index]

        return replace(
            self,
            positions=self.positions[index],
            ids=take_list(self.ids),
            refs=take_list(self.refs),
            alts=take_list(self.alts),
            alleles=self.alleles[index],
            phased=self.phased[index],
            passed_filters=optional(self.passed_filters),
            imputation_r2=optional(self.imputation_r2),
        )

    def record_name(self, i: int) -> str:
        """``chrom:POS ID REF>ALT`` of record ``i`` (1-based ``POS``), for messages."""
        return (
            f"record {self.chrom}:{self.positions[i] + 1} {self.ids[i]} "
            f"{self.refs[i]}>{','.join(self.alts[i])}"
        )


def check_allele_indices(path: Path, block: VariantBlock) -> None:
    """Refuse genotypes that point past the record's ALT alleles."""
    if not len(block) or not block.alleles.shape[1]:
        return
    n_alleles = np.array([1 + len(a) for a in block.alts])
    bad = (block.alleles.max(axis=(1, 2)) >= n_alleles).nonzero()[0]
    if len(bad):
        i = int(bad[0])
        raise InputFileError(
            path,
            f"a genotype refers to allele {int(block.alleles[i].max())} but the record has "
            f"only {n_alleles[i] - 1} ALT allele(s)",
            record=block.record_name(i),
        )


def check_bases(path: Path, block: VariantBlock) -> None:
    """Refuse REF and sequence ALT alleles with characters outside the IUPAC nucleotide codes.

    One pass in C over all alleles of the block; records are looked at one by one only when
    something other than bases is found (symbolic alleles, or the bad one).
    """
    if not len(block):
        return
    text = "".join(block.refs) + "".join(itertools.chain.from_iterable(block.alts))
    if not text.encode("utf-8", "replace").translate(None, _IUPAC_BYTES):
        return
    for i, (ref, alts) in enumerate(zip(block.refs, block.alts, strict=True)):
        alleles = [("REF", ref)] + [("ALT", a) for a in alts if not is_symbolic_allele(a)]
        for kind, allele in alleles:
            bad = "".join(dict.fromkeys(c for c in allele if c not in IUPAC_BASES))
            if bad or not allele:
                raise InputFileError(
                    path,
                    f"{kind} allele {allele!r} holds {bad!r}, which are not IUPAC "
                    f"nucleotide codes ({IUPAC_BASES[:15]}, either case); symbolic ALT alleles "
                    "are written <DEL>, *, . or as breakends; correct or remove this record",
                    record=block.record_name(i),
                )


#: ``INFO`` fields read as the imputation R², in order of preference: minimac, Beagle, IMPUTE.
R2_FIELDS = ("R2", "DR2", "INFO")
_PASSING = frozenset({"PASS", "."})


def r2_field(declared: Iterable[str]) -> str | None:
    """The first of :data:`R2_FIELDS` among the ``INFO`` fields a file declares."""
    names = set(declared)
    return next((name for name in R2_FIELDS if name in names), None)


def passed_filters(filters: Sequence[str]) -> np.ndarray:
    """Whether each ``FILTER`` value is ``PASS`` or missing (``.``), as ``bool``."""
    return np.fromiter((f in _PASSING for f in filters), dtype=bool, count=len(filters))


def info_values(
    path: Path, infos: Sequence[str], key: str, *, chrom: str, positions: np.ndarray
) -> np.ndarray:
    """The ``float32`` value of ``key`` in each ``INFO`` string (NaN where absent or ``.``).

    Values are kept in single precision, as VCF stores them, so that every format compares
    the same numbers with a threshold.
    """
    pattern = re.compile(rf"(?:^|;){re.escape(key)}=([^;]*)")
    values = np.full(len(infos), np.nan, dtype=np.float32)
    for i, info in enumerate(infos):
        found = pattern.search(info)
        if found is None or found.group(1) in (".", ""):
            continue
        try:
            values[i] = float(found.group(1))
        except ValueError:
            raise InputFileError(
                path,
                f"INFO/{key}={found.group(1)!r} is not a number",
                record=f"record {chrom}:{positions[i] + 1}",
            ) from None
    return values
