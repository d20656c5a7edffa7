"""Training and evaluation examples cut from a :class:`~genlm_sc.pp.PretrainingCorpus`.

:class:`CropDataset` draws random crops for training; :func:`tile_sequences` cuts
non-overlapping pieces for evaluation. Both carry each piece's variant mask and its
auxiliary labels (per-base labels cut with the piece).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .corpus import PretrainingCorpus, cut_labels

__all__ = ["CropDataset", "tile_sequences"]


class CropDataset:
    """Random crops of a corpus, ``length`` bases each, drawn in proportion to weight × length.

    Item ``i`` is a pure function of ``(random_state, i)`` and carries ``index`` ``i`` (the
    masking collator draws its masks from it), so an interrupted and resumed run sees the
    same examples with the same masks. Sequences shorter than ``length`` are returned whole.
    """

    def __init__(
        self, corpus: PretrainingCorpus, *, length: int, n_examples: int, random_state: int = 0
    ):
        if not len(corpus):
            raise ValueError("the pretraining corpus is empty")
        self.corpus, self.length, self.n_examples, self.random_state = (
            corpus,
            length,
            n_examples,
            random_state,
        )
        sizes = np.array([max(len(s) - length + 1, 1) for s in corpus.sequences], dtype=float)
        mass = sizes * np.asarray(corpus.weights, dtype=float)
        self._cumulative = np.cumsum(mass / mass.sum())

    def __len__(self) -> int:
        return self.n_examples

    def __getitem__(self, i: int) -> dict[str, Any]:
        generator = np.random.default_rng([self.random_state, int(i)])
        drawn = int(np.searchsorted(self._cumulative, generator.random(), side="right"))
        j = min(drawn, len(self.corpus) - 1)
        codes = self.corpus.sequences[j]
        offset = int(generator.integers(0, max(len(codes) - self.length, 0) + 1))
        crop = slice(offset, offset + self.length)
        mask = self.corpus.variant_masks[j]
        return {
            "index": int(i),
            "sequence": codes[crop].tobytes().decode("ascii"),
            "variant": None if mask is None else mask[crop],
            "labels": cut_labels(self.corpus.labels[j], crop),
        }


def tile_sequences(corpus: PretrainingCorpus, *, length: int) -> list[dict[str, Any]]:
    """Non-overlapping ``length``-base pieces of every corpus sequence (for evaluation).

    Each piece is a dict: ``sequence``, ``variant`` (its variant mask or ``None``),
    ``labels`` (its auxiliary labels), and ``source`` and ``start``, the index of the corpus
    sequence and the piece's offset in it.
    """
    out = []
    for index, codes in enumerate(corpus.sequences):
        mask = corpus.variant_masks[index]
        for start in range(0, max(len(codes) - length // 2, 1), length):
            piece = slice(start, start + length)
            out.append(
                {
                    "sequence": codes[piece].tobytes().decode("ascii"),
                    "variant": None if mask is None else mask[piece],
                    "labels": cut_labels(corpus.labels[index], piece),
                    "source": index,
                    "start": start,
                }
            )
    return out
