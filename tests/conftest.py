"""Shared fixtures: the shipped example data and cohorts built from it."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import pysam
import pytest

import genlm_sc as gl

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"

needs_shared = pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is absent")
#: The comparison with ``bcftools consensus`` (and ``samtools faidx``): skipped without the
#: tools, failed without them on CI (see :func:`missing_tools_outcome`).
needs_bcftools = pytest.mark.needs_tools("bcftools", "samtools")


def on_ci(environ: Mapping[str, str]) -> bool:
    """Whether the environment says it is a CI run (``CI=true`` or ``CI=1``)."""
    return environ.get("CI", "").strip().lower() in {"true", "1"}


def missing_tools_outcome(
    missing: Sequence[str], environ: Mapping[str, str]
) -> Literal["run", "skip", "fail"]:
    """What a test marked ``needs_tools`` does when ``missing`` of its tools are absent.

    It runs when none is missing. Otherwise it is skipped on a workstation, but fails on
    CI: there the tools are installed on purpose, and a failed install must not turn the
    comparison tests into silent skips and the run green.
    """
    if not missing:
        return "run"
    return "fail" if on_ci(environ) else "skip"


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Apply :func:`missing_tools_outcome` to tests marked ``needs_tools(*tools)`` (executables)
    or ``needs_packages(*modules)`` (Python packages installed on CI, e.g. the fused
    backbones' packages, which pip cannot install as dependencies)."""
    import importlib.util

    checks = (
        ("needs_tools", lambda tool: shutil.which(tool) is not None),
        ("needs_packages", lambda module: importlib.util.find_spec(module) is not None),
    )
    for name, present in checks:
        marker = item.get_closest_marker(name)
        if marker is None:
            continue
        missing = [what for what in marker.args if not present(what)]
        outcome = missing_tools_outcome(missing, os.environ)
        if outcome == "fail":
            pytest.fail(f"{', '.join(missing)} not installed, and CI is set", pytrace=False)
        if outcome == "skip":
            pytest.skip(f"{', '.join(missing)} not installed")


def write_fasta(path: Path, contigs: dict[str, str], *, width: int | None = None) -> Path:
    """A FASTA of ``contigs`` (name → sequence, lines of ``width`` bases), faidx-indexed."""
    lines = []
    for name, sequence in contigs.items():
        lines.append(f">{name}")
        step = width or max(len(sequence), 1)
        lines += [sequence[i : i + step] for i in range(0, len(sequence), step)]
    path.write_text("\n".join(lines) + "\n")
    pysam.faidx(str(path))
    return path


def vcf_lines(
    records: Iterable[Sequence], *, samples: Sequence[str], contigs: dict[str, int]
) -> list[str]:
    """The text lines of a VCF 4.2 with GT calls, written from plain records.

    ``records`` are ``(chrom, pos0, id, ref, alt, genotypes)`` with a 0-based position, the
    ALT field as written (several alleles joined by ``,``) and one ``GT`` string per sample;
    a seventh item, when present, is the FILTER column (default ``.``).
    """
    lines = ["##fileformat=VCFv4.2"]
    lines += [f"##contig=<ID={name},length={length}>" for name, length in contigs.items()]
    lines.append('##FORMAT=<ID=GT,Number=1,Type=String,Description="Genotype">')
    lines.append("\t".join(["#CHROM", "POS", "ID", "REF", "ALT", "QUAL", "FILTER", "INFO",
                            "FORMAT", *samples]))  # fmt: skip
    for record in records:
        chrom, pos0, identifier, ref, alt, genotypes = record[:6]
        filters = record[6] if len(record) > 6 else "."
        fields = [chrom, pos0 + 1, identifier, ref, alt, ".", filters, ".", "GT", *genotypes]
        lines.append("\t".join(map(str, fields)))
    return lines


def write_vcf_lines(path: Path, lines: Sequence[str], *, index: bool = True) -> Path:
    """Write VCF text lines as they are: bgzipped (and tabix-indexed) when ``path`` ends in
    ``.gz``, plain text otherwise. The plain text of a ``.gz`` is left next to it."""
    text = path.with_suffix("") if path.suffix == ".gz" else path
    text.write_text("\n".join(lines) + "\n")
    if path.suffix == ".gz":
        pysam.tabix_compress(str(text), str(path), force=True)
        if index:
            pysam.tabix_index(str(path), preset="vcf", force=True)
    return path


def write_vcf(
    path: Path,
    records: Iterable[Sequence],
    *,
    samples: Sequence[str],
    contigs: dict[str, int],
) -> Path:
    """A bgzipped, tabix-indexed VCF 4.2 with GT calls, written from plain records.

    ``records`` are as in :func:`vcf_lines`. ``path`` names the ``.vcf.gz``; the plain text
    is written next to it without the ``.gz``.
    """
    return write_vcf_lines(path, vcf_lines(records, samples=samples, contigs=contigs))


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


class Killed(Exception):
    """Stands for a run killed half-way."""


def pretrain_killed_at(
    step: int, corpus, output_dir: Path, settings: dict, monkeypatch
) -> list[int]:
    """Run ``gl.tl.pretrain`` until its training step ``step``, then kill it.

    Returns the steps the trainer started, so a test can tell which ones a resumed run redoes.
    """
    from transformers import Trainer

    steps: list[int] = []
    real_step = Trainer.training_step

    def killed(self, *args, **kwargs):
        steps.append(self.state.global_step)
        if self.state.global_step == step:
            raise Killed
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", killed)
    with pytest.raises(Killed):
        gl.tl.pretrain(corpus, output_dir=output_dir, **settings)
    monkeypatch.setattr(Trainer, "training_step", real_step)
    return steps
