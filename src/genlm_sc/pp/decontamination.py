"""Decontamination: take out of a pretraining corpus what the evaluation sets hold.

A model pretrained on the very sequences it is later tested on has seen the answers: where
a benchmark's positives are real genomic sequences and its negatives synthetic ones (the
GUE promoter and TF tasks), "seen in pretraining" alone separates the classes.
:func:`decontaminate` removes every corpus sequence that contains, or is contained in, a
sequence of the labelled sets, on either strand.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from ..io.labelled import read_labelled_sequences
from .corpus import PretrainingCorpus
from .haplotypes import reverse_complement
from .overlaps import KmerIndex, as_codes, shared_kmer_pairs

__all__ = ["decontaminate"]

logger = logging.getLogger(__name__)

LabelledSet = pd.DataFrame | Sequence[str] | str | os.PathLike
REPORT_COLUMNS = ("n_labelled", "n_labelled_found", "n_corpus_removed")


def decontaminate(
    corpus: PretrainingCorpus | str | os.PathLike,
    labelled: Mapping[str, LabelledSet],
    *,
    min_overlap: int | None = None,
    by: Sequence[str] = (),
) -> tuple[PretrainingCorpus, pd.DataFrame]:
    """Remove from a pretraining corpus every sequence that contains, or is contained in, a
    labelled sequence, on either strand.

    Run it against every split of every labelled set a model will be evaluated on (train,
    dev and test alike: a fine-tuning set seen in pretraining inflates the test score too).
    Containment is exact and checked on both strands: a corpus sequence goes when a
    labelled sequence or its reverse complement lies inside it, or when it lies inside a
    labelled sequence or its reverse complement. Candidates are found through shared
    k-mers (``k`` = the shortest sequence involved; see :mod:`genlm_sc.pp.overlaps`) and
    every one is confirmed base by base; sequences of a few tens of bases make ``k`` small
    and the search slow. Partial overlaps (a shared stretch, neither sequence inside the
    other) do not count unless ``min_overlap`` is given.

    Parameters
    ----------
    corpus
        A :class:`~genlm_sc.pp.PretrainingCorpus`, or a FASTA whose records are all used
        (as :func:`genlm_sc.tl.pretrain` reads it).
    labelled
        Name → labelled sequences: a table with a ``sequence`` column (e.g. from
        :func:`genlm_sc.io.read_labelled_sequences`, one row per sequence, all splits), a
        list of sequences, or the path of a table or task folder (read with
        :func:`~genlm_sc.io.read_labelled_sequences`, every split).
    min_overlap
        Also remove corpus sequences that share a stretch of at least this many bases
        with a labelled sequence (either strand), contained or not. ``None``: containment
        only.
    by
        Columns of the labelled tables to break the report down by, e.g.
        ``("split", "label")``.

    Returns
    -------
    The corpus without the removed sequences (a new object; its ``sources`` end with a
    ``"decontaminated"`` entry holding the report, so a model pretrained on it records
    what was removed), and the report: one row per labelled set (and, with ``by``, one
    per set and group, the set's own row having ``"all"`` in the ``by`` columns):

    ``labelled_set``
        The name in ``labelled``.
    ``n_labelled``
        Labelled sequences (rows).
    ``n_labelled_found``
        Of these, how many a corpus sequence contains or is contained in (or overlaps,
        with ``min_overlap``).
    ``n_corpus_removed``
        Corpus sequences removed because of them (a corpus sequence matching two sets is
        counted in both).

    The total removed is logged (``logging.INFO``) and in the new corpus's ``sources``.

    Examples
    --------
    >>> import genlm_sc as gl
    >>> clean, report = gl.pp.decontaminate(
    ...     "pretraining_corpus.fa.gz", {"tf_0": "gue/tf/0"}, by=["split", "label"]
    ... )  # doctest: +SKIP
    """
    if not isinstance(corpus, PretrainingCorpus):
        corpus = PretrainingCorpus().add_fasta(corpus)
    if min_overlap is not None and min_overlap < 1:
        raise ValueError(f"min_overlap must be a positive number of bases, got {min_overlap}")
    if not labelled:
        raise ValueError("no labelled sets given")
    tables = {name: _labelled_table(name, data, by) for name, data in labelled.items()}
    # every distinct labelled sequence once, after the corpus
    distinct = pd.unique(np.concatenate([t["sequence"].to_numpy(str) for t in tables.values()]))
    sequences = [as_codes(s) for s in corpus.sequences] + [as_codes(s) for s in distinct]
    n_corpus = len(corpus)
    pairs = _containing_pairs(sequences, n_corpus)
    if min_overlap is not None:
        left = np.arange(len(sequences)) < n_corpus
        shared = shared_kmer_pairs(sequences, min_overlap, left=left)
        pairs = np.unique(np.concatenate([pairs, shared]), axis=0)
    position = pd.Index(distinct)
    rows, removed = [], np.zeros(n_corpus, dtype=bool)
    for name, table in tables.items():
        table = table.assign(_distinct=position.get_indexer(table["sequence"]) + n_corpus)
        groups = [((), table)]
        if by and set(by) <= set(table.columns):
            groups += list(table.groupby(list(by), observed=True))
        for key, part in groups:
            hit = np.isin(pairs[:, 1], part["_distinct"].to_numpy())
            corpus_hits = np.unique(pairs[hit, 0])
            if not key:
                removed[corpus_hits] = True
            values = dict(zip(by, key if key else ["all"] * len(by), strict=True))
            rows.append(
                {
                    "labelled_set": name,
                    **values,
                    "n_labelled": len(part),
                    "n_labelled_found": int(np.isin(part["_distinct"], pairs[hit, 1]).sum()),
                    "n_corpus_removed": int(corpus_hits.size),
                }
            )
    report = pd.DataFrame(rows, columns=["labelled_set", *by, *REPORT_COLUMNS])
    clean = corpus.subset(np.flatnonzero(~removed))
    clean.sources.append(
        {
            "kind": "decontaminated",
            "against": {name: _describe(data) for name, data in labelled.items()},
            "min_overlap": min_overlap,
            "n_sequences_removed": int(removed.sum()),
            "n_bases_removed": corpus.n_bases - clean.n_bases,
            "report": report.astype({c: object for c in by}).to_dict("records"),
        }
    )
    logger.info(
        "decontamination removed %d of %d corpus sequences (%d bases): %s",
        removed.sum(), n_corpus, corpus.n_bases - clean.n_bases,
        "; ".join(f"{r['labelled_set']}: {r['n_corpus_removed']}" for r in rows
                  if all(r[c] == "all" for c in by)),
    )  # fmt: skip
    return clean, report


def _containing_pairs(sequences: list[np.ndarray], n_corpus: int) -> np.ndarray:
    """(corpus, labelled) pairs in which one sequence lies inside the other, either strand."""
    k = min((len(s) for s in sequences if len(s)), default=1)  # every containment shares one
    index = KmerIndex.build(sequences, k)
    left = np.arange(len(sequences)) < n_corpus
    a, b = index.cross_pairs(left)
    candidates, _ = index.sequence_pairs(a, b)
    inside = [_contains(sequences[i], sequences[j]) for i, j in candidates.tolist()]
    return candidates[np.array(inside, dtype=bool)].reshape(-1, 2)


def _contains(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether the shorter of two sequences lies inside the longer, on either strand."""
    short, long = (a, b) if len(a) <= len(b) else (b, a)
    text = long.tobytes()
    return short.tobytes() in text or reverse_complement(short).tobytes() in text


def _labelled_table(name: str, data: LabelledSet, by: Sequence[str]) -> pd.DataFrame:
    if isinstance(data, str | os.PathLike):
        data = read_labelled_sequences(data)
    if not isinstance(data, pd.DataFrame):  # a plain list of sequences is reported whole
        return pd.DataFrame({"sequence": [str(s).upper() for s in data]})
    missing = [c for c in ("sequence", *by) if c not in data.columns]
    if missing:
        raise ValueError(f"labelled set {name!r} has no column(s) {missing}")
    return data.assign(sequence=data["sequence"].astype(str).str.upper())


def _describe(data: LabelledSet) -> str | int:
    if isinstance(data, str | os.PathLike):
        return os.fspath(data)
    source = getattr(data, "attrs", {}).get("source")
    return source if source else len(data)
