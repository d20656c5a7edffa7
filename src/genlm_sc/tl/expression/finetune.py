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

import contextlib
import copy
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from ..._devices import resolve_device, resolve_precision, without_denormals
from ..._distributed import main_process_writes
from ...models.adapters import adapt_encoder, merge_adapters
from ...models.encoder import SequenceEncoder, load_encoder
from ...models.heads import HaplotypeRegressor
from .cross_validation import cross_validate, residuals
from .finetune_options import FinetuneOptions

__all__ = ["FinetuneOptions", "pairwise_loss", "predict", "train_regressor"]

# --- training ---------------------------------------------------------------------------


def pairwise_loss(pred: torch.Tensor, target: torch.Tensor, weight: float) -> torch.Tensor:
    """``(1 - weight) * MSE + weight * pairwise``, pairwise the mean over pairs ``i < j`` of
    ``((pred_i - pred_j) - (target_i - target_j)) ** 2`` (0 for a batch of one)."""
    mse = torch.mean((pred - target) ** 2)
    if weight == 0:
        return mse
    i, j = torch.triu_indices(pred.numel(), pred.numel(), offset=1, device=pred.device)
    if i.numel() == 0:
        return (1 - weight) * mse
    pairwise = torch.mean(((pred[i] - pred[j]) - (target[i] - target[j])) ** 2)
    return (1 - weight) * mse + weight * pairwise


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


def train_regressor(
    model: HaplotypeRegressor,
    pairs: Sequence[tuple[str, str]],
    target: np.ndarray,
    options: FinetuneOptions,
    *,
    checkpoints: str | os.PathLike | None = None,
    callbacks: Sequence[Any] = (),
) -> HaplotypeRegressor:
    """Train on standardised ``target`` with :class:`transformers.Trainer`.

    The loss is :func:`pairwise_loss`; AdamW with ``options.scheduler`` after
    ``options.warmup_steps``, gradients clipped to norm 1. With
    ``options.validation_fraction`` a random share of ``pairs`` is held out, evaluated
    every epoch (or ``eval_steps``), the best evaluation's weights are kept and training
    stops after ``patience`` evaluations without improvement. Checkpoints go to
    ``checkpoints`` (a temporary folder when ``None``); with ``options.resume`` training
    continues from the last one there. LoRA adapters are merged afterwards.
    """
    from ..training import (
        quiet_progress,
        quiet_trainer,
        resume_point,
        scratch_folder,
        training_arguments,
    )  # fmt: skip

    device = resolve_device(options.device)
    precision = "fp32" if device == "cpu" and options.precision == "auto" else options.precision
    precision = resolve_precision(precision, device)
    rows = np.arange(len(pairs))
    held = np.zeros(len(pairs), dtype=bool)
    if options.validation_fraction > 0:
        n_held = max(1, round(options.validation_fraction * len(pairs)))
        picked = np.random.default_rng(options.random_state).permutation(len(pairs))[:n_held]
        held[picked] = True
    examples = [{"pair": pairs[i], "label": float(target[i])} for i in rows]
    train_set = [examples[i] for i in rows[~held]]
    eval_set = [examples[i] for i in rows[held]] or None
    scratch = contextlib.ExitStack()
    if checkpoints is None:
        checkpoints = scratch.enter_context(scratch_folder("gl_finetune_"))
    args = training_arguments(
        checkpoints, batch_size=options.batch_size, learning_rate=options.learning_rate,
        random_state=options.random_state, precision=precision, device=device,
        progress=options.progress, epochs=options.epochs, weight_decay=options.weight_decay,
        warmup_steps=options.warmup_steps, scheduler=options.scheduler,
        evaluate=eval_set is not None, eval_steps=options.eval_steps,
        save_steps=options.eval_steps, save_total_limit=1 if eval_set is None else 2,
        best_metric="loss", greater_is_better=False, label_names=["labels"],
        logging_steps=options.eval_steps or max(len(train_set) // options.batch_size, 1),
    )  # fmt: skip
    extra = list(callbacks)
    if eval_set is not None and options.patience is not None:
        from transformers import EarlyStoppingCallback

        extra.append(EarlyStoppingCallback(early_stopping_patience=options.patience))
    trainer = quiet_progress(
        _regression_trainer()(
            model=model, args=args, train_dataset=train_set, eval_dataset=eval_set,
            data_collator=_collate, callbacks=extra, pairwise_weight=options.pairwise_weight,
        ),
        options.progress,
    )  # fmt: skip
    settings = {
        **{k: v for k, v in options.record().items()
           if k not in ("device", "output_dir", "progress", "resume", "refit")},
        "model_weights": sum(float(p.detach().double().sum()) for p in model.parameters()),
        "data": _digest(pairs, target),
    }  # fmt: skip
    resume_from = resume_point(Path(checkpoints), settings, resume=options.resume)
    try:
        with quiet_trainer():
            without_denormals(  # denormals slow CPU training steps
                lambda: trainer.train(resume_from_checkpoint=resume_from), device=device
            )
    finally:
        scratch.close()
    model = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    model.encoder = merge_adapters(model.encoder)
    return model.eval()


def _digest(pairs: Sequence[tuple[str, str]], target: np.ndarray) -> str:
    """A fingerprint of the training people and their targets."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for first, second in pairs:
        digest.update(f"{first}\t{second}\n".encode())
    digest.update(np.asarray(target, dtype=np.float64).tobytes())
    return digest.hexdigest()


def _collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "pairs": [row["pair"] for row in rows],
        "labels": torch.tensor([row["label"] for row in rows], dtype=torch.float32),
    }


def _regression_trainer():
    """A :class:`transformers.Trainer` whose loss is :func:`pairwise_loss` (defined on first
    use: importing transformers is slow)."""
    from transformers import Trainer

    from ..._distributed import gather_rows

    class RegressionTrainer(Trainer):
        """Trains a :class:`~genlm_sc.models.HaplotypeRegressor` on pairs of haplotypes.

        With several processes (``torchrun``) every process computes the loss of the whole
        global batch from everyone's predictions (gathered differentiably): the pairwise
        term pairs people across processes, and the gradients, averaged over processes,
        are those of one process holding the global batch.
        """

        def __init__(self, *args, pairwise_weight: float, **kwargs):
            super().__init__(*args, **kwargs)
            self.pairwise_weight = pairwise_weight

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            pred = model(inputs["pairs"])
            target = inputs["labels"].to(pred.device)
            if model.training:  # with torchrun, the loss of the global batch on every process
                loss = pairwise_loss(gather_rows(pred), gather_rows(target), self.pairwise_weight)
            else:
                loss = pairwise_loss(pred, target, self.pairwise_weight)
            return (loss, pred) if return_outputs else loss

    return RegressionTrainer


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


# --- cross-validation -------------------------------------------------------------------


class _FoldModel:
    """The fine-tuned model of one outer fold, fitted and used the sklearn way on people."""

    def __init__(
        self,
        pretrained: SequenceEncoder,
        pairs: list[tuple[str, str]],
        options: FinetuneOptions,
        gene: str,
        folds: np.ndarray | None,
    ):
        self.pretrained = pretrained
        self.pairs = pairs
        self.options = options
        self.gene = gene
        self.folds = folds
        self.test_rows: np.ndarray | None = None
        self.model: HaplotypeRegressor | None = None

    def fit(self, rows: np.ndarray, y: np.ndarray) -> _FoldModel:
        mean, std = float(np.mean(y)), float(np.std(y))
        std = std if std > 0 else 1.0
        model = build_regressor(self.pretrained, self.options, y_mean=mean, y_std=std)
        rows = np.asarray(rows, dtype=np.int64).ravel()
        people = [self.pairs[i] for i in rows]
        checkpoints = self.checkpoints(rows)
        self.model = train_regressor(
            model, people, (y - mean) / std, self.options, checkpoints=checkpoints
        )
        self.model.standardise_inputs(people, batch_size=max(self.options.batch_size, 32))
        if checkpoints is not None:

            def save() -> None:
                self.model.save_pretrained(checkpoints.parent.parent / checkpoints.name)
                shutil.rmtree(checkpoints, ignore_errors=True)
                with contextlib.suppress(OSError):  # the last fold's leaves an empty folder
                    checkpoints.parent.rmdir()

            main_process_writes(save)
        return self

    def checkpoints(self, rows: np.ndarray) -> Path | None:
        """``output_dir/<gene>/checkpoints/<fold_k or all>`` (``None`` without output_dir)."""
        if self.options.output_dir is None:
            return None
        if self.folds is None:
            name = "all"
        else:
            missing = set(np.unique(self.folds[self.folds >= 0])) - set(self.folds[rows])
            name = f"fold_{missing.pop()}" if len(missing) == 1 else "all"
        return Path(self.options.output_dir) / self.gene / "checkpoints" / name

    def predict(self, rows: np.ndarray) -> np.ndarray:
        self.test_rows = np.asarray(rows, dtype=np.int64).ravel()
        people = [self.pairs[i] for i in self.test_rows]
        return predict(self.model, people, batch_size=max(self.options.batch_size, 32))


def fit_gene(
    pairs: list[tuple[str, str]],
    y: np.ndarray,
    *,
    folds: np.ndarray,
    covariates: np.ndarray | None,
    pretrained: SequenceEncoder,
    options: FinetuneOptions,
    gene: str = "gene",
) -> dict[str, Any]:
    """Out-of-fold predictions of a fine-tuned model per outer fold (see ``fit_expression``).

    Returns the dict of ``_cross_validate`` with ``n_features`` the head's input width and
    ``models``: fold → fitted :class:`HaplotypeRegressor` (saved under
    ``options.output_dir/<gene>/fold_<k>`` when set), plus ``"all"`` with ``refit``.
    """
    made: list[_FoldModel] = []

    def make() -> _FoldModel:
        made.append(_FoldModel(pretrained, pairs, options, gene, folds))
        return made[-1]

    rows = np.arange(len(pairs))[:, None]
    fit = cross_validate(rows, y, folds=folds, covariates=covariates, model=make)
    models = {}
    for fold_model in made:  # each saved itself under output_dir/<gene>/fold_<k>
        if fold_model.model is not None and fold_model.test_rows is not None:
            models[int(folds[fold_model.test_rows[0]])] = fold_model.model
    if options.refit:
        known = np.isfinite(y)
        if covariates is not None:
            known &= np.isfinite(covariates).all(axis=1)
        target = y[known]
        if covariates is not None:
            target = residuals(covariates[known], target, covariates[known])
        everyone = np.flatnonzero(known)
        final = _FoldModel(pretrained, pairs, options, gene, None).fit(everyone, target)
        models["all"] = final.model  # saved as output_dir/<gene>/all
    fit["n_features"] = 2 * int(pretrained.hidden_size)
    fit["models"] = models
    return fit


class _Finetuner:
    """Fits one gene: the pretrained encoder is loaded once per ``fit_expression`` call."""

    def __init__(self, options: FinetuneOptions):
        self.options = options
        self.pretrained = load_encoder(options.model, device="cpu", precision="fp32")

    def __call__(
        self,
        gene: str,
        pairs: list[tuple[str, str]],
        y: np.ndarray,
        *,
        folds: np.ndarray,
        covariates: np.ndarray | None,
    ) -> dict[str, Any]:
        fit = fit_gene(
            pairs, y, folds=folds, covariates=covariates, pretrained=self.pretrained,
            options=self.options, gene=gene,
        )  # fmt: skip
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
