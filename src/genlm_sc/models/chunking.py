"""Long sequences → chunks of whole tokens that fit a model's context, padded into batches.

A sequence is tokenized whole (no special tokens), its tokens are split into runs that
leave room for the special tokens, and each run gets the special tokens the tokenizer
itself adds around a sequence (:func:`special_template`: ``[CLS] … [SEP]`` for BERT,
``<cls> …`` and whatever else a checkpoint's own tokenizer adds), so a chunk is encoded as
the model's own recipe encodes a sequence. :meth:`Chunker.pad` turns a list of such
chunks into the ``input_ids``, ``attention_mask`` and a mask of the sequence tokens (special
and padding tokens excluded) that pooling averages over. Every model that reads sequences
(:class:`~genlm_sc.models.SequenceEncoder`, the fine-tuned heads of
:mod:`genlm_sc.models.heads`, the scorers of :func:`genlm_sc.tl.attribute`) chunks through
this one class, so a window is cut the same way everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["Chunker", "context_length", "ignores_attention_mask", "special_template"]


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
    equal_lengths
        Batch only chunks of one length, for a model that ignores the attention mask
        (:func:`ignores_attention_mask`: padding would change its outputs); :meth:`pad`
        refuses a batch of mixed lengths.
    """

    def __init__(
        self, tokenizer: Any, *, max_length: int, device: str = "cpu", equal_lengths: bool = False
    ):
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.device = device
        self.equal_lengths = bool(equal_lengths)
        self._fast = _fast_tokens(tokenizer)
        self._vocab_size = len(tokenizer)
        self.head, self.tail = special_template(tokenizer)
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @property
    def cls_id(self) -> int | None:
        """The first special token the tokenizer puts before a sequence (``None``: none)."""
        return self.head[0] if self.head else None

    @property
    def room(self) -> int:
        """Sequence tokens per chunk: ``max_length`` less the special tokens."""
        return self.max_length - len(self.head) - len(self.tail)

    @property
    def n_leading(self) -> int:
        """Special tokens before a chunk's sequence tokens."""
        return len(self.head)

    def chunk_ids(self, sequence: str) -> list[list[int]]:
        """Token ids of each chunk of a sequence, special tokens added."""
        return self.chunk_ids_of([sequence])[0]

    def chunk_ids_of(self, sequences: Sequence[str]) -> list[list[list[int]]]:
        """:meth:`chunk_ids` of many sequences, tokenized in one call (a fast tokenizer
        spreads a batch over the CPU's cores)."""
        room = self.room
        if room <= 0:
            raise ValueError(f"max_length {self.max_length} leaves no room for sequence tokens")
        sequences = list(sequences)  # by position, whatever the container's labels
        tokens: list[list[int] | None] = [self._by_lookup(s) for s in sequences]
        rest = [i for i, ids in enumerate(tokens) if ids is None]
        if rest:
            encoded = self.tokenizer([sequences[i] for i in rest], add_special_tokens=False,
                                     verbose=False)  # fmt: skip
            for i, ids in zip(rest, encoded["input_ids"], strict=True):
                tokens[i] = ids
        out = []
        for ids in tokens:
            assert ids is not None
            if not ids and not (self.head or self.tail):
                out.append([])  # nothing to run: a model without special tokens gets no chunk
                continue
            chunks = [ids[i : i + room] for i in range(0, max(len(ids), 1), room)]
            out.append([self.head + chunk + self.tail for chunk in chunks])
        return out

    def _by_lookup(self, sequence: str) -> list[int] | None:
        """The tokenizer's own ids for ``sequence`` by table lookup (many times faster),
        where :func:`_fast_tokens` applies; ``None`` otherwise."""
        if self._fast is None or len(self.tokenizer) != self._vocab_size:
            return None  # tokens added since: the tokenizer decides
        return self._fast(sequence)

    def batches(self, chunks: list[list[int]], batch_size: int) -> list[list[int]]:
        """Indices of ``chunks`` in batches of at most ``batch_size``, shortest first, so
        that chunks of similar length pad together (of one length with ``equal_lengths``)."""
        order = np.argsort([len(c) for c in chunks], kind="stable").tolist()
        batch_size = max(int(batch_size), 1)
        if not self.equal_lengths:
            return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
        out: list[list[int]] = []
        for i in order:
            if out and len(out[-1]) < batch_size and len(chunks[out[-1][0]]) == len(chunks[i]):
                out[-1].append(i)
            else:
                out.append([i])
        return out

    def pad(self, chunks: list[list[int]]):
        """``(input_ids, attention_mask, keep)`` tensors for a batch of chunks.

        ``keep`` is float32, 1 on sequence tokens and 0 on special and padding tokens.
        """
        import torch

        width = max(len(c) for c in chunks)
        if self.equal_lengths and any(len(c) != width for c in chunks):
            raise ValueError(
                "this model ignores the attention mask, so chunks of different lengths "
                "cannot be padded into one batch (batch them with Chunker.batches)"
            )
        ids = np.full((len(chunks), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(chunks), width), dtype=np.int64)
        for row, chunk in enumerate(chunks):
            ids[row, : len(chunk)] = chunk
            mask[row, : len(chunk)] = 1
        keep = mask.astype(bool)
        keep[:, : len(self.head)] = False
        lengths = mask.sum(1)
        for back in range(1, len(self.tail) + 1):
            keep[np.arange(len(chunks)), lengths - back] = False
        as_tensor = lambda a: torch.from_numpy(a).to(self.device)  # noqa: E731
        return as_tensor(ids), as_tensor(mask), as_tensor(keep.astype(np.float32))


def _fast_tokens(tokenizer: Any) -> Any:
    """A function giving a sequence's token ids by table lookup, or ``None`` where the
    lookup does not apply, for genlm_sc's own tokenizers whose ids depend on each base or
    k-mer alone; ``None`` for any other tokenizer (which then tokenizes as usual).

    - character tokenizer: every character is one token whatever its neighbours (a
      normaliser to ``ACGTN``, one word per character); sequences of ASCII letters only
      (brackets could spell a special token).
    - :class:`~genlm_sc.models.KmerTokenizerFast` (ours, and DNABERT's vocabularies read
      through it): the overlapping k-mers of the sequence, ``[UNK]`` for a k-mer holding
      anything but ``ACGTacgt``; any ASCII sequence.
    """
    import string

    from .tokenization import SPECIAL_TOKENS, KmerTokenizerFast, tokenizer_info

    info = tokenizer_info(tokenizer)
    if info.get("guessed", True) or set(tokenizer.get_added_vocab()) - set(SPECIAL_TOKENS):
        return None  # tokens added by a user can span letters: the tokenizer decides
    if info["kind"] == "char":
        letters = string.ascii_letters
        ids = tokenizer(letters, add_special_tokens=False, verbose=False)["input_ids"]
        if len(ids) != len(letters):
            return None
        table = np.full(256, -1, dtype=np.int64)
        table[np.frombuffer(letters.encode("ascii"), dtype=np.uint8)] = ids

        def by_letter(sequence: str) -> list[int] | None:
            if not (sequence.isascii() and sequence.isalpha()):
                return None
            return table[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)].tolist()

        return by_letter
    if info["kind"] == "kmer" and isinstance(tokenizer, KmerTokenizerFast):
        k, unknown = tokenizer.kmer_size, tokenizer.unk_token_id
        kmers = np.full(4**k, unknown, dtype=np.int64)
        place = 4 ** np.arange(k - 1, -1, -1)
        for token, i in tokenizer.get_vocab().items():
            if len(token) == k and set(token) <= set("ACGT"):
                kmers[int(np.dot(["ACGT".index(b) for b in token], place))] = i
        codes = np.full(256, -1, dtype=np.int64)
        for b, letter in enumerate("ACGT"):
            codes[ord(letter)] = codes[ord(letter.lower())] = b

        def by_kmer(sequence: str) -> list[int] | None:
            if not sequence.isascii():
                return None
            if len(sequence) < k:
                return []
            base = codes[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]
            windows = np.lib.stride_tricks.sliding_window_view(base, k)
            ids = kmers[np.maximum(windows, 0) @ place]
            ids[(windows < 0).any(axis=1)] = unknown
            return ids.tolist()

        return by_kmer
    return None


def ignores_attention_mask(model: Any) -> bool:
    """Whether a model's ``forward`` takes no ``attention_mask`` (GPN's convolutional
    networks): padding tokens then change the outputs at the sequence's own tokens."""
    import inspect

    unwrap = getattr(model, "get_base_model", None)  # a peft model: look at what it wraps
    if callable(unwrap):
        model = unwrap()
    model = getattr(model, "_orig_mod", model)  # torch.compile
    model = getattr(model, "module", model)  # DataParallel, DistributedDataParallel
    try:
        parameters = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return "attention_mask" not in parameters


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


def special_template(tokenizer: Any) -> tuple[list[int], list[int]]:
    """The special token ids a tokenizer puts before and after a sequence.

    Read off the tokenizer itself: a DNA probe is encoded with and without special tokens,
    and what surrounds the plain ids is the template (``([CLS], [SEP])`` for BERT-style
    tokenizers, ``([<cls>], [<eos>])`` or ``([<cls>], [])`` for ESM-style ones, as their
    configuration says).
    """
    probe = "ACGTACGTACGTACGTACGTACGT"
    plain = tokenizer(probe, add_special_tokens=False, verbose=False)["input_ids"]
    full = tokenizer(probe, add_special_tokens=True, verbose=False)["input_ids"]
    for start in range(len(full) - len(plain) + 1):
        if full[start : start + len(plain)] == plain:
            return list(full[:start]), list(full[start + len(plain) :])
    raise ValueError(
        f"cannot find the sequence's tokens among those {type(tokenizer).__name__} adds "
        "special tokens to; the tokenizer changes tokens when it adds them"
    )
