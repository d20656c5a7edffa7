"""Masked-LM batches for DNA: span masking for k-mers, more masking at variant positions."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from .token_spans import mask_span

__all__ = ["DnaMaskingCollator"]


class DnaMaskingCollator:
    """Tokenize crops and choose the tokens a masked LM must predict.

    Each token is picked with probability ``mlm_probability``, or
    ``variant_mlm_probability`` when its bases include a variant (the corpus' variant
    masks, mapped through the tokenizer's offsets). With overlapping k-mers a picked token
    starts a span of ``k`` masked tokens, so the base they share cannot be read off the
    unmasked neighbours (DNABERT); the start probability is divided by ``k`` so about
    ``mlm_probability`` of the tokens end up masked. Of the picked tokens 80 % become
    ``[MASK]``, 10 % a random token and 10 % stay, as in BERT.

    Parameters
    ----------
    tokenizer
        A DNA tokenizer (:func:`genlm_sc.models.build_tokenizer`).
    max_length
        Tokens per example (longer crops are truncated).
    mlm_probability, variant_mlm_probability
        Masking rates; ``None`` for the variant rate means no special treatment.
    random_state
        Each example's mask is a function of ``random_state`` and of the example alone: of
        its ``index`` when it has one (the crops of
        :class:`~genlm_sc.pp.examples.CropDataset`, so the same crop drawn at another step
        gets another mask), else of its sequence (evaluation sets). It depends neither on
        the other examples of the batch nor on earlier batches, so a run resumed from a
        checkpoint masks exactly as the uninterrupted run did, and processes training
        together (``torchrun``), each collating its share of a batch, mask as one process
        collating the whole batch does.
    only_variants
        Score only tokens covering a variant (evaluation of the variant-position metrics).
    targets
        Auxiliary targets (:class:`~genlm_sc.models.multitask.AuxiliaryTarget`): each
        batch also carries their labels, ``aux_<name>``, from the examples' ``labels``
        (:func:`~genlm_sc.models.multitask.token_classes`).
    """

    def __init__(
        self,
        tokenizer: Any,
        *,
        max_length: int,
        mlm_probability: float = 0.15,
        variant_mlm_probability: float | None = None,
        random_state: int = 0,
        only_variants: bool = False,
        targets: Sequence[Any] = (),
    ):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.mlm_probability = mlm_probability
        self.variant_mlm_probability = variant_mlm_probability
        self.span = mask_span(tokenizer)
        self.random_state = random_state
        self.only_variants = only_variants
        self.targets = list(targets)
        specials = set(tokenizer.all_special_ids)
        self._ordinary = np.array([i for i in range(len(tokenizer)) if i not in specials])

    def __call__(self, examples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        sequences = [e["sequence"] for e in examples]
        encoded = self.tokenizer(
            sequences,
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_offsets_mapping=True,
            return_special_tokens_mask=True,
            return_tensors="np",
        )
        ids = encoded["input_ids"].astype(np.int64)
        special = encoded["special_tokens_mask"].astype(bool)
        variant = self._variant_tokens(examples, encoded["offset_mapping"], special)
        start_draw, roll, swap_to = self._draws(examples, ids.shape[1])
        if self.only_variants:
            picked = variant & ~special
        else:
            rate = np.full(ids.shape, self.mlm_probability)
            if self.variant_mlm_probability is not None:
                rate[variant] = self.variant_mlm_probability
            starts = (start_draw < rate / self.span) & ~special
            picked = _spread(starts, self.span) & ~special
        labels = np.where(picked, ids, -100)
        masked_ids = ids.copy()
        masked_ids[picked & (roll < 0.8)] = self.tokenizer.mask_token_id
        swap = picked & (roll >= 0.8) & (roll < 0.9)
        masked_ids[swap] = self._ordinary[swap_to[swap]]
        batch = {
            "input_ids": torch.from_numpy(masked_ids),
            "attention_mask": torch.from_numpy(encoded["attention_mask"].astype(np.int64)),
            "labels": torch.from_numpy(labels),
        }
        if self.targets:
            from .multitask import token_classes

            batch.update(token_classes(examples, encoded["offset_mapping"], special, self.targets))
        return batch

    def _draws(
        self, examples: Sequence[dict[str, Any]], length: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Each example's random numbers, ``(batch, length)`` each: the draw that picks
        span starts, the roll that decides ``[MASK]`` / random token / unchanged, and the
        random token. Row ``i`` comes from a generator seeded by ``random_state`` and
        example ``i`` alone, ``max_length`` draws long whatever the batch's padding."""
        width = max(self.max_length, length)
        starts = np.empty((len(examples), width))
        rolls = np.empty((len(examples), width))
        tokens = np.empty((len(examples), width), dtype=np.int64)
        for row, example in enumerate(examples):
            generator = np.random.default_rng([self.random_state, _example_key(example)])
            starts[row] = generator.random(width)
            rolls[row] = generator.random(width)
            tokens[row] = generator.integers(0, len(self._ordinary), width)
        return starts[:, :length], rolls[:, :length], tokens[:, :length]

    @staticmethod
    def _variant_tokens(
        examples: Sequence[dict[str, Any]], offsets: np.ndarray, special: np.ndarray
    ) -> np.ndarray:
        """``(batch, tokens)``: whether a token's bases include a variant base."""
        out = np.zeros(special.shape, dtype=bool)
        for row, example in enumerate(examples):
            mask = example.get("variant")
            if mask is None or not np.any(mask):
                continue
            covered = np.concatenate([[0], np.cumsum(np.asarray(mask, dtype=np.int64))])
            start = np.minimum(offsets[row, :, 0], len(mask))
            end = np.minimum(offsets[row, :, 1], len(mask))
            out[row] = (covered[end] - covered[start] > 0) & ~special[row]
        return out


def _example_key(example: dict[str, Any]) -> int:
    """The example's ``index``, else a digest of its sequence (a non-negative integer)."""
    if "index" in example:
        return int(example["index"])
    digest = hashlib.blake2b(example["sequence"].encode("ascii"), digest_size=8)
    for where in ("source", "start"):  # tiles of a repeated sequence get different masks
        if where in example:
            digest.update(b"\n%d" % int(example[where]))
    return int.from_bytes(digest.digest(), "little")


def _spread(starts: np.ndarray, span: int) -> np.ndarray:
    """Each ``True`` also marks the ``span - 1`` positions after it."""
    out = starts.copy()
    for shift in range(1, span):
        out[:, shift:] |= starts[:, :-shift]
    return out
