"""Fine-tuning a DNA language model to classify sequences (GUE-style tasks).

:func:`fit_classifier` puts a classification head on a pretrained encoder (a genlm_conv
model from :func:`genlm_sc.tl.pretrain`, or any BERT-family checkpoint with its tokenizer)
and trains it on the ``train`` rows of a labelled sequence panel
(:func:`genlm_sc.io.read_labelled_sequences`) with :class:`transformers.Trainer`:
evaluation on the ``dev`` rows, early stopping on a dev metric, the best dev checkpoint
kept, and test metrics (MCC, macro F1, accuracy) on the ``test`` rows.

The model (:class:`~genlm_sc.models.heads.SequenceClassifier`) mean-pools the encoder's
token states over each sequence (all chunks of a long one, special and padding tokens
excluded; the pooling of :class:`~genlm_sc.models.heads.PooledSequenceModel`, shared with
the expression fine-tuning), standardises the pooled vector with fixed means and scales
(those of the training sequences under the initial encoder: mean-pooled states differ
little between sequences) and applies dropout and a linear layer. Two ways of adapting the encoder:

``method="full"``
    Every weight is trained.
``method="lora"``
    Low-rank adapters (:mod:`peft` LoRA) on the encoder's linear layers (those of
    :data:`~genlm_sc.models.adapters.LORA_TARGETS`); the pretrained weights stay frozen, only
    the adapters and the head are trained. Adapters are merged into the weights after
    training, so a saved model is a plain encoder plus the head.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

import anndata as ad
import numpy as np
import pandas as pd
import torch

from ..._devices import resolve_device, resolve_precision, without_denormals
from ..._distributed import main_process_writes
from ...models.adapters import adapt_encoder, merge_adapters
from ...models.encoder import load_encoder
from ...models.heads import SequenceClassifier
from ..training import (
    TimeBudget,
    quiet_progress,
    quiet_trainer,
    resume_point,
    scratch_folder,
    training_arguments,
)
from .labels import DEV, TEST, TRAIN, class_codes, label_classes, random_split, rows_digest

__all__ = [
    "classification_metrics",
    "fit_classifier",
    "predict_classifier",
]

Method = Literal["full", "lora"]
T = TypeVar("T")
#: Training rows whose pooled vectors set the head's input standardisation.
STANDARDISE_ROWS = 2048


def classification_metrics(y_true: Sequence[Any], y_pred: Sequence[Any]) -> dict[str, float]:
    """Matthews correlation coefficient, macro-averaged F1 and accuracy (scikit-learn).

    Parameters
    ----------
    y_true, y_pred
        True and predicted labels.

    Returns
    -------
    ``{"mcc": ..., "f1_macro": ..., "accuracy": ..., "n": ...}`` (F1 of a class never
    predicted nor present counts 0).
    """
    from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    return {
        "mcc": float(matthews_corrcoef(y_true, y_pred)),
        "f1_macro": float(f1_score(y_true, y_pred, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "n": int(y_true.size),
    }


def fit_classifier(
    adata: ad.AnnData,
    *,
    model: Any,
    label_key: str = "label",
    split_key: str = "split",
    method: Method = "full",
    learning_rate: float = 5e-4,
    epochs: float = 3.0,
    max_steps: int | None = None,
    batch_size: int = 32,
    weight_decay: float = 0.01,
    warmup_steps: int = 0,
    dropout: float = 0.1,
    eval_steps: int | None = None,
    patience: int | None = 3,
    best_metric: Literal["mcc", "loss"] = "mcc",
    time_budget: float | None = None,
    lora_rank: int = 8,
    lora_alpha: int = 16,
    target_modules: Sequence[str] | None = None,
    n_layers: int | None = None,
    max_length: int | None = None,
    output_dir: str | os.PathLike | None = None,
    resume: bool = True,
    device: str = "auto",
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto",
    random_state: int = 0,
    key_added: str = "gl_classifier",
    progress: bool = True,
    copy: bool = False,
) -> ad.AnnData | None:
    """Fine-tune a pretrained DNA language model to classify the sequences of a panel.

    Parameters
    ----------
    adata
        A panel of labelled sequences (:func:`genlm_sc.io.read_labelled_sequences`, or
        :func:`genlm_sc.pp.sequence_panel` with a label column; sequences are read with
        :func:`genlm_sc.get.sequences`, so a gene panel works too), labels in
        ``obs[label_key]``, and the split of each row in
        ``obs[split_key]``: ``"train"`` rows are trained on, ``"dev"`` rows steer early
        stopping and the choice of the kept checkpoint, ``"test"`` rows are predicted and
        scored; rows of any other split are left alone. Without a ``split_key`` column a
        stratified random 80/10/10 split (seeded by ``random_state``) is drawn and written there.
    model
        A local checkpoint directory of a pretrained masked LM with its tokenizer (ours from
        :func:`genlm_sc.tl.pretrain`, or a DNABERT-, Nucleotide Transformer- or
        DNABERT-2-style BERT-family model), a ``(model, tokenizer)`` pair (e.g. a randomly
        initialised :class:`~genlm_sc.models.GenlmConvForMaskedLM`, to train from
        scratch) or a :class:`~genlm_sc.models.SequenceEncoder`. It is not modified.
    label_key
        The ``obs`` column of labels (numbers or strings); the classes are its distinct
        values over the train, dev and test rows.
    split_key
        The ``obs`` column naming each row's split.
    method
        ``"full"`` (every weight trained) or ``"lora"`` (adapters on a frozen encoder).
    learning_rate, weight_decay, warmup_steps
        AdamW with linear warm-up and linear decay to 0 at the last planned step.
    epochs
        Passes over the training rows, unless ``max_steps`` is given.
    max_steps
        Optimisation steps (overrides ``epochs``).
    batch_size
        Training sequences per step (evaluation uses twice as many).
    dropout
        On the pooled vector before the head.
    eval_steps
        Evaluate on the dev rows every ``eval_steps`` steps (``None``: after every epoch).
    patience
        Stop when ``best_metric`` on the dev rows has not improved for this many
        evaluations (``None``: no early stopping). Either way the checkpoint with the best
        dev metric is the one kept.
    best_metric
        ``"mcc"`` (higher is better) or ``"loss"`` (dev cross-entropy, lower is better).
    time_budget
        Seconds of training after which training stops (after one more evaluation); ``None``:
        no limit.
    lora_rank, lora_alpha, target_modules
        LoRA adapters (``method="lora"``): rank, scaling and the module names given
        adapters (default: ``ffn.0``/``ffn.2`` of a genlm_conv model, ``query``/``value``
        of BERT-family models, else every linear layer).
    n_layers
        Keep only the first ``n_layers`` encoder blocks (``None``: all).
    max_length
        Tokens per chunk (default: the model's context); longer sequences are chunked and
        pooled over all chunks.
    output_dir
        Where the fitted model goes (:meth:`SequenceClassifier.save_pretrained`: the
        encoder and tokenizer in Hugging Face layout plus the head), loadable with
        :func:`predict_classifier`. ``None``: not saved. While training, checkpoints go
        to ``output_dir/checkpoints`` (removed once the model is saved), else to a
        temporary folder.
    resume
        With ``output_dir``: continue an interrupted run from its newest complete
        checkpoint, as the uninterrupted run would have gone on. A run with other
        settings or data is refused, naming what changed; ``resume=False`` starts afresh.
    device
        ``"auto"`` (CUDA, else MPS, else CPU) or a torch device name.
    precision
        As in :func:`genlm_sc.tl.pretrain` (``"auto"``: bf16 where the hardware computes it
        natively, else fp32).
    random_state
        Seed of the head's and adapters' initialisation, the batch order and dropout.
    key_added
        Prefix of the ``obs`` columns and key of the ``uns`` record.
    progress
        Show the Trainer's progress bar and logs.
    copy
        Return an annotated copy instead of writing into ``adata``.

    Returns
    -------
    ``None``, or the annotated copy when ``copy=True``. Sets

    ``obs[f"{key_added}_pred"]``
        Predicted label of every test row (categorical; missing elsewhere).
    ``obs[f"{key_added}_prob_{c}"]``
        Predicted probability of class ``c`` for every test row (``NaN`` elsewhere).
    ``uns[key_added]``
        ``"test"``: :func:`classification_metrics` of the test rows (MCC, macro F1,
        accuracy, n); ``"dev"``: the best dev metric and its step; ``"classes"``;
        ``"history"``: DataFrame of every dev evaluation (step, epoch, loss, mcc, f1_macro,
        accuracy); ``"steps"``, ``"stop_reason"`` (``"max_steps"``, ``"early_stopping"``
        or ``"time_budget"``), ``"train_seconds"``, ``"n_parameters"`` (encoder and head),
        ``"n_trainable_parameters"``, ``"n_train"``, ``"n_dev"``, ``"output_dir"`` and
        ``"params"``.
    """
    from transformers import EarlyStoppingCallback, set_seed

    from ..._quiet import quiet_transformers
    from ...get import sequences as panel_sequences

    if method not in ("full", "lora"):
        raise ValueError(f"method must be 'full' or 'lora', not {method!r}")
    if best_metric not in ("mcc", "loss"):
        raise ValueError(f"best_metric must be 'mcc' or 'loss', not {best_metric!r}")
    if label_key not in adata.obs.columns:
        raise KeyError(f"no label column {label_key!r} in obs")
    if patience is not None and patience < 1:
        raise ValueError("patience must be at least 1 (or None: no early stopping)")
    adata = adata.copy() if copy else adata
    if split_key not in adata.obs.columns:
        adata.obs[split_key] = random_split(adata.obs[label_key], random_state)
    split = adata.obs[split_key].astype(str).to_numpy()
    rows = {name: np.flatnonzero(split == name) for name in (TRAIN, DEV, TEST)}
    if rows[TRAIN].size == 0:
        raise ValueError(f"no rows with {split_key} == 'train'")
    labels = adata.obs[label_key]
    used = np.concatenate(list(rows.values()))
    if labels.iloc[used].isna().any():
        raise ValueError(f"missing labels in obs[{label_key!r}] of train/dev/test rows")
    classes = label_classes(labels.iloc[used])
    code = {c: i for i, c in enumerate(classes)}
    target = class_codes(labels, used, code)
    sequences = panel_sequences(adata).tolist()

    set_seed(random_state)
    network = _build(
        model, method=method, classes=classes, dropout=dropout, lora_rank=lora_rank,
        lora_alpha=lora_alpha, target_modules=target_modules, n_layers=n_layers,
        max_length=max_length,
    )  # fmt: skip
    resolved = resolve_device(device)
    network.to(resolved)
    picked = np.random.default_rng(random_state).permutation(rows[TRAIN])[:STANDARDISE_ROWS]
    network.standardise_inputs([sequences[i] for i in np.sort(picked)], batch_size=2 * batch_size)
    n_trainable = int(sum(p.numel() for p in network.parameters() if p.requires_grad))
    train_set = [{"sequence": sequences[i], "label": int(target[i])} for i in rows[TRAIN]]
    dev_set = [{"sequence": sequences[i], "label": int(target[i])} for i in rows[DEV]]

    dtype = resolve_precision(precision, resolved)
    evaluate = len(dev_set) > 0
    budget = TimeBudget(time_budget)
    callbacks: list[Any] = [budget]
    if evaluate and patience is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=patience))
    kept = output_dir is not None
    with contextlib.ExitStack() as stack:
        if kept:
            checkpoints = Path(output_dir) / "checkpoints"
        else:
            checkpoints = stack.enter_context(scratch_folder("gl_cls_"))
        args = training_arguments(
            checkpoints, batch_size=batch_size, learning_rate=learning_rate,
            random_state=random_state, precision=dtype, device=resolved, progress=progress,
            epochs=epochs, max_steps=max_steps, weight_decay=weight_decay,
            warmup_steps=warmup_steps, scheduler="linear", evaluate=evaluate,
            eval_steps=eval_steps, save=evaluate or kept, save_steps=eval_steps,
            save_total_limit=1, save_only_model=not kept, best_metric=best_metric,
            greater_is_better=best_metric == "mcc", label_names=["labels"],
        )  # fmt: skip
        trainer = quiet_progress(
            _trainer(network, args, train_set, dev_set if evaluate else None, callbacks), progress
        )
        settings = {
            "model": _describe(model), "method": method, "classes": [str(c) for c in classes],
            "learning_rate": learning_rate, "epochs": float(epochs), "max_steps": max_steps,
            "batch_size": batch_size, "weight_decay": weight_decay, "warmup_steps": warmup_steps,
            "dropout": dropout, "eval_steps": eval_steps, "patience": patience,
            "best_metric": best_metric, "lora_rank": lora_rank, "lora_alpha": lora_alpha,
            "target_modules": list(target_modules or []), "n_layers": n_layers,
            "max_length": network.max_length, "precision": dtype, "random_state": random_state,
            "data": rows_digest(train_set + dev_set),
        }  # fmt: skip
        resumed_from = resume_point(checkpoints, settings, resume=resume and kept)
        start = time.perf_counter()
        with quiet_transformers(not progress), quiet_trainer():
            without_denormals(
                lambda: trainer.train(resume_from_checkpoint=resumed_from), device=resolved
            )
        train_seconds = time.perf_counter() - start
    state = trainer.state
    # without the mixed-precision wrapper of training: predictions here equal those of the
    # saved model (which loads in fp32)
    network = trainer.accelerator.unwrap_model(trainer.model, keep_fp32_wrapper=False)
    network.encoder = merge_adapters(network.encoder)
    network.eval()

    test_sequences = [sequences[i] for i in rows[TEST]]
    probabilities = network.predict_proba(test_sequences, batch_size=2 * batch_size)
    predicted = np.asarray(classes, dtype=object)[probabilities.argmax(1)]
    _write_predictions(adata, rows[TEST], predicted, probabilities, classes, key_added)
    saved = None
    if output_dir is not None:

        def save() -> None:
            with quiet_transformers(not progress):
                network.save_pretrained(output_dir)
            shutil.rmtree(Path(output_dir) / "checkpoints", ignore_errors=True)

        main_process_writes(save)
        saved = os.fspath(Path(output_dir))
    history = _history(state.log_history)
    stop_reason = "max_steps"
    if budget.hit:
        stop_reason = "time_budget"
    elif state.global_step < state.max_steps:
        stop_reason = "early_stopping"
    test_metrics = {}
    if rows[TEST].size:  # on class indices: the metrics do not depend on the label values
        test_metrics = classification_metrics(target[rows[TEST]], probabilities.argmax(1))
    adata.uns[key_added] = {
        "test": test_metrics,
        "dev": {
            f"best_{best_metric}": float("nan") if state.best_metric is None else state.best_metric,
            "best_step": -1 if state.best_global_step is None else int(state.best_global_step),
        },
        "classes": np.asarray(classes),
        "history": history,
        "steps": int(state.global_step),
        "stop_reason": stop_reason,
        "train_seconds": float(train_seconds),
        "n_parameters": int(sum(p.numel() for p in network.parameters())),
        "n_trainable_parameters": n_trainable,
        "n_train": int(rows[TRAIN].size),
        "n_dev": int(rows[DEV].size),
        "output_dir": saved or "",
        "resumed_from": resumed_from or "",
        "params": {
            "model": _describe(model),
            "method": method,
            "label_key": label_key,
            "split_key": split_key,
            "learning_rate": learning_rate,
            "epochs": float(epochs),
            "max_steps": -1 if max_steps is None else int(max_steps),
            "batch_size": batch_size,
            "weight_decay": weight_decay,
            "warmup_steps": warmup_steps,
            "dropout": dropout,
            "eval_steps": -1 if eval_steps is None else int(eval_steps),
            "patience": -1 if patience is None else int(patience),
            "best_metric": best_metric,
            "time_budget": -1.0 if time_budget is None else float(time_budget),
            "lora_rank": lora_rank if method == "lora" else 0,
            "lora_alpha": lora_alpha if method == "lora" else 0,
            "n_layers": -1 if n_layers is None else int(n_layers),
            "max_length": network.max_length,
            "device": resolved,
            "precision": dtype,
            "random_state": random_state,
        },
    }
    return adata if copy else None


def predict_classifier(
    model: SequenceClassifier | str | os.PathLike,
    sequences: str | Sequence[str] | pd.Series | ad.AnnData,
    *,
    proba: bool = False,
    batch_size: int = 64,
    device: str = "auto",
) -> np.ndarray:
    """Classify sequences with a fine-tuned model.

    Parameters
    ----------
    model
        A :class:`SequenceClassifier` or a folder saved by it (``output_dir`` of
        :func:`fit_classifier`).
    sequences
        Sequences, or a sequence panel (its ``obs["sequence"]``).
    proba
        Return class probabilities instead of labels.
    batch_size
        Sequences per forward pass.
    device
        Where a model loaded from a folder runs (an in-memory model stays where it is).

    Returns
    -------
    ``(n,)`` predicted labels (the values of the training labels), or with ``proba=True``
    ``(n, n_classes)`` float64 probabilities, columns in the order of ``model.classes``.
    """
    if not isinstance(model, SequenceClassifier):
        model = SequenceClassifier.from_pretrained(model, device=device)
    if isinstance(sequences, ad.AnnData):
        from ...get import sequences as panel_sequences

        sequences = panel_sequences(sequences).tolist()
    elif isinstance(sequences, str):
        sequences = [sequences]
    sequences = [str(s).upper() for s in sequences]
    probabilities = model.predict_proba(sequences, batch_size=batch_size)
    if proba:
        return probabilities
    return np.asarray(model.classes)[probabilities.argmax(1)]


# --- helpers ----------------------------------------------------------------------------


def _build(
    model: Any,
    *,
    method: Method,
    classes: list[Any],
    dropout: float,
    lora_rank: int,
    lora_alpha: int,
    target_modules: Sequence[str] | None,
    n_layers: int | None,
    max_length: int | None,
) -> SequenceClassifier:
    """A classifier on the pretrained encoder (a copy unless it was loaded from a folder)."""
    import copy

    pretrained = load_encoder(model, device="cpu", precision="fp32", max_length=max_length)
    encoder = pretrained.model
    if not isinstance(model, str | os.PathLike):
        encoder = copy.deepcopy(encoder)
    encoder = adapt_encoder(
        encoder, lora=method == "lora", n_layers=n_layers, lora_rank=lora_rank,
        lora_alpha=lora_alpha, target_modules=target_modules,
    )  # fmt: skip
    return SequenceClassifier(
        encoder, pretrained.tokenizer, max_length=pretrained.max_length, classes=classes,
        dropout=dropout,
    )  # fmt: skip


def _trainer(network, args, train_set, dev_set, callbacks):
    """A :class:`transformers.Trainer` on lists of ``{"sequence", "label"}`` rows."""
    from transformers import Trainer

    def collate(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "sequences": [row["sequence"] for row in rows],
            "labels": torch.tensor([row["label"] for row in rows], dtype=torch.long),
        }

    def metrics(prediction) -> dict[str, float]:
        logits = np.asarray(prediction.predictions)
        scores = classification_metrics(prediction.label_ids, logits.argmax(-1))
        scores.pop("n")
        return scores

    return Trainer(
        model=network,
        args=args,
        train_dataset=train_set,
        eval_dataset=dev_set,
        data_collator=collate,
        compute_metrics=metrics,
        callbacks=callbacks,
    )


def _write_predictions(
    adata: ad.AnnData,
    rows: np.ndarray,
    predicted: np.ndarray,
    probabilities: np.ndarray,
    classes: list[Any],
    key_added: str,
) -> None:
    labels = np.full(adata.n_obs, None, dtype=object)
    labels[rows] = predicted
    adata.obs[f"{key_added}_pred"] = pd.Categorical(labels, categories=classes)
    for j, name in enumerate(classes):
        column = np.full(adata.n_obs, np.nan)
        column[rows] = probabilities[:, j]
        adata.obs[f"{key_added}_prob_{name}"] = column


def _history(log_history: list[dict[str, Any]]) -> pd.DataFrame:
    """The dev evaluations among the Trainer's logs."""
    columns = ["step", "epoch", "loss", "mcc", "f1_macro", "accuracy"]
    rows = []
    for entry in log_history:
        if "eval_loss" in entry:
            scores = {name: entry.get(f"eval_{name}", np.nan) for name in columns[2:]}
            rows.append({"step": entry["step"], "epoch": entry.get("epoch", np.nan), **scores})
    return pd.DataFrame(rows, columns=columns).astype(float).astype({"step": np.int64})


def _describe(model: Any) -> str:
    if isinstance(model, str | os.PathLike):
        return os.path.abspath(os.fspath(model))
    if isinstance(model, tuple):
        return type(model[0]).__name__
    return getattr(model, "source", None) or type(model).__name__
