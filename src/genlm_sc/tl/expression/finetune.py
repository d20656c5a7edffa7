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
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from ..._devices import resolve_device, without_denormals
from ...models.adapters import adapt_encoder, merge_adapters
from ...models.encoder import SequenceEncoder, load_encoder
from ...models.heads import HaplotypeRegressor
from .cross_validation import cross_validate, residuals

__all__ = ["FinetuneOptions", "pairwise_loss", "predict"]

Strategy = Literal["lora", "prune"]


@dataclass(frozen=True)
class FinetuneOptions:
    """Settings of ``fit_expression(method="finetune", finetune_options={...})``.

    Parameters
    ----------
    model
        Checkpoint directory of the pretrained language model (with its tokenizer), e.g.
        from :func:`genlm_sc.tl.pretrain`.
    strategy
        ``"lora"`` (adapters on a frozen encoder) or ``"prune"`` (first ``n_layers``
        blocks, fully fine-tuned).
    n_layers
        Encoder blocks kept (``None``: all). Applies to both strategies; ``"prune"`` usually
        sets it.
    epochs
        Passes over the training people of each fold.
    batch_size
        People per optimisation step (each contributes two haplotypes).
    learning_rate
        Of AdamW.
    weight_decay
        Of AdamW.
    pairwise_weight
        ``w`` of the loss ``(1 - w) * MSE + w * pairwise`` (:func:`pairwise_loss`); the
        Performer model uses 0.5.
    lora_rank, lora_alpha
        Rank and scaling of the LoRA adapters.
    target_modules
        Module names given adapters (default:
        :data:`~genlm_sc.models.adapters.LORA_TARGETS` of the model type, i.e. the
        feed-forward layers ``ffn.0``/``ffn.2`` of a genlm_conv model and ``query``/``value``
        of BERT-family models; else every linear layer).
    device
        ``"auto"`` (CUDA, else MPS, else CPU) or a torch device name.
    random_state
        Seed of the head's and adapters' initialisation and of the batch order (the same
        in every fold and gene).
    output_dir
        Where the fitted models are saved: one folder per gene and outer fold,
        ``output_dir/<gene>/fold_<k>`` (Hugging Face layout plus the head, loadable with
        :meth:`HaplotypeRegressor.from_pretrained` and usable by :func:`predict`). Fold
        ``k``'s model produced the out-of-fold predictions of the people in fold ``k``.
        ``None``: the models are not kept.
    refit
        After the cross-validation, also fit one model on every person with a value
        (covariates regressed out on everyone) and save it as ``output_dir/<gene>/all``:
        the model to explain (:func:`genlm_sc.tl.attribute`,
        :func:`genlm_sc.tl.variant_effects`); the fold models are for honest evaluation.
        Needs ``output_dir``.
    progress
        Show a progress bar per gene and fold.
    """

    model: str | os.PathLike | None = None
    strategy: Strategy = "lora"
    n_layers: int | None = None
    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    pairwise_weight: float = 0.0
    lora_rank: int = 8
    lora_alpha: int = 16
    target_modules: Sequence[str] | None = None
    device: str = "auto"
    random_state: int = 0
    output_dir: str | os.PathLike | None = None
    refit: bool = False
    progress: bool = True

    @classmethod
    def parse(cls, options: Mapping[str, Any] | FinetuneOptions | None) -> FinetuneOptions:
        """Validated options from a mapping (unknown keys raise)."""
        if isinstance(options, FinetuneOptions):
            parsed = options
        else:
            options = dict(options or {})
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(options) - known)
            if unknown:
                raise TypeError(f"unknown finetune options {unknown}; known: {sorted(known)}")
            parsed = cls(**options)
        parsed._check()
        return parsed

    def _check(self) -> None:
        if self.model is None:
            raise ValueError("finetune_options needs 'model': a checkpoint directory")
        if self.strategy not in ("lora", "prune"):
            raise ValueError(f"strategy must be 'lora' or 'prune', not {self.strategy!r}")
        if not 0.0 <= self.pairwise_weight <= 1.0:
            raise ValueError("pairwise_weight must lie in [0, 1]")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        if self.n_layers is not None and self.n_layers < 1:
            raise ValueError("n_layers must be at least 1 (or None: all)")
        if self.refit and self.output_dir is None:
            raise ValueError("refit=True saves the model fitted on everyone: give output_dir")

    def record(self) -> dict[str, Any]:
        """The settings as plain strings and numbers (storable in ``uns``)."""
        record = asdict(self)
        record["model"] = os.fspath(self.model)
        record["output_dir"] = "" if self.output_dir is None else os.fspath(self.output_dir)
        record["n_layers"] = -1 if self.n_layers is None else int(self.n_layers)
        record["target_modules"] = ",".join(self.target_modules or [])
        return record


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
    description: str = "fine-tuning",
) -> HaplotypeRegressor:
    """Train on standardised ``target`` with AdamW; LoRA adapters are merged afterwards."""
    from tqdm.auto import tqdm

    device = resolve_device(options.device)
    model.to(device).train()
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(
        trainable, lr=options.learning_rate, weight_decay=options.weight_decay
    )
    y = torch.as_tensor(target, dtype=torch.float32, device=device)
    order = torch.Generator().manual_seed(options.random_state)
    n_batches = -(-len(pairs) // options.batch_size)
    bar = tqdm(total=options.epochs * n_batches, desc=description, disable=not options.progress)

    def epochs() -> None:
        for _ in range(options.epochs):
            for batch in torch.randperm(len(pairs), generator=order).split(options.batch_size):
                pred = model([pairs[i] for i in batch.tolist()])
                loss = pairwise_loss(pred, y[batch.to(device)], options.pairwise_weight)
                optimiser.zero_grad()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                optimiser.step()
                bar.update()
                bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False)

    without_denormals(epochs, device=device)  # denormals slow CPU training steps
    bar.close()
    model.encoder = merge_adapters(model.encoder)
    return model.eval()


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
        description: str,
    ):
        self.pretrained = pretrained
        self.pairs = pairs
        self.options = options
        self.description = description
        self.test_rows: np.ndarray | None = None
        self.model: HaplotypeRegressor | None = None

    def fit(self, rows: np.ndarray, y: np.ndarray) -> _FoldModel:
        mean, std = float(np.mean(y)), float(np.std(y))
        std = std if std > 0 else 1.0
        model = build_regressor(self.pretrained, self.options, y_mean=mean, y_std=std)
        people = [self.pairs[i] for i in np.asarray(rows, dtype=np.int64).ravel()]
        self.model = train_regressor(
            model, people, (y - mean) / std, self.options, description=self.description
        )
        self.model.standardise_inputs(people, batch_size=max(self.options.batch_size, 32))
        return self

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
        made.append(_FoldModel(pretrained, pairs, options, f"{gene} fold {len(made) + 1}"))
        return made[-1]

    rows = np.arange(len(pairs))[:, None]
    fit = cross_validate(rows, y, folds=folds, covariates=covariates, model=make)
    models = {}
    for fold_model in made:
        if fold_model.model is None or fold_model.test_rows is None:
            continue
        held_out = int(folds[fold_model.test_rows[0]])
        models[held_out] = fold_model.model
        if options.output_dir is not None:
            fold_model.model.save_pretrained(Path(options.output_dir) / gene / f"fold_{held_out}")
    if options.refit:
        known = np.isfinite(y)
        if covariates is not None:
            known &= np.isfinite(covariates).all(axis=1)
        target = y[known]
        if covariates is not None:
            target = residuals(covariates[known], target, covariates[known])
        everyone = np.flatnonzero(known)
        final = _FoldModel(pretrained, pairs, options, f"{gene} all").fit(everyone, target)
        models["all"] = final.model
        final.model.save_pretrained(Path(options.output_dir) / gene / "all")
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
