"""Scalar scores of DNA sequences, their in-silico mutagenesis and their base gradients.

A scorer turns a sequence into one number that decomposes over the sequence's chunks
(long sequences are cut into runs of whole tokens, as :mod:`genlm_sc.models.encoder` does):
every chunk gives a feature vector summed over its tokens, the vectors of a sequence's
chunks add up, and a final function maps the total to the score.

:class:`ExpressionScorer` (``target="expression"``)
    A fine-tuned :class:`~genlm_sc.models.heads.HaplotypeRegressor`. The score of a sequence
    is the predicted expression of a person carrying it on both haplotypes (what
    :func:`genlm_sc.tl.predict` gives for a single sequence). The head is linear in the
    two haplotypes' pooled states, so editing one haplotype of any person changes the
    prediction by half the homozygous change, whatever the other haplotype is.
:class:`ClassifierScorer` (``target="classification"``)
    A fine-tuned :class:`~genlm_sc.models.heads.SequenceClassifier`
    (:func:`genlm_sc.tl.fit_classifier`). The score is the log-probability (nats) the
    classifier gives one class (``label``; by default its last class, the positive one of
    two).
:class:`LikelihoodScorer` (``target="mlm"``)
    A masked language model. The score is the sum over tokens of ``log p(token)`` in one
    forward pass over the unmasked sequence (nats): how typical the model finds it.

Because a substitution changes only the tokens covering it, in-silico mutagenesis
(:meth:`ChunkScorer.saturation_mutagenesis`) evaluates only the chunks a mutant changes,
and evaluates every distinct chunk once (a cache shared by all sequences a scorer sees, so
haplotypes of one gene re-use each other's unchanged chunks). The results equal scoring
every mutant from scratch.

Gradients (:meth:`ChunkScorer.base_gradients`) are taken with respect to one-hot bases
mapped onto the one-hot token inputs (the embedding lookup is replaced by a product of a
one-hot matrix with the embedding weights; :mod:`genlm_sc.tl.attribution.onehot`, which
integrated gradients and DeepLIFT-SHAP use too), so token gradients reach the bases
through the tokenizer:

- single-base and k-mer tokens (overlapping DNABERT k-mers and Nucleotide Transformer
  k-mers): a token's one-hot vector is read as the product of the one-hot vectors of its
  bases, so the gradient for base ``b`` at position ``i`` is the sum, over the tokens
  covering ``i``, of the token gradient at the k-mer with ``b`` written at ``i``. This is
  the exact chain rule; for single-base tokens it is the plain input gradient.
- any other tokenizer (BPE): a token's gradient at its own id is shared equally between
  the bases it covers; gradients for bases not in the sequence are not defined (``NaN``).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch

from ..._devices import resolve_device
from ..._dna import BASE_INDEX, BASES
from ...models.chunking import Chunker, ignores_attention_mask
from ...models.heads import HaplotypeRegressor, SequenceClassifier
from ...models.tokenization import tokenizer_info
from .onehot import _POSITIONAL, OneHotScore, _onehot_inputs

__all__ = [
    "ChunkScorer",
    "ClassifierScorer",
    "ExpressionScorer",
    "LikelihoodScorer",
    "PooledScorer",
]

#: Mutants whose changed chunks are evaluated together.
_MUTANTS_PER_BLOCK = 512


class ChunkScorer:
    """A sequence score that adds up over chunks (see the module notes).

    Subclasses define :meth:`chunk_features` and :meth:`combine`.

    Parameters
    ----------
    network
        The PyTorch model (in evaluation mode; moved to ``device``).
    tokenizer
        Its tokenizer.
    max_length
        Tokens per chunk, special tokens included.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    reader
        The part of ``network`` that reads the token ids (default: ``network``); when its
        ``forward`` takes no attention mask, batches hold chunks of one length only.
    """

    def __init__(
        self, network: Any, tokenizer: Any, *, max_length: int, device: str = "auto",
        reader: Any = None,
    ):  # fmt: skip
        self.device = resolve_device(device)
        self.network = network.eval().to(self.device)
        self.tokenizer = tokenizer
        unmasked = ignores_attention_mask(network if reader is None else reader)
        self.chunker = Chunker(tokenizer, max_length=max_length, device=self.device,
                               equal_lengths=unmasked)  # fmt: skip
        self.kind = tokenizer_info(tokenizer)["kind"]
        vocab = tokenizer.get_vocab()  # a lowercase DNA vocabulary (GPN) read in uppercase
        self._vocab = {**{t.upper(): i for t, i in vocab.items() if t.islower()}, **vocab}
        self._unk = tokenizer.unk_token_id
        self._cache: dict[bytes, np.ndarray] = {}
        #: distinct chunks evaluated so far (forward passes, counted in chunks)
        self.n_chunks_evaluated = 0

    # --- what a subclass defines ------------------------------------------------------

    def chunk_features(
        self, ids: torch.Tensor, mask: torch.Tensor, keep: torch.Tensor
    ) -> torch.Tensor:
        """``(n_chunks, n_features)`` features of padded chunks, summed over kept tokens."""
        raise NotImplementedError

    def combine(self, totals: torch.Tensor) -> torch.Tensor:
        """Scores ``(n,)`` from summed features ``(n, n_features)``."""
        raise NotImplementedError

    @property
    def embeddings(self) -> torch.nn.Embedding:
        """The token embedding layer (for gradients)."""
        return self.network.get_input_embeddings()

    # --- scores -----------------------------------------------------------------------

    def score(
        self, sequences: Sequence[str], *, batch_size: int = 32, anchors: Any = None
    ) -> np.ndarray:
        """``(n,)`` float64 scores, each sequence scored from scratch (its chunks cached).
        ``anchors`` are ignored: a language model reads every chunk of a sequence."""
        chunked = [self.chunker.chunk_ids(_clean(s)) for s in sequences]
        totals = np.stack([self._features(c, batch_size).sum(0) for c in chunked])
        return self._combine(totals)

    def window(self, sequence: str, anchor: int | None = None) -> tuple[int, int, int]:
        """``(0, 0, len(sequence))``: a language model reads all of a sequence (a fused
        model's scorer reads a cut around the anchor)."""
        return 0, 0, len(sequence)

    def saturation_mutagenesis(
        self,
        sequence: str,
        *,
        positions: Sequence[int] | None = None,
        batch_size: int = 32,
        anchor: int | None = None,
    ) -> np.ndarray:
        """Score change of every single-base substitution (at ``positions``: all if None;
        ``anchor`` is ignored, as in :meth:`score`).

        Returns
        -------
        ``(len(sequence), 4)`` float64: ``score(mutant) - score(sequence)`` for writing
        A, C, G, T at each position; ``0`` at the sequence's own base and ``NaN`` on a
        whole row where the sequence has no A/C/G/T (such positions are not mutated) and
        at positions not asked for.
        """
        sequence = _clean(sequence)
        chunks = self.chunker.chunk_ids(sequence)
        own = self._features(chunks, batch_size)
        total = own.sum(0)
        out = np.full((len(sequence), 4), np.nan)
        where: list[tuple[int, int]] = []
        totals: list[np.ndarray] = []
        pending: list[tuple[int, int, list[tuple[int, list[int]]]]] = []

        def flush() -> None:
            # evaluate the block's new chunks together (batched), then add them up per mutant
            self._features([ids for *_, changed in pending for _, ids in changed], batch_size)
            for position, base, changed in pending:
                new = self._features([ids for _, ids in changed], batch_size).sum(0)
                if changed[0][0] < 0:  # the mutant was chunked differently: all redone
                    totals.append(new)
                else:
                    totals.append(total + new - own[[c for c, _ in changed]].sum(0))
                where.append((position, base))
            pending.clear()

        for position, base, changed in self._mutants(sequence, chunks, positions):
            if base is None:
                out[position] = 0.0  # a mutable position; unchanged tokens keep 0
            elif changed is not None:
                pending.append((position, base, changed))
                if len(pending) >= _MUTANTS_PER_BLOCK:
                    flush()
        if pending:
            flush()
        if where:
            rows, columns = np.asarray(where).T
            base_score = self._combine(total[None])[0]
            out[rows, columns] = self._combine(np.stack(totals)) - base_score
        return out

    def base_gradients(self, sequence: str, *, anchor: int | None = None) -> np.ndarray:
        """Gradient of the score with respect to the one-hot bases, ``(len, 4)`` float64.

        See the module notes for how token gradients are projected onto bases. ``NaN``
        where a gradient is not defined (positions outside any token, and bases other
        than the sequence's own under non-positional tokenizers). ``anchor`` is ignored.
        """
        self.require_embeddings("gradients")
        return self.onehot_score(sequence).gradients()

    def onehot_score(self, sequence: str, anchor: int | None = None) -> OneHotScore:
        """The score as a function of ``sequence``'s one-hot bases (for captum; ``anchor``
        is ignored)."""
        return OneHotScore(self, _clean(sequence))

    def require_embeddings(self, what: str) -> None:
        """Refuse ``what`` (gradient methods) for a network without a token embedding matrix."""
        if not isinstance(self.embeddings, torch.nn.Embedding):
            raise ValueError(
                f"{type(self.network).__name__} has no token embedding matrix (GPN reads "
                f"one-hot bases directly), so {what} with respect to tokens are not "
                "defined for it; use method='ism'"
            )

    def score_onehot(self, sequence: str, onehot: torch.Tensor) -> float:
        """The score with the token one-hot inputs of ``sequence``'s chunks replaced by
        ``onehot`` (``(n_chunks, width, vocab)``; for finite-difference checks)."""
        ids, mask, keep = self.chunker.pad(self.chunker.chunk_ids(_clean(sequence)))
        with torch.inference_mode(), _onehot_inputs(self.embeddings, onehot.to(self.device)):
            features = self.chunk_features(ids, mask, keep)
            return float(self.combine(features.double().sum(0, keepdim=True))[0])

    def token_layout(self, sequence: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where each token of ``sequence`` sits: its bases ``(n, 2)``, chunk and column."""
        from ...models.token_spans import token_base_spans

        spans = token_base_spans(self.tokenizer, _clean(sequence))
        room = self.chunker.room
        order = np.arange(len(spans))
        return spans, order // room, order % room + self.chunker.n_leading

    # --- internals ----------------------------------------------------------------------

    def _combine(self, totals: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            scores = self.combine(torch.as_tensor(totals, dtype=torch.float64, device=self.device))
        return scores.double().cpu().numpy()

    def _features(self, chunks: Sequence[Sequence[int]], batch_size: int) -> np.ndarray:
        """Summed features of each chunk, ``(n, n_features)`` float64 (cached by content)."""
        keys = [np.asarray(c, dtype=np.int32).tobytes() for c in chunks]
        todo = list(dict.fromkeys(k for k in keys if k not in self._cache))
        pending = [np.frombuffer(k, dtype=np.int32).tolist() for k in todo]
        with torch.inference_mode():
            for picked in self.chunker.batches(pending, batch_size):
                batch = [todo[i] for i in picked]
                arrays = [pending[i] for i in picked]
                features = self.chunk_features(*self.chunker.pad(arrays))
                for key, row in zip(batch, features.double().cpu().numpy(), strict=True):
                    self._cache[key] = row
                self.n_chunks_evaluated += len(batch)
        if not keys:
            return np.zeros((0, 0))
        return np.stack([self._cache[k] for k in keys])

    def _mutants(
        self, sequence: str, chunks: list[list[int]], positions: Sequence[int] | None = None
    ) -> Iterator[tuple[int, int | None, list[tuple[int, list[int]]] | None]]:
        """``(position, base, changed chunks)`` for every substitution.

        ``base`` is ``None`` once per mutable position (to mark it), ``changed`` is
        ``None`` when no token changes; a changed chunk index of ``-1`` means the mutant's
        chunking differs and all of its chunks are listed.
        """
        if self.kind in _POSITIONAL:
            yield from self._positional_mutants(sequence, chunks, positions)
            return
        for position, base in _substitutions(sequence, positions):
            if base is None:
                yield position, None, None
                continue
            mutant = sequence[:position] + BASES[base] + sequence[position + 1 :]
            new = self.chunker.chunk_ids(mutant)
            if len(new) != len(chunks):
                yield position, base, [(-1, c) for c in new]
                continue
            changed = [(c, ids) for c, ids in enumerate(new) if ids != chunks[c]]
            yield position, base, changed or None

    def _positional_mutants(self, sequence: str, chunks: list[list[int]], positions=None):
        spans, chunk_of, column_of = self.token_layout(sequence)
        covering = _covering_tokens(spans, len(sequence))
        for position, base in _substitutions(sequence, positions):
            if base is None:
                yield position, None, None
                continue
            edited: dict[int, list[int]] = {}
            for token in covering[position]:
                start, end = spans[token]
                text = sequence[start:end]
                text = text[: position - start] + BASES[base] + text[position - start + 1 :]
                new_id = self._vocab.get(text, self._unk)
                c, column = int(chunk_of[token]), int(column_of[token])
                if chunks[c][column] == new_id:
                    continue
                ids = edited.setdefault(c, list(chunks[c]))
                ids[column] = new_id
            yield position, base, (sorted(edited.items()) or None)


class PooledScorer(ChunkScorer):
    """A score of a fine-tuned model that mean-pools its encoder's token states
    (:class:`~genlm_sc.models.heads.PooledSequenceModel`): the chunks give their summed
    states and token counts; :meth:`head` maps the pooled vectors to scores."""

    def __init__(self, model: Any, *, device: str = "auto"):
        super().__init__(model, model.tokenizer, max_length=model.max_length, device=device,
                         reader=model.encoder)  # fmt: skip
        self.model = self.network

    @property
    def embeddings(self) -> torch.nn.Embedding:
        return self.model.encoder.get_input_embeddings()

    def chunk_features(self, ids, mask, keep):
        states = self.model.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        keep = keep.double()  # sums over tokens in float64: ISM differences stay exact
        summed = (states.double() * keep.unsqueeze(-1)).sum(1)
        return torch.cat([summed, keep.sum(1, keepdim=True)], dim=1)

    def combine(self, totals):
        return self.head(totals[:, :-1] / totals[:, -1:].clamp(min=1))

    def head(self, pooled: torch.Tensor) -> torch.Tensor:
        """Scores ``(n,)`` from pooled vectors ``(n, hidden_size)``."""
        raise NotImplementedError


class ExpressionScorer(PooledScorer):
    """Predicted expression of a person homozygous for the sequence (see module notes)."""

    def __init__(self, model: HaplotypeRegressor, *, device: str = "auto"):
        super().__init__(model, device=device)

    def head(self, pooled):
        head = self.model.head
        features = torch.cat([pooled, pooled], dim=1).to(head.mean.dtype)
        standardised = head.linear((features - head.mean) / head.scale).squeeze(-1)
        return self.model.y_mean + self.model.y_std * standardised.double()


class ClassifierScorer(PooledScorer):
    """Log-probability (nats) a fine-tuned sequence classifier gives ``label`` (default:
    its last class)."""

    def __init__(self, model: SequenceClassifier, *, label: Any = None, device: str = "auto"):
        super().__init__(model, device=device)
        classes = [str(c) for c in model.classes]
        label = classes[-1] if label is None else str(label)
        if label not in classes:
            raise ValueError(f"label {label!r} is not a class of this classifier: {classes}")
        self.label = label
        self.index = classes.index(label)

    def head(self, pooled):
        head = self.model.head
        logits = head.linear((pooled.to(head.mean.dtype) - head.mean) / head.scale)
        return torch.log_softmax(logits.double(), dim=1)[:, self.index]


class LikelihoodScorer(ChunkScorer):
    """Sum of ``log p(token)`` over the sequence in one unmasked pass (nats)."""

    def chunk_features(self, ids, mask, keep):
        logits = _widened(self.network(input_ids=ids, attention_mask=mask).logits)
        own = torch.log_softmax(logits, dim=-1).gather(-1, ids.unsqueeze(-1)).squeeze(-1)
        keep = keep.double()  # sums over tokens in float64: ISM differences stay exact
        return torch.stack([(own.double() * keep).sum(1), keep.sum(1)], dim=1)

    def combine(self, totals):
        return totals[:, 0]

    def one_pass_llr(self, sequence: str) -> np.ndarray:
        """``log p(b) - log p(own base)`` at every position, from one unmasked pass.

        Returns
        -------
        ``(len(sequence), 4)`` float64 (``0`` at the own base, ``NaN`` rows where the
        sequence has no A/C/G/T). With k-mer tokens the log-probabilities of all tokens
        covering a position are summed (each token with the base written in).
        """
        sequence = _clean(sequence)
        self._require_positional("one-pass log-likelihood ratios")
        chunks = self.chunker.chunk_ids(sequence)
        logp: list[np.ndarray] = [np.empty(0)] * len(chunks)
        for batch in self.chunker.batches(chunks, len(chunks)):
            ids, mask, _ = self.chunker.pad([chunks[i] for i in batch])
            with torch.inference_mode():
                logits = self.network(input_ids=ids, attention_mask=mask).logits
                rows = torch.log_softmax(logits.float(), dim=-1).double().cpu().numpy()
            for row, i in enumerate(batch):
                logp[i] = rows[row]
        spans, chunk_of, column_of = self.token_layout(sequence)
        at = [(chunk_of[t], column_of[t]) for t in range(len(spans))]
        return self._allele_sums(sequence, spans, [logp[c][col] for c, col in at])

    def masked_llr(
        self, sequence: str, positions: Sequence[int], *, batch_size: int = 32
    ) -> np.ndarray:
        """``log p(b) - log p(own base)`` at ``positions`` with the position masked.

        Each position gets its own context: the longest stretch of ``sequence`` centred
        on it that fits the model, with every token covering the position replaced by
        ``[MASK]`` (all ``k`` of them for overlapping k-mers, as in pretraining).

        Returns
        -------
        ``(len(positions), 4)`` float64, as :meth:`one_pass_llr`.
        """
        sequence = _clean(sequence)
        self._require_positional("masked log-likelihood ratios")
        mask_id = self.tokenizer.mask_token_id
        if mask_id is None:
            raise ValueError("masked log-likelihood ratios need a tokenizer with [MASK]")
        width = self.chunker.room + tokenizer_info(self.tokenizer).get("k", 1) - 1
        out = np.full((len(positions), 4), np.nan)
        jobs = []
        for n, position in enumerate(positions):
            lo = max(0, min(int(position) - width // 2, len(sequence) - width))
            context = sequence[lo : lo + width]
            spans, _, column_of = self.token_layout(context)
            covering = [t for t, (a, b) in enumerate(spans) if a <= position - lo < b]
            if not covering or sequence[position] not in BASE_INDEX:
                continue
            ids = self.chunker.chunk_ids(context)[0]
            for t in covering:
                ids[column_of[t]] = mask_id
            jobs.append((n, position - lo, context, spans[covering], column_of[covering], ids))
        for picked in self.chunker.batches([job[-1] for job in jobs], batch_size):
            batch = [jobs[i] for i in picked]
            ids, mask, _ = self.chunker.pad([job[-1] for job in batch])
            with torch.inference_mode():
                logits = self.network(input_ids=ids, attention_mask=mask).logits
                logp = torch.log_softmax(logits.float(), dim=-1).double().cpu().numpy()
            for row, (n, at, context, spans, columns, _) in enumerate(batch):
                sums = self._allele_sums(context, spans, [logp[row, c] for c in columns])
                out[n] = sums[at]
        return out

    def _require_positional(self, what: str) -> None:
        if self.kind not in _POSITIONAL:
            raise ValueError(
                f"{what} need single-base or k-mer tokens; this tokenizer is {self.kind!r}"
            )

    def _allele_sums(
        self, sequence: str, spans: np.ndarray, token_logp: Sequence[np.ndarray]
    ) -> np.ndarray:
        """Per position and base: sum over covering tokens of ``log p(token with the base
        written in) - log p(token)``."""
        out = np.full((len(sequence), 4), np.nan)
        for (start, end), logp in zip(spans, token_logp, strict=True):
            text = sequence[start:end]
            own = logp[self._vocab.get(text, self._unk)]
            for position in range(start, end):
                if sequence[position] not in BASE_INDEX:
                    continue
                if np.isnan(out[position, 0]):
                    out[position] = 0.0
                offset = position - start
                for base, letter in enumerate(BASES):
                    kmer = text[:offset] + letter + text[offset + 1 :]
                    out[position, base] += logp[self._vocab.get(kmer, self._unk)] - own
        return out


# --- helpers --------------------------------------------------------------------------


def _widened(values: torch.Tensor) -> torch.Tensor:
    """At least float32 (bf16/fp16 outputs widened, float64 kept)."""
    return values.to(torch.promote_types(values.dtype, torch.float32))


def _clean(sequence: str) -> str:
    return str(sequence).upper()


def _substitutions(
    sequence: str, positions: Sequence[int] | None = None
) -> Iterator[tuple[int, int | None]]:
    """``(position, None)`` then ``(position, base)`` for the three other bases, for every
    position (of ``positions``, default all) holding A/C/G/T."""
    for position in range(len(sequence)) if positions is None else sorted(set(positions)):
        own = BASE_INDEX.get(sequence[position])
        if own is None:
            continue
        yield position, None
        for base in range(4):
            if base != own:
                yield position, base


def _covering_tokens(spans: np.ndarray, length: int) -> list[list[int]]:
    covering: list[list[int]] = [[] for _ in range(length)]
    for token, (start, end) in enumerate(spans):
        for position in range(start, min(end, length)):
            covering[position].append(token)
    return covering
