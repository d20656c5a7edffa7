"""Long sequences → chunks of whole tokens that fit a model's context, padded into batches.

A sequence is tokenized whole (no special tokens), its tokens are split into runs of at
most ``max_length - 2`` (room for ``[CLS]``/``[SEP]`` where the tokenizer has them), and
each run gets the tokenizer's special tokens. :meth:`Chunker.pad` turns a list of such
chunks into the ``input_ids``, ``attention_mask`` and a mask of the sequence tokens (special
and padding tokens excluded) that pooling averages over. Every model that reads sequences
(:class:`~genlm_sc.models.SequenceEncoder`, the fine-tuned heads of
:mod:`genlm_sc.models.heads`, the scorers of :func:`genlm_sc.tl.attribute`) chunks through
this one class, so a window is cut the same way everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["Chunker", "context_length"]


class Chunker:
    """Cut sequences into chunks of token ids and pad chunks into tensors.

    Parameters
    ----------
    tokenizer
        A Hugging Face tokenizer (fast).
    max_length
        Tokens per chunk, special tokens included.
    device
        Where :meth:`pad` puts its tensors.
    """

    def __init__(self, tokenizer: Any, *, max_length: int, device: str = "cpu"):
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.device = device
        self.cls_id = tokenizer.cls_token_id
        self.sep_id = tokenizer.sep_token_id
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @property
    def room(self) -> int:
        """Sequence tokens per chunk: ``max_length`` less the special tokens."""
        return self.max_length - (self.cls_id is not None) - (self.sep_id is not None)

    @property
    def n_leading(self) -> int:
        """Special tokens before a chunk's sequence tokens (1 with ``[CLS]``, else 0)."""
        return int(self.cls_id is not None)

    def chunk_ids(self, sequence: str) -> list[list[int]]:
        """Token ids of each chunk of a sequence, special tokens added."""
        ids = self.tokenizer(sequence, add_special_tokens=False, verbose=False)["input_ids"]
        room = self.room
        if room <= 0:
            raise ValueError(f"max_length {self.max_length} leaves no room for sequence tokens")
        chunks = [ids[i : i + room] for i in range(0, max(len(ids), 1), room)]
        head = [self.cls_id] if self.cls_id is not None else []
        tail = [self.sep_id] if self.sep_id is not None else []
        return [head + chunk + tail for chunk in chunks]

    def pad(self, chunks: list[list[int]]):
        """``(input_ids, attention_mask, keep)`` tensors for a batch of chunks.

        ``keep`` is float32, 1 on sequence tokens and 0 on special and padding tokens.
        """
        import torch

        width = max(len(c) for c in chunks)
        ids = np.full((len(chunks), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(chunks), width), dtype=np.int64)
        for row, chunk in enumerate(chunks):
            ids[row, : len(chunk)] = chunk
            mask[row, : len(chunk)] = 1
        keep = mask.astype(bool)
        if self.cls_id is not None:
            keep[:, 0] = False
        if self.sep_id is not None:
            lengths = mask.sum(1)
            keep[np.arange(len(chunks)), lengths - 1] = False
        as_tensor = lambda a: torch.from_numpy(a).to(self.device)  # noqa: E731
        return as_tensor(ids), as_tensor(mask), as_tensor(keep.astype(np.float32))


def context_length(model: Any, tokenizer: Any) -> int:
    """Tokens per chunk a model takes: its ``max_position_embeddings`` when it has one
    (less the two positions ESM/RoBERTa-style models reserve), else the tokenizer's
    ``model_max_length`` (at most 4,096)."""
    positions = getattr(model.config, "max_position_embeddings", None)
    if positions:
        # ESM/RoBERTa-style models reserve position ids for padding
        offset = 2 if getattr(model.config, "model_type", "") in ("roberta", "esm") else 0
        return int(positions) - offset
    length = getattr(tokenizer, "model_max_length", None) or 512
    return int(min(length, 4096))
