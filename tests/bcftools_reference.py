"""Run ``bcftools consensus`` for the tests that compare haplotypes with it."""

from __future__ import annotations

import subprocess
from pathlib import Path


def consensus(fasta: Path, vcf: Path, regions: list[str], sample: str, haplotype: int) -> list[str]:
    """Sequences that ``samtools faidx | bcftools consensus -s -H`` writes for ``regions``.

    ``regions`` are ``chrom:start-end`` strings (1-based, inclusive).
    """
    faidx = subprocess.run(
        ["samtools", "faidx", str(fasta), *regions], check=True, capture_output=True
    )
    result = subprocess.run(
        ["bcftools", "consensus", "-s", sample, "-H", str(haplotype), str(vcf)],
        input=faidx.stdout,
        check=True,
        capture_output=True,
    )
    sequences, current = [], []
    for line in result.stdout.decode().splitlines():
        if line.startswith(">"):
            if current or sequences:
                sequences.append("".join(current))
            current = []
        else:
            current.append(line.strip())
    sequences.append("".join(current))
    return [s.upper() for s in sequences]
