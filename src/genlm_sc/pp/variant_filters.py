"""Record filters applied while a cohort is built: FILTER, minor-allele frequency, imputation R²."""

from __future__ import annotations

import numpy as np

from ..io.errors import InputFileError
from ..io.variants import R2_FIELDS, VariantBlock

#: Reasons a record is removed, in the order they are tested (a record counts under the first).
FILTER_REASONS = ("filtered_not_pass", "filtered_low_r2", "filtered_low_maf")


def check_filter_options(reader, *, filter_pass: bool, min_maf: float, min_r2: float) -> None:
    """Refuse filters the genotype file cannot serve, and thresholds out of range.

    Raises
    ------
    ValueError
        For ``min_maf`` outside ``[0, 0.5]`` or ``min_r2`` outside ``[0, 1]``.
    InputFileError
        Naming the file, when ``filter_pass`` is asked of a format without ``FILTER`` or
        ``min_r2`` of a file without an imputation R² field.
    """
    if not 0.0 <= min_maf <= 0.5:
        raise ValueError(f"min_maf must be in [0, 0.5], got {min_maf}")
    if not 0.0 <= min_r2 <= 1.0:
        raise ValueError(f"min_r2 must be in [0, 1], got {min_r2}")
    if filter_pass and not reader.has_filters:
        raise InputFileError(
            reader.path,
            f"filter_pass=True, but a {reader.format.upper()} file holds no FILTER column",
        )
    if min_r2 > 0 and reader.r2_field is None:
        raise InputFileError(
            reader.path,
            f"min_r2={min_r2} asks for an imputation R², but the file declares none of the "
            f"INFO fields {', '.join(R2_FIELDS)} (minimac R2, Beagle DR2, IMPUTE INFO)",
        )


def minor_allele_frequency(alleles: np.ndarray) -> np.ndarray:
    """Per record, the frequency of all alleles but the most frequent one.

    Counted over the called alleles of the people in ``alleles`` (``record, sample, 2``;
    missing and absent alleles are left out). For a biallelic record this is the usual
    minor-allele frequency (``bcftools view --min-af X:nonmajor``); a record with no called
    allele has frequency 0.
    """
    n_records = len(alleles)
    flat = alleles.reshape(n_records, -1).astype(np.int64)
    called = flat >= 0
    n_called = called.sum(axis=1)
    if not n_records:
        return np.zeros(0)
    width = int(flat.max(initial=0)) + 1
    rows = np.broadcast_to(np.arange(n_records)[:, None], flat.shape)
    counts = np.zeros((n_records, width), dtype=np.int64)
    np.add.at(counts, (rows[called], flat[called]), 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        maf = 1.0 - counts.max(axis=1) / n_called
    return np.where(n_called > 0, maf, 0.0)


def filter_reasons(
    block: VariantBlock, *, filter_pass: bool, min_maf: float, min_r2: float
) -> np.ndarray:
    """For each record, the index into :data:`FILTER_REASONS` of why it is removed, or -1.

    ``filter_pass`` keeps records whose ``FILTER`` is ``PASS`` or missing (``.``), as
    ``bcftools view -f .,PASS``; ``min_r2`` keeps records whose imputation R² is at least
    ``min_r2`` (records without a value are removed); ``min_maf`` keeps records whose
    minor-allele frequency in the people read (see :func:`minor_allele_frequency`) is at
    least ``min_maf``.
    """
    reasons = np.full(len(block), -1, dtype=np.int64)
    tests = []
    if filter_pass and block.passed_filters is not None:
        tests.append(~block.passed_filters)
    else:
        tests.append(None)
    if min_r2 > 0 and block.imputation_r2 is not None:
        tests.append(~(block.imputation_r2.astype(np.float64) >= min_r2))
    else:
        tests.append(None)
    tests.append(minor_allele_frequency(block.alleles) < min_maf if min_maf > 0 else None)
    for index, removed in reversed(list(enumerate(tests))):
        if removed is not None:
            reasons[removed] = index
    return reasons
