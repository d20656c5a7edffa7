"""A scorer's score as a differentiable function of one-hot bases, and the attributions
taken on it: gradients, integrated gradients and DeepLIFT-SHAP (the last two by ``captum``).

The input is a ``(batch, length, 4)`` matrix of base one-hot rows (A, C, G, T). It is
mapped onto the one-hot token vectors the network reads (the embedding lookup becomes a
product of those vectors with the embedding matrix):

- single-base and k-mer tokens: a token's one-hot vector is the product of the one-hot
  vectors of its bases (the entry of k-mer ``b1…bk`` is ``x[i1, b1] ⋯ x[ik, bk]``), exact
  at one-hot inputs and defined along any path between base matrices;
- other tokenizers (BPE): a token's entry at its own id is the mean, over the bases it
  covers, of each base's entry at its own letter; other bases do not enter.

Special and padding tokens, and tokens covering a letter other than A/C/G/T, keep their
own one-hot vector. The gradient of this function at the sequence's own one-hot matrix is
the chain rule through the tokenizer (what ``method="grad_x_input"`` uses).
"""

from __future__ import annotations

import contextlib
import itertools
import warnings
from typing import Any

import numpy as np
import torch

from ..._dna import BASE_INDEX, BASES

#: Tokenizers whose token boundaries do not move when one base is substituted (their
#: tokens are products of their bases' one-hot vectors).
_POSITIONAL = ("char", "kmer", "nt_kmer")

__all__ = ["OneHotScore", "deeplift_shap", "dinucleotide_shuffle", "integrated_gradients"]

#: Baselines of each method; the first is the default.
BASELINES = {
    "integrated_gradients": ("zeros", "uniform"),
    "deeplift_shap": ("shuffle", "random"),
}


class OneHotScore(torch.nn.Module):
    """The score of ``scorer`` as a function of ``sequence``'s one-hot bases.

    ``forward`` takes ``(batch, len(sequence), 4)`` and returns ``(batch,)`` float64
    scores; the token layout (chunks, special tokens) is that of ``sequence``. The
    scorer's network is a submodule, so hooks set on this module's layers (captum's
    DeepLIFT rules) reach it.

    Parameters
    ----------
    scorer
        A :class:`~genlm_sc.tl.attribution.scorers.ChunkScorer` whose network reads a
        token embedding matrix.
    sequence
        The sequence (upper case).
    """

    def __init__(self, scorer: Any, sequence: str):
        super().__init__()
        self.network = scorer.network
        self.scorer = [scorer]  # a list: not registered (its network already is)
        self.sequence = sequence
        self.positional = scorer.kind in _POSITIONAL
        chunks = scorer.chunker.chunk_ids(sequence)
        self.ids, self.mask, self.keep = scorer.chunker.pad(chunks)
        n_chunks, width = self.ids.shape
        vocab = scorer.embeddings.num_embeddings
        spans, chunk_of, column_of = scorer.token_layout(sequence)
        rows = chunk_of * width + column_of
        own = np.array([BASE_INDEX.get(c, -1) for c in sequence], dtype=np.int64)
        variable = np.array([(own[a:b] >= 0).all() and b > a for a, b in spans], dtype=bool)
        #: positions some variable token covers (their gradients are defined)
        self.covered = np.zeros(len(sequence), dtype=bool)
        for a, b in spans[variable]:
            self.covered[a:b] = True
        self.own = own
        device, dtype = self.ids.device, scorer.embeddings.weight.dtype
        fixed = torch.nn.functional.one_hot(self.ids.reshape(-1), vocab).to(dtype)
        fixed[torch.as_tensor(rows[variable], device=device)] = 0
        self.register_buffer("fixed", fixed, persistent=False)
        self.shape = (n_chunks, width, vocab)
        self.groups: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        if self.positional:  # tokens of one length together: bases, rows, k-mer → token id
            lengths = spans[:, 1] - spans[:, 0]
            for k in np.unique(lengths[variable]):
                picked = variable & (lengths == k)
                bases = spans[picked, :1] + np.arange(k)
                table = [scorer._vocab.get("".join(t), scorer._unk)
                         for t in itertools.product(BASES, repeat=int(k))]  # fmt: skip
                as_tensor = lambda a: torch.as_tensor(np.asarray(a), device=device)  # noqa: E731
                self.groups.append((as_tensor(bases), as_tensor(rows[picked]), as_tensor(table)))
        else:  # each token's weight: the mean of its bases' own-letter entries
            picked = np.flatnonzero(variable)
            mean = np.zeros((len(picked), len(sequence)))
            for n, (a, b) in enumerate(spans[picked]):
                mean[n, a:b] = 1.0 / (b - a)
            token_ids = [scorer._vocab.get(sequence[a:b], scorer._unk) for a, b in spans[picked]]
            self.register_buffer("mean", torch.as_tensor(mean, dtype=dtype, device=device),
                                 persistent=False)  # fmt: skip
            self.token_ids = torch.as_tensor(token_ids, device=device)
            self.token_rows = torch.as_tensor(rows[picked], device=device)

    def inputs(self) -> torch.Tensor:
        """The sequence's own one-hot matrix, ``(1, length, 4)`` (zero rows off A/C/G/T)."""
        out = torch.zeros(1, len(self.sequence), 4, dtype=self.fixed.dtype)
        rows = np.flatnonzero(self.own >= 0)
        out[0, rows, self.own[rows]] = 1.0
        return out.to(self.fixed.device)

    def tokens(self, bases: torch.Tensor) -> torch.Tensor:
        """Token one-hot vectors ``(batch * n_chunks, width, vocab)`` of base matrices."""
        batch = bases.shape[0]
        bases = bases.to(self.fixed.dtype)
        out = self.fixed.unsqueeze(0).expand(batch, -1, -1)
        if self.positional:
            for positions, rows, table in self.groups:
                product = bases[:, positions[:, 0]]
                for m in range(1, positions.shape[1]):
                    product = product.unsqueeze(-1) * bases[:, positions[:, m]].unsqueeze(-2)
                    product = product.flatten(-2)
                entries = product.new_zeros(*product.shape[:2], self.shape[2])
                out = out.index_add(1, rows, entries.index_add(2, table, product))
        elif len(self.token_rows):
            own = torch.as_tensor(self.own, device=bases.device).clamp(min=0)
            at_own = bases.gather(2, own.expand(batch, -1).unsqueeze(-1)).squeeze(-1)
            weights = at_own @ self.mean.T  # (batch, n_tokens)
            entries = weights.new_zeros(*weights.shape, self.shape[2])
            index = self.token_ids.expand(batch, -1).unsqueeze(-1)
            out = out.index_add(1, self.token_rows, entries.scatter(2, index, weights[..., None]))
        return out.reshape(batch * self.shape[0], *self.shape[1:])

    def forward(self, bases: torch.Tensor) -> torch.Tensor:
        scorer = self.scorer[0]
        batch = bases.shape[0]
        ids, mask, keep = (t.repeat(batch, 1) for t in (self.ids, self.mask, self.keep))
        with _onehot_inputs(scorer.embeddings, self.tokens(bases)):
            features = scorer.chunk_features(ids, mask, keep)
        return scorer.combine(features.double().reshape(batch, self.shape[0], -1).sum(1))

    def gradients(self) -> np.ndarray:
        """Gradient at the sequence's own one-hot matrix, ``(length, 4)`` float64
        (``NaN`` at positions no variable token covers, and with non-positional tokens at
        bases other than the sequence's own)."""
        inputs = self.inputs().requires_grad_(True)
        with torch.enable_grad():
            (grad,) = torch.autograd.grad(self(inputs).sum(), inputs)
        out = grad[0].double().cpu().numpy()
        out[~self.covered] = np.nan
        if not self.positional:
            others = np.ones(out.shape, dtype=bool)
            others[np.flatnonzero(self.own >= 0), self.own[self.own >= 0]] = False
            out[others] = np.nan
        return out

    def batch_size(self, chunks: int) -> int:
        """Base matrices per forward pass for ``chunks`` chunks per pass."""
        return max(1, int(chunks) // self.shape[0])


def check_baseline(method: str, baseline: str) -> None:
    """Refuse a baseline ``method`` does not offer."""
    if baseline not in BASELINES[method]:
        raise ValueError(
            f"baseline must be one of {BASELINES[method]} for method={method!r}, not {baseline!r}"
        )


def _require(score: OneHotScore, method: str, baseline: str) -> None:
    check_baseline(method, baseline)
    if not score.positional and baseline != "zeros":
        raise ValueError(
            f"baseline={baseline!r} needs single-base or k-mer tokens (a {score.scorer[0].kind!r} "
            "tokenizer's tokens are not products of their bases); use "
            "method='integrated_gradients' with baseline='zeros'"
        )


def integrated_gradients(
    score: OneHotScore, *, baseline: str = "zeros", n_steps: int = 50, batch_size: int = 32
) -> tuple[np.ndarray, float]:
    """Integrated gradients (``captum``) from a baseline base matrix to the sequence.

    Parameters
    ----------
    score
        The score as a function of one-hot bases.
    baseline
        ``"zeros"``: every base entry 0 (token vectors 0: no embedding at the sequence's
        tokens, special tokens kept); ``"uniform"``: every entry 0.25 (the mean of the
        four bases; k-mer tokens get ``4**-k`` at every k-mer).
    n_steps
        Gauss-Legendre steps along the path.
    batch_size
        Chunks per forward pass.

    Returns
    -------
    ``(length, 4)`` float64 attributions (``(x - baseline)`` times the path-averaged
    gradient; they add up to ``f(x) - f(baseline)``) and captum's convergence delta, the
    sum of the attributions minus that difference.
    """
    from captum.attr import IntegratedGradients

    _require(score, "integrated_gradients", baseline)
    inputs = score.inputs().requires_grad_(True)
    reference = torch.zeros_like(inputs)
    if baseline == "uniform":
        reference[:, score.own >= 0] = 0.25
    with torch.enable_grad():
        values, delta = IntegratedGradients(score).attribute(
            inputs, baselines=reference, n_steps=int(n_steps), method="gausslegendre",
            internal_batch_size=score.batch_size(batch_size), return_convergence_delta=True,
        )  # fmt: skip
    return _finish(score, values[0]), float(delta.sum())


def deeplift_shap(
    score: OneHotScore,
    *,
    baseline: str = "shuffle",
    n_baselines: int = 20,
    random_state: int = 0,
    batch_size: int = 32,
) -> tuple[np.ndarray, float]:
    """DeepLIFT-SHAP (``captum``'s ``DeepLiftShap``) averaged over a set of baselines.

    Parameters
    ----------
    score
        The score as a function of one-hot bases; DeepLIFT's rules apply to its
        ``ReLU``-like modules.
    baseline
        ``"shuffle"``: dinucleotide shuffles of the sequence (:func:`dinucleotide_shuffle`,
        keeping its dinucleotide counts, CpG included); ``"random"``: sequences of
        independent uniform bases. Positions that are not A/C/G/T in the sequence stay
        as they are.
    n_baselines
        How many baselines.
    random_state
        Seed of the baselines.
    batch_size
        Chunks per forward pass (baselines are run in groups that fit).

    Returns
    -------
    ``(length, 4)`` float64 attributions and the convergence delta: their sum minus
    ``f(x)`` minus the mean of ``f`` over the baselines (``0`` where DeepLIFT's rules
    are exact, see :func:`genlm_sc.tl.attribute`).
    """
    from captum.attr import DeepLift, DeepLiftShap

    _require(score, "deeplift_shap", baseline)
    references = _references(score, baseline, int(n_baselines), random_state)
    inputs = score.inputs().requires_grad_(True)
    group = max(1, score.batch_size(batch_size) // 2)
    total, deltas = torch.zeros_like(inputs[0], dtype=torch.float64), []
    for start in range(0, len(references), group):
        part = references[start : start + group]
        explainer = DeepLiftShap(score) if len(part) > 1 else DeepLift(score)  # one: the same
        with torch.enable_grad(), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Setting forward, backward hooks")
            values, delta = explainer.attribute(
                inputs, baselines=part, return_convergence_delta=True
            )
        total += values[0].double() * len(part)
        deltas.append(delta.double().detach().cpu())
    return _finish(score, total / len(references)), float(torch.cat(deltas).mean())


def _references(score: OneHotScore, baseline: str, n: int, random_state: int) -> torch.Tensor:
    """``(n, length, 4)`` baseline base matrices (rows off A/C/G/T stay 0)."""
    if n < 1:
        raise ValueError(f"n_baselines must be at least 1, not {n}")
    rng = np.random.default_rng(random_state)
    acgt = np.flatnonzero(score.own >= 0)
    letters = "".join(BASES[b] for b in score.own[acgt])
    own = score.inputs()
    out = torch.zeros(n, len(score.sequence), 4, dtype=own.dtype)
    for i in range(n):
        if baseline == "shuffle":
            codes = [BASE_INDEX[c] for c in dinucleotide_shuffle(letters, rng=rng)]
        else:
            codes = rng.integers(0, 4, len(acgt))
        out[i, acgt, codes] = 1.0
    return out.to(own.device)


def _finish(score: OneHotScore, values: torch.Tensor) -> np.ndarray:
    out = values.double().detach().cpu().numpy()
    out[~score.covered] = np.nan
    return out


def dinucleotide_shuffle(sequence: str, *, rng: np.random.Generator) -> str:
    """A random sequence with the same dinucleotide counts, first and last letter.

    Altschul & Erickson's (1985) method: a random Eulerian walk through the graph whose
    edges are the sequence's dinucleotides, drawn uniformly among such sequences.

    Parameters
    ----------
    sequence
        Any letters.
    rng
        Random generator.
    """
    if len(sequence) < 3:
        return sequence
    following: dict[str, list[str]] = {}
    for a, b in itertools.pairwise(sequence):
        following.setdefault(a, []).append(b)
    last = sequence[-1]
    while True:  # a last exit edge per letter, forming a tree towards the last letter
        exits = {a: nexts[rng.integers(len(nexts))] for a, nexts in following.items() if a != last}
        if all(_reaches(a, last, exits) for a in exits):
            break
    walks: dict[str, list[str]] = {}
    for a, nexts in following.items():
        rest = list(nexts)
        if a != last:
            rest.remove(exits[a])
        order = rng.permutation(len(rest))
        walks[a] = [rest[i] for i in order] + ([exits[a]] if a != last else [])
    out, at = [sequence[0]], {a: 0 for a in walks}
    while len(out) < len(sequence):
        a = out[-1]
        out.append(walks[a][at[a]])
        at[a] += 1
    return "".join(out)


def _reaches(letter: str, last: str, exits: dict[str, str]) -> bool:
    seen = set()
    while letter != last:
        if letter in seen:
            return False
        seen.add(letter)
        letter = exits[letter]
    return True


@contextlib.contextmanager
def _onehot_inputs(embeddings: torch.nn.Embedding, onehot: torch.Tensor):
    """Make ``embeddings`` return ``onehot @ weight`` (same values, differentiable)."""

    def hook(module, inputs, output):
        return (onehot.to(module.weight.dtype) @ module.weight).to(output.dtype)

    handle = embeddings.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
