"""Sequences → fixed-size vectors with any Hugging Face DNA encoder.

:class:`SequenceEncoder` wraps a model and its tokenizer for inference: sequences longer
than the model's context are cut into chunks of whole tokens, chunks of similar length are
batched together (little padding), the forward passes run under
:func:`torch.inference_mode` in the chosen precision, and token states are pooled.

Chunking and pooling
    A sequence is cut into chunks of whole tokens by :class:`~genlm_sc.models.chunking.Chunker`
    and every chunk is encoded on its own. ``pooling="mean"`` averages the hidden states of
    all sequence tokens of all chunks (special and padding tokens excluded), so a long
    window gets the same kind of vector as a short one; ``pooling="cls"`` averages the
    chunks' first-token states, weighted by their numbers of tokens.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np

from .._devices import resolve_device, resolve_precision
from .._settings import show_progress
from .chunking import Chunker, context_length, ignores_attention_mask

__all__ = ["SequenceEncoder", "chunk_digest", "load_encoder"]

Pooling = Literal["mean", "cls"]


class SequenceEncoder:
    """A DNA encoder ready for inference.

    Parameters
    ----------
    model
        A Hugging Face model returning ``last_hidden_state`` / ``hidden_states`` (a base
        model or a masked LM; for a masked LM its base model is used).
    tokenizer
        Its tokenizer (fast, with offsets).
    device, precision
        As in :func:`genlm_sc.tl.pretrain` (``"auto"``: bf16 where the hardware computes it
        natively, else fp32).
    max_length
        Tokens per chunk, special tokens included (default: the model's
        ``max_position_embeddings`` when it has one, else the tokenizer's
        ``model_max_length``, at most 4,096).
    source
        Where the model came from (recorded next to the embeddings).
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        device: str = "auto",
        precision: str = "auto",
        max_length: int | None = None,
        source: str | None = None,
    ):

        self.device = resolve_device(device)
        self.precision = resolve_precision(precision, self.device)
        self.tokenizer = tokenizer
        base = getattr(model, "base_model", model)
        self.model = base.eval().to(self.device)
        self.max_length = max_length or context_length(model, tokenizer)
        self.source = source
        self.chunker = Chunker(tokenizer, max_length=self.max_length, device=self.device,
                               equal_lengths=ignores_attention_mask(self.model))  # fmt: skip
        self.last_counts: dict[str, int] = {}

    @property
    def hidden_size(self) -> int:
        """Width of the vectors :meth:`embed` returns."""
        return int(self.model.config.hidden_size)

    @property
    def n_layers(self) -> int:
        """Hidden-state layers the model returns (embeddings included)."""
        return int(self.model.config.num_hidden_layers) + 1

    def describe(self) -> dict[str, Any]:
        """JSON-ready record of what produced the embeddings."""
        return {
            "model": self.source,
            "model_type": self.model.config.model_type,
            "hidden_size": self.hidden_size,
            "max_length": self.max_length,
            "precision": self.precision,
        }

    def chunk_ids(self, sequence: str) -> list[list[int]]:
        """Token ids of each chunk of a sequence, special tokens added."""
        return self.chunker.chunk_ids(sequence)

    def embed(
        self,
        sequences: Sequence[str],
        *,
        pooling: Pooling = "mean",
        layer: int = -1,
        batch_size: int = 16,
        progress: bool = False,
        chunk_cache: dict[bytes, tuple[np.ndarray, float]] | None = None,
    ) -> np.ndarray:
        """``(n_sequences, hidden_size)`` float32 vectors (see the module notes).

        Every distinct chunk (by its token ids) runs through the model once, however many
        sequences hold it: people's haplotypes of a long window differ in a few chunks and
        share the rest. ``chunk_cache`` (a dict kept by the caller for calls with the same
        ``pooling`` and ``layer``, keyed by :func:`chunk_digest`) carries the pooled sums of
        chunks across calls, so the haplotypes of one gene split over several calls still
        embed each chunk once.
        :attr:`last_counts` holds the numbers of chunks, distinct chunks and chunks run.
        """
        import torch
        from tqdm.auto import tqdm

        if pooling not in ("mean", "cls"):
            raise ValueError(f"pooling must be 'mean' or 'cls', not {pooling!r}")
        if pooling == "cls" and self.chunker.cls_id is None:
            raise ValueError("pooling='cls' needs a tokenizer with a [CLS] token")
        cache: dict[bytes, tuple[np.ndarray, float]] = {} if chunk_cache is None else chunk_cache
        owner, keys, todo = [], [], {}
        for i, chunks in enumerate(self.chunker.chunk_ids_of(sequences)):
            for chunk in chunks:
                key = chunk_digest(chunk)
                owner.append(i)
                keys.append(key)
                if key not in cache and key not in todo:
                    todo[key] = chunk
        pending = list(todo.values())
        batches = self.chunker.batches(pending, batch_size)
        with torch.inference_mode(), self._autocast():
            for batch in tqdm(
                batches, disable=not show_progress(progress), desc="embedding", unit="batch"
            ):
                picked = [pending[j] for j in batch]
                ids, mask, keep = self.chunker.pad(picked)
                inputs = {"input_ids": ids}
                if not self.chunker.equal_lengths:
                    inputs["attention_mask"] = mask
                if layer != -1:
                    inputs["output_hidden_states"] = True
                out = self.model(**inputs)
                if layer != -1 and getattr(out, "hidden_states", None) is None:
                    raise ValueError(
                        f"{type(self.model).__name__} returns no per-layer hidden states: "
                        "only layer=-1 (its last states) can be embedded"
                    )
                states = out.last_hidden_state if layer == -1 else out.hidden_states[layer]
                states = states.float()
                counts = keep.sum(1)
                if pooling == "mean":
                    vectors = (states * keep.unsqueeze(-1)).sum(1)
                else:
                    vectors = states[:, 0] * counts.unsqueeze(-1)
                vectors = vectors.cpu().double().numpy()
                for chunk, vector, count in zip(picked, vectors, counts.tolist(), strict=True):
                    cache[chunk_digest(chunk)] = (vector, float(count))
        self.last_counts = {
            "chunks": len(keys), "distinct_chunks": len(set(keys)), "forward_chunks": len(pending),
        }  # fmt: skip
        sums = np.zeros((len(sequences), self.hidden_size), dtype=np.float64)
        weights = np.zeros(len(sequences), dtype=np.float64)
        if keys:
            stacked = np.stack([cache[k][0] for k in keys])
            np.add.at(sums, np.asarray(owner), stacked)
            np.add.at(weights, np.asarray(owner), [cache[k][1] for k in keys])
        return (sums / np.maximum(weights, 1)[:, None]).astype(np.float32)

    def _autocast(self):
        import contextlib

        import torch

        if self.precision in ("bf16", "fp16"):
            dtype = torch.bfloat16 if self.precision == "bf16" else torch.float16
            return torch.autocast(device_type=self.device.split(":")[0], dtype=dtype)
        return contextlib.nullcontext()


def load_encoder(
    model: Any,
    *,
    device: str = "auto",
    precision: str = "auto",
    max_length: int | None = None,
    trust_remote_code: bool = False,
) -> SequenceEncoder:
    """A :class:`SequenceEncoder` from a checkpoint directory, a ``(model, tokenizer)`` pair
    or an encoder (returned as is).

    ``trust_remote_code=True`` lets a checkpoint whose ``config.json`` names code of its own
    (``auto_map``) run that code; without it such a checkpoint is an error. A path that is
    not a local folder is an error too (:mod:`genlm_sc.models.loading`).

    A directory is any local Hugging Face checkpoint of a BERT-family encoder with its
    tokenizer: ours (:func:`genlm_sc.tl.pretrain`), DNABERT-style k-mer, Nucleotide
    Transformer-style or DNABERT-2-style BPE models. Nothing is downloaded.
    """
    if isinstance(model, SequenceEncoder):
        return model
    if isinstance(model, str | os.PathLike):
        from transformers import AutoModel

        from .._quiet import quiet_transformers
        from .loading import check_tokenizer, check_vocabulary, from_local, require_tokenizer
        from .tokenization import load_tokenizer

        path = os.fspath(model)
        with quiet_transformers(errors_only=True):  # half-loaded models are refused below
            network = from_local(AutoModel, path, trust_remote_code=trust_remote_code, strict=True)
        require_tokenizer(path)
        tokenizer = load_tokenizer(path, trust_remote_code=trust_remote_code)
        check_tokenizer(tokenizer, path)
        check_vocabulary(network, tokenizer, path)
        return SequenceEncoder(
            network, tokenizer, device=device, precision=precision, max_length=max_length,
            source=os.path.abspath(path),
        )  # fmt: skip
    if isinstance(model, tuple) and len(model) == 2:
        network, tokenizer = model
        return SequenceEncoder(
            network, tokenizer, device=device, precision=precision, max_length=max_length,
            source=type(network).__name__,
        )  # fmt: skip
    raise TypeError("model must be a checkpoint directory, a (model, tokenizer) pair or an encoder")


def chunk_digest(chunk: Sequence[int]) -> bytes:
    """A 16-byte digest of a chunk's token ids (the key of chunk caches)."""
    import hashlib

    return hashlib.blake2b(np.asarray(chunk, dtype=np.int64).tobytes(), digest_size=16).digest()
