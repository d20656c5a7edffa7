"""The one training stack of the neural expression models: a regressor trained per gene
and outer fold with :class:`transformers.Trainer`, saved per fold.

``fit_expression``'s ``"finetune"`` (a fine-tuned language model,
:mod:`~genlm_sc.tl.expression.finetune`) and ``"fusion"`` (a sequence-to-function backbone
fused with the language-model embedding, :mod:`~genlm_sc.tl.expression.fusion`) differ only
in the model they build, what they set once it is trained and how it predicts: a
:class:`Recipe`. :func:`fit_gene` runs the outer folds (the same as every other method's,
:func:`~genlm_sc.tl.expression.cross_validation.cross_validate`), :func:`train_regressor`
trains one model (the training arguments of :mod:`genlm_sc.tl.training`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from ..._devices import resolve_device, resolve_precision, without_denormals
from ..._distributed import main_process_writes
from .cross_validation import cross_validate, residuals
from .finetune_options import TrainingOptions

__all__ = ["Recipe", "fit_gene", "pairwise_loss", "train_regressor"]


class Recipe(Protocol):
    """What a neural expression method defines; :func:`fit_gene` does the rest."""

    options: TrainingOptions

    def build(self, people: list[Any], *, y_mean: float, y_std: float) -> Any:
        """An untrained model for these training people and this scale of the targets."""

    def finish(self, model: Any, people: list[Any]) -> None:
        """What is set on a trained model from its training people."""

    def predict(self, model: Any, people: list[Any]) -> np.ndarray:
        """Predictions for people, in the units of the targets."""


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


def train_regressor(
    model: Any,
    pairs: Sequence[Sequence[Any]],
    target: np.ndarray,
    options: TrainingOptions,
    *,
    checkpoints: str | os.PathLike | None = None,
    callbacks: Sequence[Any] = (),
) -> Any:
    """Train on standardised ``target`` with :class:`transformers.Trainer`.

    ``model`` maps a batch of people (``pairs``: each a ``(haplotype_1, haplotype_2)``
    pair for a :class:`~genlm_sc.models.HaplotypeRegressor`, with the person's embedding for a
    :class:`~genlm_sc.models.fusion.FusionRegressor`) to standardised predictions.
    The loss is :func:`pairwise_loss`; AdamW with ``options.scheduler`` after
    ``options.warmup_steps``, gradients clipped to norm 1. With
    ``options.validation_fraction`` a random share of ``pairs`` is held out, evaluated
    every epoch (or ``eval_steps``), the best evaluation's weights are kept and training
    stops after ``patience`` evaluations without improvement. Checkpoints go to
    ``checkpoints`` (a temporary folder when ``None``); with ``options.resume`` training
    continues from the last one there. LoRA adapters are merged afterwards
    (``model.merge_adapters()``); the trained model is returned in evaluation mode.
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
    model.merge_adapters()
    return model.eval()


def _digest(items: Sequence[Sequence[Any]], target: np.ndarray) -> str:
    """A fingerprint of the training people (their haplotypes, and embeddings when given)
    and their targets."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    for item in items:
        for part in item:
            if isinstance(part, str):
                digest.update(part.encode())
            else:
                digest.update(np.ascontiguousarray(part, dtype=np.float64).tobytes())
            digest.update(b"\t")
        digest.update(b"\n")
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


# --- cross-validation -------------------------------------------------------------------


class FoldModel:
    """The model of one outer fold, fitted and used the sklearn way on people (rows)."""

    def __init__(self, items: list[Any], recipe: Recipe, gene: str, folds: np.ndarray | None):
        self.items = items
        self.recipe = recipe
        self.options = recipe.options
        self.gene = gene
        self.folds = folds
        self.test_rows: np.ndarray | None = None
        self.model: Any = None

    def fit(self, rows: np.ndarray, y: np.ndarray) -> FoldModel:
        mean, std = float(np.mean(y)), float(np.std(y))
        std = std if std > 0 else 1.0
        rows = np.asarray(rows, dtype=np.int64).ravel()
        people = [self.items[i] for i in rows]
        model = self.recipe.build(people, y_mean=mean, y_std=std)
        checkpoints = self.checkpoints(rows)
        self.model = train_regressor(
            model, people, (y - mean) / std, self.options, checkpoints=checkpoints
        )
        self.recipe.finish(self.model, people)
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
        return self.recipe.predict(self.model, [self.items[i] for i in self.test_rows])


def fit_gene(
    items: list[Any],
    y: np.ndarray,
    *,
    folds: np.ndarray,
    covariates: np.ndarray | None,
    recipe: Recipe,
    gene: str = "gene",
) -> dict[str, Any]:
    """Out-of-fold predictions of a model trained per outer fold (see ``fit_expression``).

    ``items`` holds what the recipe's models read of each person. Returns the dict of
    :func:`~genlm_sc.tl.expression.cross_validation.cross_validate` with ``models``:
    fold → fitted model (saved under ``options.output_dir/<gene>/fold_<k>`` when set),
    plus ``"all"`` with ``options.refit``.
    """
    made: list[FoldModel] = []

    def make() -> FoldModel:
        made.append(FoldModel(items, recipe, gene, folds))
        return made[-1]

    rows = np.arange(len(items))[:, None]
    fit = cross_validate(rows, y, folds=folds, covariates=covariates, model=make)
    models = {}
    for fold_model in made:  # each saved itself under output_dir/<gene>/fold_<k>
        if fold_model.model is not None and fold_model.test_rows is not None:
            models[int(folds[fold_model.test_rows[0]])] = fold_model.model
    if recipe.options.refit:
        known = np.isfinite(y)
        if covariates is not None:
            known &= np.isfinite(covariates).all(axis=1)
        target = y[known]
        if covariates is not None:
            target = residuals(covariates[known], target, covariates[known])
        everyone = np.flatnonzero(known)
        final = FoldModel(items, recipe, gene, None).fit(everyone, target)
        models["all"] = final.model  # saved as output_dir/<gene>/all
    fit["models"] = models
    return fit
