"""Scores of sequences under a fused model's backbone branch, for attributions and variant
effects (``target="expression"`` with a :class:`~genlm_sc.models.fusion.FusionRegressor`).

The score of a sequence is the predicted expression of a person homozygous for it, the
embedding branch held at its mean over the training people
(:meth:`~genlm_sc.models.fusion.FusionRegressor.homozygous`): the person's embedding does
not change when a base does, so attributions and variant effects explain the backbone
branch. The two haplotypes' values are averaged (or summed), so editing one haplotype of a
person changes the prediction by half the homozygous change, as for the fine-tuned
language models.

The backbone reads one-hot bases, so gradients are taken on them directly, and in-silico
mutagenesis runs every mutant through the backbone (in batches). Each sequence is cut to
the model's input length around its anchor, as the training haplotypes were
(:func:`genlm_sc.get.fixed_length_haplotypes`); bases outside that cut do not reach the
model and get ``NaN``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..._devices import resolve_device
from ..._dna import BASE_INDEX

__all__ = ["BackboneOneHotScore", "BackboneScorer"]


class BackboneScorer:
    """Expression scores of sequences under a fused model (see the module notes).

    Parameters
    ----------
    model
        A fitted :class:`~genlm_sc.models.fusion.FusionRegressor`.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    """

    kind = "onehot"

    def __init__(self, model: Any, *, device: str = "auto"):
        self.device = resolve_device(device)
        self.model = model.eval().to(self.device)
        self.network = self.model
        self.length = int(model.input_length)
        #: sequences run through the backbone so far (mutants included)
        self.n_evaluated = 0

    def require_embeddings(self, what: str) -> None:
        """Every gradient method works: the backbone reads one-hot bases."""

    def window(self, sequence: str, anchor: int | None = None) -> tuple[int, int, int]:
        """``(start, lo, hi)``: the model reads ``sequence[start : start + length]`` (N
        beyond its ends); ``[lo, hi)`` are the positions of ``sequence`` inside."""
        anchor = len(sequence) // 2 if anchor is None else int(anchor)
        start = anchor - self.length // 2
        return start, max(start, 0), min(start + self.length, len(sequence))

    def onehot(self, sequence: str, anchor: int | None = None) -> torch.Tensor:
        """``(input_length, 4)`` one-hot of what the model reads of ``sequence``."""
        start, lo, hi = self.window(sequence, anchor)
        out = torch.zeros(self.length, 4)
        for position in range(lo, hi):
            base = BASE_INDEX.get(sequence[position].upper())
            if base is not None:
                out[position - start, base] = 1.0
        return out

    def _scores(self, bases: torch.Tensor, batch_size: int) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(bases), batch_size):
                part = bases[i : i + batch_size].to(self.device)
                out.append(self.model.homozygous(part).double().cpu().numpy())
        self.n_evaluated += len(bases)
        return np.concatenate(out) if out else np.empty(0)

    def score(
        self,
        sequences: Sequence[str],
        *,
        batch_size: int = 32,
        anchors: Sequence[int | None] | None = None,
    ) -> np.ndarray:
        """``(n,)`` float64 scores; ``anchors``: each sequence's anchor index (default: its
        middle)."""
        anchors = [None] * len(sequences) if anchors is None else list(anchors)
        bases = [self.onehot(s, a) for s, a in zip(sequences, anchors, strict=True)]
        return self._scores(torch.stack(bases), batch_size) if bases else np.empty(0)

    def saturation_mutagenesis(
        self,
        sequence: str,
        *,
        positions: Sequence[int] | None = None,
        batch_size: int = 32,
        anchor: int | None = None,
    ) -> np.ndarray:
        """``(len(sequence), 4)``: ``score(mutant) - score(sequence)`` for writing A, C, G, T
        at each position the model reads (of ``positions``, default all); ``0`` at the own
        base, ``NaN`` elsewhere and where the sequence has no A/C/G/T."""
        start, lo, hi = self.window(sequence, anchor)
        own = self.onehot(sequence, anchor)
        wanted = range(lo, hi) if positions is None else sorted(set(positions) & set(range(lo, hi)))
        out = np.full((len(sequence), 4), np.nan)
        where = []
        for position in wanted:
            base = BASE_INDEX.get(sequence[position].upper())
            if base is not None:
                out[position] = 0.0
                where += [(position, other) for other in range(4) if other != base]
        if where:
            reference = self._scores(own[None], 1)[0]
            scores = []
            for i in range(0, len(where), batch_size):  # mutants made batch by batch
                rows, columns = np.asarray(where[i : i + batch_size]).T - [[start], [0]]
                mutants = own.expand(len(rows), -1, -1).clone()
                picked = torch.arange(len(rows))
                mutants[picked, torch.as_tensor(rows)] = 0.0
                mutants[picked, torch.as_tensor(rows), torch.as_tensor(columns)] = 1.0
                scores.append(self._scores(mutants, batch_size))
            rows, columns = np.asarray(where).T
            out[rows, columns] = np.concatenate(scores) - reference
        return out

    def onehot_score(self, sequence: str, anchor: int | None = None) -> BackboneOneHotScore:
        """The score as a function of ``sequence``'s one-hot bases (for captum)."""
        return BackboneOneHotScore(self, sequence.upper(), anchor)

    def base_gradients(self, sequence: str, *, anchor: int | None = None) -> np.ndarray:
        """Gradient of the score with respect to the one-hot bases, ``(len, 4)`` float64
        (``NaN`` at positions the model does not read)."""
        return self.onehot_score(sequence, anchor).gradients()


class BackboneOneHotScore(torch.nn.Module):
    """A fused model's score as a differentiable function of one-hot bases
    ``(batch, len(sequence), 4)`` → ``(batch,)`` float64; positions outside the model's
    input are ignored (the interface :mod:`genlm_sc.tl.attribution.onehot` uses)."""

    positional = True

    def __init__(self, scorer: BackboneScorer, sequence: str, anchor: int | None = None):
        super().__init__()
        self.network = scorer.model
        self.scorer = [scorer]  # a list: not registered (its network already is)
        self.sequence = sequence
        self.start, lo, hi = scorer.window(sequence, anchor)
        self.own = np.array([BASE_INDEX.get(c, -1) for c in sequence], dtype=np.int64)
        self.covered = np.zeros(len(sequence), dtype=bool)
        self.covered[lo:hi] = True
        self.length = scorer.length
        self.device = scorer.device

    def inputs(self) -> torch.Tensor:
        """The sequence's own one-hot matrix, ``(1, length, 4)`` (zero rows off A/C/G/T)."""
        out = torch.zeros(1, len(self.sequence), 4)
        rows = np.flatnonzero(self.own >= 0)
        out[0, rows, self.own[rows]] = 1.0
        return out.to(self.device)

    def forward(self, bases: torch.Tensor) -> torch.Tensor:
        lo, hi = max(self.start, 0), min(self.start + self.length, bases.shape[1])
        window = bases.new_zeros(bases.shape[0], self.length, 4)
        window[:, lo - self.start : hi - self.start] = bases[:, lo:hi]
        return self.network.homozygous(window.float()).double()

    def gradients(self) -> np.ndarray:
        inputs = self.inputs().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self(inputs).sum(), inputs)
        out = grad[0].double().cpu().numpy()
        out[~self.covered] = np.nan
        return out

    def batch_size(self, chunks: int) -> int:
        """Base matrices per forward pass (one per chunk of a language model's)."""
        return max(1, int(chunks))
