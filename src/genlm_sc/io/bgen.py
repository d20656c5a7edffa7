"""Genotypes from BGEN files (v1.1-1.3) through cbgen, as hard calls.

The first allele of each variant is taken as REF (export from PLINK 2 with
``--export bgen-1.3 ref-first``); REF is checked against the FASTA downstream like a VCF's,
so a file written ALT-first is refused there. Positions are returned 0-based.

BGEN stores probabilities. They become hard calls with ``threshold`` (default 0.9):

- phased variants: each haplotype takes the allele whose probability is at least
  ``threshold``, else it is missing (``-1``); calls are phased, except that a sample whose
  two haplotypes each give 0.5 (± 0.01) to the same two alleles is an unphased
  heterozygote (``phased=False``, alleles in index order), which is how PLINK 2 writes the
  unphased heterozygous calls of a phased variant;
- unphased variants: the genotype (allele pair) whose probability is at least
  ``threshold`` is called, else both alleles are missing; calls are unphased
  (``phased=False``), alleles in index order.

A threshold above 0.5 means at most one allele or genotype can pass. Samples flagged
missing are missing. BGEN has no ``FILTER`` or ``INFO``. cbgen is imported when a file
is opened; its variant index (a "metafile") is written to a temporary folder and removed on
:meth:`BgenFile.close`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .errors import InputFileError
from .files import existing_file
from .indexed_genotypes import IndexedGenotypes, companion, import_reader_library
from .samples import select_samples
from .variants import ABSENT, VariantBlock

#: Default probability at or above which an allele (phased) or genotype (unphased) is called.
BGEN_CALL_THRESHOLD = 0.9


class BgenFile(IndexedGenotypes):
    """A BGEN file opened for region queries over a set of samples.

    Parameters
    ----------
    path
        The ``.bgen`` file.
    samples
        Sample ids to read, in this order; all samples when ``None``.
    sample_file
        Oxford ``.sample`` file giving the sample ids (its ``ID_2`` column); default: the
        BGEN's sample block, or else the ``.sample`` next to ``path``.
    threshold
        Probability at or above which an allele or genotype is called (``0.5 < threshold
        <= 1``); see the module notes.
    """

    format = "bgen"
    sort_hint = (
        "sort it (e.g. `plink2 --bgen FILE ref-first --sort-vars --export bgen-1.3 ref-first`)"
    )

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        samples: Sequence[str] | None = None,
        sample_file: str | os.PathLike | None = None,
        threshold: float = BGEN_CALL_THRESHOLD,
    ):
        if not 0.5 < threshold <= 1:
            raise ValueError(f"threshold must be in (0.5, 1], got {threshold}")
        cbgen = import_reader_library("cbgen", what="BGEN files")
        self.path = existing_file(path, what="BGEN file")
        self.threshold = float(threshold)
        self._folder = tempfile.mkdtemp(prefix="genlm_sc_bgen_")
        try:
            self._bgen = cbgen.bgen_file(self.path)
            metafile = Path(self._folder, "index.metafile")
            self._bgen.create_metafile(metafile, verbose=False)
            variants = _variant_table(cbgen.bgen_metafile(metafile))
        except RuntimeError as err:
            shutil.rmtree(self._folder, ignore_errors=True)
            raise InputFileError(self.path, f"cannot read as BGEN ({err})") from err
        #: The files read (recorded in provenance).
        self.files = [self.path]
        all_samples = self._sample_ids(sample_file)
        self.samples = select_samples(
            self.path, all_samples, samples, what="BGEN", listing="sample list", record=None
        )
        order = {s: i for i, s in enumerate(all_samples)}
        self._columns = np.array([order[s] for s in self.samples], dtype=np.int64)
        self._offsets = variants["offset"]
        self._ids = variants["id"]
        self._alleles = variants["alleles"]
        contigs, codes = np.unique(variants["chrom"], return_inverse=True)
        self._index([str(c) for c in contigs], codes, variants["position"] - 1)

    def _sample_ids(self, sample_file: str | os.PathLike | None) -> list[str]:
        if sample_file is None and self._bgen.contain_samples:
            return [
                s.decode() if isinstance(s, bytes) else str(s) for s in self._bgen.read_samples()
            ]
        if sample_file is None:
            sample_file = companion(self.path, [".sample"], what="sample list (no sample block)")
        self.files.append(existing_file(sample_file, what="BGEN sample file"))
        return _read_sample_file(self.files[-1])

    def _read(self, chrom: str, lo: int, hi: int) -> VariantBlock:
        n = hi - lo
        alleles = np.full((n, len(self.samples), 2), -1, dtype=np.int8)
        phased = np.zeros((n, len(self.samples)), dtype=bool)
        for row, i in enumerate(range(lo, hi)):
            try:
                genotype = self._bgen.read_genotype(int(self._offsets[i]))
            except RuntimeError as err:
                raise InputFileError(
                    self.path, f"cannot read genotypes ({err})", record=self._name(chrom, i)
                ) from err
            ploidy = genotype.ploidy[self._columns]
            if (ploidy > 2).any() or (ploidy < 1).any():
                s = int(np.flatnonzero((ploidy > 2) | (ploidy < 1))[0])
                raise InputFileError(
                    self.path,
                    f"ploidy {int(ploidy[s])} of sample {self.samples[s]} is not supported "
                    "(diploid or haploid only)",
                    record=self._name(chrom, i),
                )
            n_alleles = len(self._alleles[i])
            probability = genotype.probability[self._columns]
            calls, unphased = (_phased_calls if genotype.phased else _unphased_calls)(
                probability, ploidy, n_alleles, self.threshold
            )
            calls[genotype.missing[self._columns]] = -1
            calls[ploidy == 1, 1] = ABSENT
            alleles[row] = calls
            phased[row] = ~unphased
        return VariantBlock(
            chrom=chrom,
            positions=self._positions[lo:hi],
            ids=list(self._ids[lo:hi]),
            refs=[a[0] for a in self._alleles[lo:hi]],
            alts=[a[1:] for a in self._alleles[lo:hi]],
            alleles=alleles,
            phased=phased,
        )

    def _name(self, chrom: str, i: int) -> str:
        return f"record {chrom}:{self._positions[i] + 1} {self._ids[i]}"

    def close(self) -> None:
        """Close the file and remove its temporary index."""
        self._bgen.close()
        shutil.rmtree(self._folder, ignore_errors=True)


def _phased_calls(
    probability: np.ndarray, ploidy: np.ndarray, n_alleles: int, threshold: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per haplotype, the allele with probability ≥ ``threshold`` (else -1), and which
    samples are unphased heterozygotes written as 0.5/0.5 on both haplotypes."""
    calls = np.full((len(probability), 2), -1, dtype=np.int8)
    for h in range(int(ploidy.max(initial=1))):
        p = probability[:, h * n_alleles : (h + 1) * n_alleles]
        best = np.nan_to_num(p, nan=0.0).argmax(axis=1)
        called = np.take_along_axis(p, best[:, None], axis=1)[:, 0] >= threshold
        calls[called, h] = best[called]
    unphased = np.zeros(len(probability), dtype=bool)
    if n_alleles >= 2 and probability.shape[1] >= 2 * n_alleles:
        first, second = probability[:, :n_alleles], probability[:, n_alleles : 2 * n_alleles]
        half = np.abs(first - 0.5) < 0.01
        unphased = (
            (ploidy == 2) & (half.sum(axis=1) == 2) & (np.abs(first - second) < 1e-6).all(axis=1)
        )
        for row in np.flatnonzero(unphased):
            calls[row] = np.flatnonzero(half[row])[:2]
    return calls, unphased


def _unphased_calls(
    probability: np.ndarray, ploidy: np.ndarray, n_alleles: int, threshold: float
) -> np.ndarray:
    """The allele pair whose genotype probability is ≥ ``threshold`` (else missing), and
    which samples are unphased (all).

    Diploid genotypes are ordered as BGEN orders them: (0,0), (0,1), (1,1), (0,2), (1,2),
    (2,2), …; haploid ones are the alleles.
    """
    pairs = np.array([(a, b) for b in range(n_alleles) for a in range(b + 1)], dtype=np.int8)
    calls = np.full((len(probability), 2), -1, dtype=np.int8)
    p = np.nan_to_num(probability, nan=0.0)
    for k, combos in ((2, pairs), (1, np.stack([np.arange(n_alleles)] * 2, axis=1))):
        rows = ploidy == k
        if not rows.any():
            continue
        q = p[rows, : len(combos)]
        best = q.argmax(axis=1)
        called = q[np.arange(len(q)), best] >= threshold
        calls[np.flatnonzero(rows)[called]] = combos[best[called]]
    return calls, np.ones(len(probability), dtype=bool)


def _variant_table(metafile) -> dict[str, np.ndarray]:
    """Contig, 1-based position, id, alleles and offset of every variant of the index."""
    parts = [metafile.read_partition(i).variants for i in range(metafile.npartitions)]

    def column(name):
        return np.concatenate([getattr(p, name) for p in parts]) if parts else np.zeros(0)

    def text(values):
        return np.array(
            [v.decode() if isinstance(v, bytes) else str(v) for v in values], dtype=object
        )

    rsid, vid = text(column("rsid")), text(column("id"))
    ids = np.where(rsid != "", rsid, np.where(vid != "", vid, "."))
    return {
        "chrom": text(column("chromosome")).astype(str),
        "position": column("position").astype(np.int64),
        "id": ids.astype(object),
        "alleles": [a.split(",") for a in text(column("allele_ids"))],
        "offset": column("offset").astype(np.int64),
    }


def _read_sample_file(path: Path) -> list[str]:
    """Sample ids of an Oxford ``.sample`` file: its ``ID_2`` column (after two header lines)."""
    with open(path, encoding="utf-8") as handle:
        lines = [line.split() for line in handle if line.strip()]
    if len(lines) < 2 or not lines[0] or lines[0][0] != "ID_1" or len(lines[0]) < 2:
        raise InputFileError(
            path, "not an Oxford .sample file (first line: ID_1 ID_2 ...)", record="line 1"
        )
    ids = []
    for number, fields in enumerate(lines[2:], start=3):
        if len(fields) < 2:
            raise InputFileError(path, "fewer than 2 columns", record=f"line {number}")
        ids.append(fields[1])
    return ids
