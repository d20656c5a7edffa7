"""Pretraining corpora: reference sequence, variant-centred windows and real haplotypes.

A :class:`PretrainingCorpus` holds sequences (``uint8`` ASCII) with, for each, a boolean
mask of the bases that differ from the reference (variant alleles written in). Training
examples are random crops of these sequences (:class:`~genlm_sc.pp.examples.CropDataset`),
each with the labels of auxiliary targets (:attr:`PretrainingCorpus.labels`); the masked-LM
collator (:mod:`genlm_sc.models.masking`) reads the variant masks to raise the masking
rate at variant positions. Three variant-aware recipes:

``"centred"``
    UKBioBERT's recipe: one window centred on each variant allele of a VCF, the
    alternative allele written into the reference (SNVs, MNPs and indels alike).
``"haplotypes"``
    Real haplotypes of people sampled from the VCF, built exactly as
    :func:`genlm_sc.pp.personal_sequences` builds them (``bcftools consensus``
    semantics), each distinct haplotype weighted by how many people carry it.
``variant_mlm_probability``
    (an option of :func:`genlm_sc.tl.pretrain`) masks variant positions more often.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..io.errors import InputFileError
from ..io.fasta import FastaReference
from ..io.files import existing_file, is_gzip
from ..io.vcf import VariantFile, is_symbolic_allele

__all__ = ["PretrainingCorpus", "cut_labels", "parse_region"]

_REGION = re.compile(r"^(?P<chrom>[^:]+)(?::(?P<start>[\d,]+)-(?P<end>[\d,]+))?$")


def parse_region(region: str, *, lengths: dict[str, int] | None = None) -> tuple[str, int, int]:
    """``"chr:start-end"`` (1-based, inclusive, as samtools) → ``(chrom, start0, end0)``.

    A bare contig name means the whole contig (``lengths`` needed).
    """
    match = _REGION.match(region.strip())
    if not match:
        raise ValueError(f"cannot read region {region!r}; write it as chrom:start-end")
    chrom = match["chrom"]
    if match["start"] is None:
        if lengths is None or chrom not in lengths:
            raise ValueError(f"region {region!r} names no known contig")
        return chrom, 0, lengths[chrom]
    start, end = int(match["start"].replace(",", "")), int(match["end"].replace(",", ""))
    if start < 1 or end < start:
        raise ValueError(f"region {region!r}: need 1 <= start <= end")
    return chrom, start - 1, end


@dataclass
class PretrainingCorpus:
    """Sequences to pretrain on, with variant masks, weights and a description.

    Attributes
    ----------
    sequences
        ``uint8`` ASCII arrays (upper case).
    variant_masks
        For each sequence, ``bool`` array marking bases that carry a non-reference allele
        (``None``: a reference sequence).
    weights
        Relative sampling weight of each sequence per base (a haplotype carried by 40
        people has weight 40).
    sources
        What was added, in order (recorded in the trained model's ``genlm_pretraining.json``).
    labels
        For each sequence, its labels for auxiliary pretraining targets: name → a class
        (a per-sequence target, e.g. ``{"region": 1}`` from :meth:`add_fasta`) or an
        integer array of one class per base (a per-base target, :meth:`label_bases`). A
        sequence without a target's label is not scored on it.
    """

    sequences: list[np.ndarray] = field(default_factory=list)
    variant_masks: list[np.ndarray | None] = field(default_factory=list)
    weights: list[float] = field(default_factory=list)
    sources: list[dict[str, Any]] = field(default_factory=list)
    labels: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.labels.extend({} for _ in range(len(self.sequences) - len(self.labels)))

    def __len__(self) -> int:
        return len(self.sequences)

    def __repr__(self) -> str:
        lines = [f"PretrainingCorpus: {len(self):,} sequences, {self.n_bases:,} bases"]
        for source in self.sources:
            regions = ", ".join(source.get("regions") or ["all records"])
            kind = source["kind"].replace("_", " ")
            if "n_samples" in source:
                kind += f" of {source['n_samples']} people"
            lines.append(
                f"    {kind}: {source['n_sequences']:,} sequences, "
                f"{source['n_bases']:,} bases ({regions})"
            )
        return "\n".join(lines)

    @property
    def n_bases(self) -> int:
        """Total bases (without weights)."""
        return int(sum(len(s) for s in self.sequences))

    def _add(
        self,
        codes: np.ndarray,
        variants: np.ndarray | None,
        weight: float,
        labels: Mapping[str, Any] | None = None,
    ) -> None:
        self.sequences.append(codes)
        self.variant_masks.append(variants)
        self.weights.append(float(weight))
        self.labels.append(dict(labels or {}))

    def subset(self, keep: Iterable[int]) -> PretrainingCorpus:
        """The sequences at positions ``keep`` (with their masks, weights and labels)."""
        out = PretrainingCorpus(sources=[*self.sources])
        for i in keep:
            i = int(i)
            out._add(self.sequences[i], self.variant_masks[i], self.weights[i], self.labels[i])
        return out

    def label_bases(self, name: str, rule: Callable[[np.ndarray], np.ndarray]) -> PretrainingCorpus:
        """Attach a per-base target computed from each sequence, e.g. CpG-island membership.

        Parameters
        ----------
        name
            The target's name (as given to :func:`genlm_sc.tl.pretrain`'s ``auxiliary``).
        rule
            Called with each sequence's ``uint8`` ASCII codes; returns one class (0, 1, ...)
            per base, e.g. :func:`genlm_sc.pp.cpg_islands`. Applies to the sequences the
            corpus holds now.
        """
        for i, codes in enumerate(self.sequences):
            values = np.asarray(rule(codes))
            if values.shape != codes.shape:
                raise ValueError(
                    f"label_bases({name!r}): the rule returned shape {values.shape} for a "
                    f"sequence of {len(codes)} bases (sequence {i}); it must give one class "
                    "per base"
                )
            if values.size and (values.min() < 0 or values.max() > np.iinfo(np.int16).max):
                raise ValueError(f"label_bases({name!r}): classes must be integers from 0")
            self.labels[i][name] = values.astype(np.int16)
        self.sources.append(
            {"kind": "base_labels", "name": name, "rule": getattr(rule, "__name__", repr(rule))}
        )
        return self

    def label_kinds(self) -> dict[str, str]:
        """Each label name → ``"sequence"`` or ``"base"`` (refused if a name is both)."""
        kinds: dict[str, str] = {}
        for labels in self.labels:
            for name, value in labels.items():
                kind = "base" if np.ndim(value) else "sequence"
                if kinds.setdefault(name, kind) != kind:
                    raise ValueError(f"label {name!r} is per-sequence on some sequences and "
                                     "per-base on others")  # fmt: skip
        return kinds

    def add_fasta(
        self,
        fasta: str | os.PathLike,
        *,
        regions: Sequence[str] | None = None,
        min_length: int = 50,
        weight: float = 1.0,
        labels: Mapping[str, int] | None = None,
    ) -> PretrainingCorpus:
        """Reference sequence from a FASTA.

        Parameters
        ----------
        fasta
            With ``regions``: a bgzipped+faidx or plain FASTA, read by region. Without:
            every record of a FASTA (plain, gzip or bgzip), e.g. a corpus of promoters.
        regions
            ``chrom:start-end`` (1-based inclusive) or contig names.
        min_length
            Records (or stretches between runs of ``N``) shorter than this are skipped.
        weight
            Sampling weight per base.
        labels
            Per-sequence labels of every sequence this adds, e.g. ``{"region": 1}`` for
            promoters and ``{"region": 0}`` for background (auxiliary targets of
            :func:`genlm_sc.tl.pretrain`).
        """
        n_before, bases_before = len(self), self.n_bases
        for name, value in (labels or {}).items():
            if not isinstance(value, int | np.integer) or value < 0:
                raise ValueError(f"label {name!r} must be a class number from 0, got {value!r}")
        for codes in _fasta_sequences(fasta, regions):
            for piece in _split_on_n(codes, min_length):
                self._add(piece, None, weight, labels)
        self.sources.append(
            {
                "kind": "reference",
                "fasta": os.fspath(fasta),
                "regions": list(regions) if regions else None,
                "n_sequences": len(self) - n_before,
                "n_bases": self.n_bases - bases_before,
                **({"labels": dict(labels)} if labels else {}),
            }
        )
        return self

    def add_variant_windows(
        self,
        vcf: str | os.PathLike,
        *,
        fasta: str | os.PathLike,
        regions: Sequence[str],
        width: int = 512,
        max_variants: int | None = None,
        random_state: int = 0,
        weight: float = 1.0,
    ) -> PretrainingCorpus:
        """UKBioBERT's recipe: one window per ALT allele, centred on it, allele written in.

        The window holds ``width // 2`` reference bases before the variant, the ALT
        allele, and reference bases after the REF allele up to ``width`` bases. REF is
        checked against the FASTA; symbolic alleles (``<DEL>``, ``*``, breakends) are
        skipped. ``max_variants`` keeps a random subset (``random_state``).
        """
        generator = np.random.default_rng(random_state)
        n_before, bases_before, skipped = len(self), self.n_bases, 0
        with FastaReference(fasta) as reference, VariantFile(vcf, samples=[]) as reader:
            for region in regions:
                chrom, start, end = parse_region(region, lengths=reference.lengths)
                block = reader.fetch(_vcf_contig(reader, chrom), start, end)
                inside = np.flatnonzero(block.positions >= start)
                if max_variants is not None and len(inside) > max_variants:
                    inside = np.sort(generator.choice(inside, max_variants, replace=False))
                for i in inside:
                    pos, ref = int(block.positions[i]), block.refs[i].upper()
                    left = max(pos - width // 2, 0)
                    context = reference.fetch(chrom, left, pos + len(ref) + width, pad=True)
                    observed = context[pos - left : pos - left + len(ref)].tobytes().decode()
                    if observed != ref:
                        raise InputFileError(
                            reader.path,
                            f"REF {ref} does not match the reference ({observed} at "
                            f"{chrom}:{pos + 1}); is the VCF called on this genome build?",
                            record=block.record_name(int(i)),
                        )
                    for alt in block.alts[i]:
                        if is_symbolic_allele(alt):
                            skipped += 1
                            continue
                        codes, mask = _write_allele(context, pos - left, ref, alt.upper(), width)
                        self._add(codes, mask, weight)
        self.sources.append(
            {
                "kind": "variant_windows",
                "vcf": os.fspath(vcf),
                "regions": list(regions),
                "width": width,
                "n_sequences": len(self) - n_before,
                "n_bases": self.n_bases - bases_before,
                "symbolic_skipped": skipped,
                "random_state": random_state,
            }
        )
        return self

    def add_haplotypes(
        self,
        vcf: str | os.PathLike,
        *,
        fasta: str | os.PathLike,
        regions: Sequence[str],
        samples: Sequence[str] | None = None,
        n_samples: int | None = None,
        window: int = 4096,
        random_state: int = 0,
        unphased: str = "random",
        weight: float = 1.0,
    ) -> PretrainingCorpus:
        """Real haplotypes of people from a VCF, tiled in ``window``-base pieces.

        Parameters
        ----------
        samples
            People to use; default: all, or ``n_samples`` drawn at random (``random_state``).
        window
            Regions are cut into windows of this many reference bases; each distinct
            haplotype of a window is added once, weighted by its number of carriers.
        unphased
            Policy for unphased heterozygous calls (as :func:`genlm_sc.pp.personal_sequences`).
        """
        from ..store import open_haplotypes
        from .gene_windows import gene_windows
        from .haplotypes import stored_reference_positions
        from .personal import personal_sequences

        with VariantFile(vcf) as reader:
            available = list(reader.samples)
        if samples is None:
            samples = available
            if n_samples is not None and n_samples < len(available):
                pick = np.random.default_rng(random_state).choice(
                    len(available), n_samples, replace=False
                )
                samples = [available[i] for i in np.sort(pick)]
        tiles = _tiles(fasta, regions, window)
        panel = gene_windows(tiles, fasta=fasta, width=window, anchor="tss")
        cohort = personal_sequences(
            vcf,
            fasta=fasta,
            genes=panel,
            samples=list(samples),
            unphased=unphased,
            random_state=random_state,
        )
        n_before, bases_before, n_people_bases = len(self), self.n_bases, 0
        ds = open_haplotypes(cohort)
        first = ds["gene_first_haplotype"].values
        n_haplotypes = ds["gene_n_haplotypes"].values
        with FastaReference(fasta) as reference:
            for g, tile in enumerate(ds["gene"].values):
                lo, hi = int(first[g]), int(first[g] + n_haplotypes[g])
                codes_of = ds["sequence"][lo:hi].values
                lengths = ds["haplotype_length"][lo:hi].values
                counts = ds["haplotype_count"][lo:hi].values
                positions = stored_reference_positions(ds, g, lo, hi)
                row = cohort.var.loc[str(tile)]
                ref_codes = reference.fetch(row["chrom"], int(row["start"]), int(row["end"]))
                for i in range(hi - lo):
                    codes = codes_of[i, : lengths[i]].copy()
                    pos = positions[i, : len(codes)]
                    reference_base = ref_codes[np.clip(pos - int(row["start"]), 0, None)]
                    mask = (pos < 0) | (reference_base != codes)
                    self._add(codes, mask if mask.any() else None, weight * int(counts[i]))
                    n_people_bases += len(codes) * int(counts[i])
        self.sources.append(
            {
                "kind": "haplotypes",
                "vcf": os.fspath(vcf),
                "regions": list(regions),
                "n_samples": len(samples),
                "samples_random_state": random_state,
                "window": window,
                "n_sequences": len(self) - n_before,
                "n_bases": self.n_bases - bases_before,
                "person_haplotype_bases": n_people_bases,
            }
        )
        return self

    def hold_out(
        self, *, every: int = 20, overlap: int | None = 200
    ) -> tuple[PretrainingCorpus, PretrainingCorpus]:
        """Split into a training and a held-out corpus, holding out whole overlap groups.

        Sequences that share a stretch of ``overlap`` bases, on either strand, form a group
        (:func:`genlm_sc.pp.overlap_groups`); every ``every``-th group (in the order of its
        first sequence) is held out whole, so no held-out sequence shares ``overlap`` bases
        with a training one. With fewer than ``every`` groups, the last tenth of each
        sequence is held out instead.

        Parameters
        ----------
        every
            One group in this many is held out.
        overlap
            Bases two sequences must share to be grouped. ``None``: every sequence is a
            group of its own (right only for a corpus without repeats).

        Returns
        -------
        The training and the held-out corpus; the held-out one's ``sources`` say how it
        was split.
        """
        from .overlaps import overlap_groups

        if every < 2:
            raise ValueError(f"every must be at least 2, got {every}")
        groups = np.arange(len(self)) if overlap is None else overlap_groups(self, k=overlap)
        n_groups = int(groups.max()) + 1 if len(groups) else 0
        train, held = PretrainingCorpus(sources=[*self.sources]), PretrainingCorpus()
        many = n_groups >= every
        for codes, mask, weight, labels, group in zip(
            self.sequences, self.variant_masks, self.weights, self.labels, groups.tolist(),
            strict=True,
        ):  # fmt: skip
            if many:
                (held if group % every == every - 1 else train)._add(codes, mask, weight, labels)
                continue
            cut = len(codes) - len(codes) // 10
            for part, piece in ((train, slice(None, cut)), (held, slice(cut, None))):
                part._add(codes[piece], None if mask is None else mask[piece], weight,
                          cut_labels(labels, piece))  # fmt: skip
        unit = "sequence" if overlap is None else f"group of sequences sharing {overlap} bases"
        how = f"every {every}th {unit}" if many else "last tenth of each sequence"
        held.sources = [
            {"kind": "held out from the corpus", "how": how, "n_groups": n_groups,
             "n_sequences": len(held), "n_bases": held.n_bases}
        ]  # fmt: skip
        return train, held

    def description(self) -> list[dict[str, Any]]:
        """What the corpus was built from (JSON-ready)."""
        return [dict(s) for s in self.sources]


def _write_allele(
    context: np.ndarray, at: int, ref: str, alt: str, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """``context`` with ``ref`` at ``at`` replaced by ``alt``, cut to ``width`` bases."""
    alt_codes = np.frombuffer(alt.encode("ascii"), dtype=np.uint8)
    codes = np.concatenate([context[:at], alt_codes, context[at + len(ref) :]])[:width]
    mask = np.zeros(len(codes), dtype=bool)
    common = 0  # VCF indels repeat their first base: that base is not a variant
    while common < min(len(ref), len(alt)) and ref[common] == alt[common]:
        common += 1
    changed = np.arange(at + common, at + max(len(alt), common + 1))
    mask[changed[changed < len(codes)]] = True
    if len(alt) < len(ref):  # a deletion: mark the two bases it joins
        mask[max(at + len(alt) - 1, 0) : at + len(alt) + 1] = True
    return codes, mask


def _tiles(fasta: str | os.PathLike, regions: Sequence[str], window: int) -> pd.DataFrame:
    """A gene-table of ``window``-base tiles covering the regions (for personal_sequences)."""
    rows = []
    with FastaReference(fasta) as reference:
        for region in regions:
            chrom, start, end = parse_region(region, lengths=reference.lengths)
            for left in range(start, end - window + 1, window):
                rows.append(
                    {
                        "gene_id": f"{chrom}:{left + 1}-{left + window}",
                        "chrom": chrom,
                        # a one-base "gene" whose TSS-anchored window is the tile
                        "start": left + window // 2,
                        "end": left + window // 2 + 1,
                        "strand": "+",
                    }
                )
    if not rows:
        raise ValueError(f"the regions {list(regions)} hold no {window}-base window")
    table = pd.DataFrame(rows)
    table["gene_name"] = table["gene_id"]
    table["gene_type"] = "tile"
    return table.set_index("gene_id", drop=False)


def _vcf_contig(reader: VariantFile, chrom: str) -> str:
    from ..io.contigs import match_contigs

    return match_contigs([chrom], reader.contig_names(), path=reader.path)[chrom]


def _fasta_sequences(
    fasta: str | os.PathLike, regions: Sequence[str] | None
) -> Iterable[np.ndarray]:
    if regions:
        with FastaReference(fasta) as reference:
            for region in regions:
                chrom, start, end = parse_region(region, lengths=reference.lengths)
                yield reference.fetch(chrom, start, end)
        return
    path = existing_file(fasta)
    chunks: list[bytes] = []
    with gzip.open(path, "rb") if is_gzip(path) else open(path, "rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.startswith(b">"):
                if chunks:
                    yield _upper_codes(b"".join(chunks))
                chunks = []
            elif line.strip():
                if number == 1:
                    raise InputFileError(path, "not a FASTA file (no '>' header)", record="line 1")
                chunks.append(line.strip())
    if chunks:
        yield _upper_codes(b"".join(chunks))


_UPPER = np.frombuffer(bytes(range(256)).upper(), dtype=np.uint8)
_VALID = np.zeros(256, dtype=bool)
_VALID[np.frombuffer(b"ACGTN", dtype=np.uint8)] = True


def _upper_codes(raw: bytes) -> np.ndarray:
    codes = _UPPER[np.frombuffer(raw, dtype=np.uint8)]
    codes[~_VALID[codes]] = ord("N")
    return codes


def _split_on_n(codes: np.ndarray, min_length: int, max_n_run: int = 50) -> list[np.ndarray]:
    """Pieces of ``codes`` between runs of more than ``max_n_run`` Ns."""
    is_n = codes == ord("N")
    if not is_n.any():
        return [codes] if len(codes) >= min_length else []
    edges = np.flatnonzero(np.diff(np.concatenate([[0], is_n.view(np.int8), [0]])))
    pieces, cursor = [], 0
    for run_start, run_end in zip(edges[::2], edges[1::2], strict=True):
        if run_end - run_start > max_n_run:
            pieces.append(codes[cursor:run_start])
            cursor = run_end
    pieces.append(codes[cursor:])
    return [p for p in pieces if len(p) >= min_length]


def cut_labels(labels: Mapping[str, Any], piece: slice) -> dict[str, Any]:
    """Labels of a piece of a sequence: per-base arrays cut, per-sequence classes kept."""
    return {name: value[piece] if np.ndim(value) else value for name, value in labels.items()}
