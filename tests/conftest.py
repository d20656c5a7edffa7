"""Shared fixtures: the shipped example data and cohorts built from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import genlm_sc as gl

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
HAS_BCFTOOLS = shutil.which("bcftools") is not None and shutil.which("samtools") is not None

needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is absent")
needs_bcftools = pytest.mark.skipif(not HAS_BCFTOOLS, reason="bcftools/samtools not installed")


@pytest.fixture(scope="session")
def example():
    """Paths of the shipped example data."""
    return gl.datasets.chr20_example()


@pytest.fixture(scope="session")
def panel(example):
    """The 30 example genes, 4,096-bp windows."""
    return gl.pp.gene_windows(example.genes, fasta=example.fasta, width=4096)


@pytest.fixture(scope="session")
def cohort(example, panel):
    """503 people × 30 genes, unphased calls taken as listed (like bcftools -H 1/-H 2)."""
    return gl.pp.personal_sequences(
        example.vcf, fasta=example.fasta, genes=panel, panel=example.panel, unphased="as_listed"
    )
