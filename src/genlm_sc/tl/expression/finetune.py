"""Fine-tuning a DNA language model to predict expression from a person's two haplotypes.

The ``"finetune"`` method of :func:`genlm_sc.tl.fit_expression` and :func:`predict`.

The model (:class:`~genlm_sc.models.heads.HaplotypeRegressor`) applies one shared encoder
to each of a person's two haplotypes, mean-pools the token states of each (over all chunks
of a long sequence, special and padding tokens excluded, as
:meth:`~genlm_sc.models.SequenceEncoder.embed` does), concatenates the two vectors,
standardises them (a single variant moves a mean over all tokens only a little) and maps
them to expression with a linear head.
Two ways of adapting the encoder:

``strategy="lora"``
    Low-rank adapters on the encoder's linear layers
    (:func:`~genlm_sc.models.adapters.add_lora`); the pretrained weights stay frozen, only
    the adapters and the head are trained. After training the adapters are merged into the
    weights, so a fitted model is a plain encoder.
``strategy="prune"``
    Only the first ``n_layers`` blocks are kept
    (:func:`~genlm_sc.models.adapters.prune_layers`, as in UKBioFormer) and every weight,
    embeddings included, is trained.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from ...models.adapters import adapt_encoder
from ...models.encoder import SequenceEncoder, load_encoder
from ...models.heads import HaplotypeRegressor
from .finetune_options import FinetuneOptions
from .regression_training import fit_gene, pairwise_loss, train_regressor

__all__ = ["FinetuneOptions", "build_regressor", "pairwise_loss", "predict", "train_regressor"]


def build_regressor(
    pretrained: SequenceEncoder, options: FinetuneOptions, *, y_mean: float, y_std: float
) -> HaplotypeRegressor:
    """A fresh regressor on a copy of the pretrained encoder, pruned / given adapters."""
    torch.manual_seed(options.random_state)
    encoder = adapt_encoder(
        copy.deepcopy(pretrained.model),
        lora=options.strategy == "lora",
        n_layers=options.n_layers,
        lora_rank=options.lora_rank,
        lora_alpha=options.lora_alpha,
        target_modules=options.target_modules,
    )
    return HaplotypeRegressor(
        encoder, pretrained.tokenizer, max_length=pretrained.max_length, y_mean=y_mean, y_std=y_std
    )


def _predict_standardised(
    model: HaplotypeRegressor, pairs: Sequence[tuple[str, str]], batch_size: int
) -> np.ndarray:
    model.eval()
    out = []
    with torch.inference_mode():
        for start in range(0, len(pairs), batch_size):
            out.append(model(pairs[start : start + batch_size]).float().cpu().numpy())
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32)


def predict(
    model: HaplotypeRegressor | str | os.PathLike,
    sequences: Sequence[str] | Sequence[tuple[str, str]] | pd.DataFrame,
    *,
    batch_size: int = 32,
    device: str = "auto",
) -> np.ndarray:
    """Predicted expression of sequences with a fine-tuned model.

    Parameters
    ----------
    model
        A :class:`HaplotypeRegressor` or a folder saved by it, e.g.
        ``output_dir/<gene>/fold_<k>`` of ``fit_expression(method="finetune")``.
    sequences
        ``(haplotype_1, haplotype_2)`` pairs (one per person), a DataFrame with columns
        ``haplotype_1`` and ``haplotype_2`` (:func:`genlm_sc.get.haplotypes`), or single
        sequences, each scored as a homozygous person (the sequence on both haplotypes).
    batch_size
        People per forward pass.
    device
        Where a model loaded from a folder runs (an in-memory model stays where it is).

    Returns
    -------
    ``(n,)`` float64 predictions, in the units of the expression the model was fitted on.
    """
    if not isinstance(model, HaplotypeRegressor):
        model = HaplotypeRegressor.from_pretrained(model, device=device)
    pairs = _as_pairs(sequences)
    standardised = _predict_standardised(model, pairs, batch_size).astype(np.float64)
    return model.y_mean + model.y_std * standardised


def _as_pairs(
    sequences: Sequence[str] | Sequence[tuple[str, str]] | pd.DataFrame,
) -> list[tuple[str, str]]:
    if isinstance(sequences, pd.DataFrame):
        return list(zip(sequences["haplotype_1"], sequences["haplotype_2"], strict=True))
    if isinstance(sequences, str):
        sequences = [sequences]
    pairs = []
    for item in sequences:
        if isinstance(item, str):
            pairs.append((item, item))
        elif len(item) == 2:
            pairs.append((str(item[0]), str(item[1])))
        else:
            raise ValueError("give sequences or (haplotype_1, haplotype_2) pairs")
    return pairs


class _Finetuner:
    """The ``"finetune"`` recipe of :func:`~genlm_sc.tl.expression.regression_training.fit_gene`:
    the pretrained encoder is loaded once per ``fit_expression`` call."""

    def __init__(self, options: FinetuneOptions):
        self.options = options
        self.pretrained = load_encoder(options.model, device="cpu", precision="fp32")

    def build(
        self, people: list[tuple[str, str]], *, y_mean: float, y_std: float
    ) -> HaplotypeRegressor:
        return build_regressor(self.pretrained, self.options, y_mean=y_mean, y_std=y_std)

    def finish(self, model: HaplotypeRegressor, people: list[tuple[str, str]]) -> None:
        model.standardise_inputs(people, batch_size=max(self.options.batch_size, 32))

    def predict(self, model: HaplotypeRegressor, people: list[tuple[str, str]]) -> np.ndarray:
        return predict(model, people, batch_size=max(self.options.batch_size, 32))

    def __call__(
        self,
        gene: str,
        pairs: list[tuple[str, str]],
        y: np.ndarray,
        *,
        folds: np.ndarray,
        covariates: np.ndarray | None,
    ) -> dict[str, Any]:
        fit = fit_gene(pairs, y, folds=folds, covariates=covariates, recipe=self, gene=gene)
        fit["n_features"] = 2 * int(self.pretrained.hidden_size)
        fit.pop("models")  # kept on disk under output_dir, not in the AnnData
        return fit


def finetune_source(
    adata: Any, options: Mapping[str, Any] | FinetuneOptions | None
) -> tuple[Callable[[str], tuple[list[tuple[str, str]], list[str]]], _Finetuner]:
    """Gene → (each person's haplotype pair, no names), and the per-gene fitter."""
    from ...get import haplotypes

    finetuner = _Finetuner(FinetuneOptions.parse(options))

    def pairs(gene: str) -> tuple[list[tuple[str, str]], list[str]]:
        table = haplotypes(adata, gene).reindex(adata.obs_names)
        return _as_pairs(table), []

    return pairs, finetuner
