"""Genotypes from VCF Zarr stores (the layout of bio2zarr's ``vcf2zarr`` and sgkit).

Read: ``call_genotype`` (variants × samples × ploidy, ``-1`` missing, ``-2`` the padding of a
lower ploidy), ``call_genotype_phased``, ``variant_position`` (1-based ``POS``),
``variant_allele`` (REF then ALTs, padded with empty strings), ``variant_contig`` with
``contig_id`` (and ``contig_length``), ``variant_id`` with ``variant_id_mask``,
``sample_id``, and when present ``variant_filter`` with ``filter_id`` and ``variant_R2``,
``variant_DR2`` or ``variant_INFO``. Positions are returned 0-based. Only the contig and
position arrays are read whole; a region reads the genotype chunks it overlaps. zarr is
imported when a store is opened.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import InputFileError
from .indexed_genotypes import IndexedGenotypes
from .samples import select_samples
from .variants import ABSENT, R2_FIELDS, VariantBlock

_REQUIRED = (
    "call_genotype",
    "variant_position",
    "variant_allele",
    "variant_contig",
    "contig_id",
    "sample_id",
)
_MARKERS = ("zarr.json", ".zgroup", ".zmetadata")


def is_vcf_zarr(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder holding a Zarr group (a ``.vcz``/``.zarr`` store)."""
    path = Path(path)
    return path.is_dir() and any((path / marker).exists() for marker in _MARKERS)


class VcfZarrFile(IndexedGenotypes):
    """A VCF Zarr store opened for region queries over a set of samples.

    Parameters
    ----------
    path
        The store folder (``.vcz``), as written by ``vcf2zarr convert``.
    samples
        Sample ids to read, in this order; all samples when ``None``.
    """

    format = "vcf_zarr"
    sort_hint = "convert it again from a sorted, indexed VCF (`bcftools sort`, `vcf2zarr convert`)"

    def __init__(self, path: str | os.PathLike, *, samples: Sequence[str] | None = None):
        import zarr

        self.path = Path(path)
        if not self.path.is_dir():
            raise InputFileError(self.path, "no such VCF Zarr store (a folder)")
        try:
            self._group = zarr.open_group(os.fspath(self.path), mode="r")
            arrays = set(self._group.array_keys())
        except Exception as err:  # zarr raises several kinds for a folder that is no store
            raise InputFileError(self.path, f"cannot open as a Zarr store ({err})") from err
        #: The files read (the store's root metadata stands for it, in provenance).
        self.files = [next(self.path / m for m in _MARKERS if (self.path / m).exists())]
        missing = [name for name in _REQUIRED if name not in arrays]
        if missing:
            raise InputFileError(
                self.path,
                f"not a VCF Zarr store: it lacks {', '.join(missing)} (write one with "
                "`vcf2zarr convert`)",
            )
        self._genotypes = self._group["call_genotype"]
        if self._genotypes.ndim != 3 or self._genotypes.shape[2] > 2:
            raise InputFileError(
                self.path,
                f"call_genotype has shape {self._genotypes.shape}: ploidy "
                f"{self._genotypes.shape[-1]} is not supported (diploid or haploid only)",
            )
        all_samples = [str(s) for s in self._group["sample_id"][:]]
        self.samples = select_samples(
            self.path, all_samples, samples, what="VCF Zarr store", listing="sample_id",
            record="sample_id",
        )  # fmt: skip
        order = {s: i for i, s in enumerate(all_samples)}
        self._columns = np.array([order[s] for s in self.samples], dtype=np.int64)
        self._all_columns = len(self._columns) == len(all_samples) and bool(
            (self._columns == np.arange(len(all_samples))).all()
        )
        self._phased = (
            self._group["call_genotype_phased"] if "call_genotype_phased" in arrays else None
        )
        self.has_filters = "variant_filter" in arrays and "filter_id" in arrays
        if self.has_filters:
            self._filter_ids = [str(f) for f in self._group["filter_id"][:]]
        self.r2_field = next((f for f in R2_FIELDS if f"variant_{f}" in arrays), None)
        contigs = [str(c) for c in self._group["contig_id"][:]]
        lengths = {}
        if "contig_length" in arrays:
            lengths = {
                c: int(n)
                for c, n in zip(contigs, self._group["contig_length"][:], strict=True)
                if n > 0
            }
        codes = self._group["variant_contig"][:]
        if len(codes) and (codes.min() < 0 or codes.max() >= len(contigs)):
            raise InputFileError(
                self.path,
                f"variant_contig refers to contig {int(codes.max())} but contig_id has "
                f"{len(contigs)}",
            )
        self._index(
            contigs, codes, self._group["variant_position"][:].astype(np.int64) - 1,
            lengths=lengths, assembly=None,
        )  # fmt: skip

    def _read(self, chrom: str, lo: int, hi: int) -> VariantBlock:
        group = self._group
        rows = slice(lo, hi)
        if self._all_columns:
            calls = self._genotypes[rows]
            phased = self._phased[rows] if self._phased is not None else None
        else:
            calls = self._genotypes.oindex[rows, self._columns]
            phased = self._phased.oindex[rows, self._columns] if self._phased is not None else None
        calls = np.asarray(calls, dtype=np.int8)
        if calls.shape[2] == 1:
            calls = np.concatenate([calls, np.full_like(calls, ABSENT)], axis=2)
        alleles = np.where(calls < -1, ABSENT, calls).astype(np.int8)
        if phased is None:
            phased = np.zeros(alleles.shape[:2], dtype=bool)
        allele_table = group["variant_allele"][rows]
        refs = [str(a) for a in allele_table[:, 0]]
        alts = [[str(a) for a in row[1:] if str(a)] for row in allele_table]
        ids = (
            [str(i) for i in group["variant_id"][rows]]
            if "variant_id" in group
            else ["."] * (hi - lo)
        )
        if "variant_id_mask" in group:
            ids = [
                "." if masked else i
                for i, masked in zip(ids, group["variant_id_mask"][rows], strict=True)
            ]
        passed = None
        if self.has_filters:
            flags = np.asarray(group["variant_filter"][rows], dtype=bool)
            failed = [i for i, name in enumerate(self._filter_ids) if name != "PASS"]
            passed = ~flags[:, failed].any(axis=1)
        r2 = None
        if self.r2_field is not None:
            r2 = np.asarray(group[f"variant_{self.r2_field}"][rows], dtype=np.float32)
            if r2.ndim > 1:
                r2 = r2[:, 0]
        return VariantBlock(
            chrom=chrom,
            positions=self._positions[lo:hi],
            ids=ids,
            refs=refs,
            alts=alts,
            alleles=alleles,
            phased=np.asarray(phased, dtype=bool),
            passed_filters=passed,
            imputation_r2=r2,
        )
