"""One entry point to every genotype format: VCF/BCF, PLINK 2 PGEN, VCF Zarr and BGEN.

Every reader has the interface of :class:`~genlm_sc.io.vcf.VariantFile` (``samples``,
``contig_names()``, ``header_contig_lengths()``, ``header_assembly()``, ``has_records()``,
``fetch(chrom, start, end)`` → :class:`~genlm_sc.io.variants.VariantBlock`, ``close()``,
``path``, a context manager) plus ``format``, ``has_filters`` and ``r2_field``. The PGEN,
Zarr and BGEN libraries are imported only when such a file is opened.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from .bgen import BGEN_CALL_THRESHOLD
from .pgen import pgen_path
from .vcf_zarr import is_vcf_zarr

GenotypeFormat = Literal["vcf", "pgen", "vcf_zarr", "bgen"]


def genotype_format(path: str | os.PathLike) -> GenotypeFormat:
    """The format of a genotype file, told by its path.

    A folder holding a Zarr group is VCF Zarr; a ``.pgen``, or a prefix with a ``.pgen``
    next to it, is PGEN; a ``.bgen`` is BGEN; anything else is read as VCF/BCF (whose
    reader refuses other folders and missing files by name).

    Parameters
    ----------
    path
        The file, folder or PLINK prefix.

    Returns
    -------
    ``"vcf"``, ``"pgen"``, ``"vcf_zarr"`` or ``"bgen"``.
    """
    path = Path(path)
    if is_vcf_zarr(path):
        return "vcf_zarr"
    if pgen_path(path) is not None:
        return "pgen"
    if path.suffix == ".bgen":
        return "bgen"
    return "vcf"


def open_genotypes(
    path: str | os.PathLike,
    *,
    samples: Sequence[str] | None = None,
    bgen_threshold: float = BGEN_CALL_THRESHOLD,
    bgen_sample_file: str | os.PathLike | None = None,
):
    """Open a genotype file of any supported format for region queries.

    Parameters
    ----------
    path
        bgzipped, indexed VCF or indexed BCF; PLINK 2 ``.pgen`` (or its prefix) with
        ``.pvar``/``.pvar.zst`` and ``.psam`` next to it; VCF Zarr folder (``.vcz``, as
        written by ``vcf2zarr convert``); or ``.bgen``.
    samples
        Sample ids to read, in this order; all samples when ``None``.
    bgen_threshold
        BGEN only: probability at or above which an allele (phased) or genotype
        (unphased) is called; below it the call is missing.
    bgen_sample_file
        BGEN only: ``.sample`` file of sample ids when the BGEN has no sample block.

    Returns
    -------
    :class:`~genlm_sc.io.vcf.VariantFile`, :class:`~genlm_sc.io.pgen.PgenFile`,
    :class:`~genlm_sc.io.vcf_zarr.VcfZarrFile` or :class:`~genlm_sc.io.bgen.BgenFile`.
    Close it after use (or use it as a context manager).

    Raises
    ------
    InputFileError
        Naming the file, for a missing file or companion file, requested samples the file
        lacks, records out of order and other bad input.
    """
    kind = genotype_format(path)
    if kind == "vcf_zarr":
        from .vcf_zarr import VcfZarrFile

        return VcfZarrFile(path, samples=samples)
    if kind == "pgen":
        from .pgen import PgenFile

        return PgenFile(path, samples=samples)
    if kind == "bgen":
        from .bgen import BgenFile

        return BgenFile(
            path, samples=samples, sample_file=bgen_sample_file, threshold=bgen_threshold
        )
    from .vcf import VariantFile

    return VariantFile(path, samples=samples)
