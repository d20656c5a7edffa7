"""Fine-tuning a DNA language model to predict expression from a person's two haplotypes.

The ``"finetune"`` method of :func:`genlm_sc.tl.fit_expression` and :func:`predict`.

The model (:class:`HaplotypeRegressor`) applies one shared encoder to each of a person's
two haplotypes, mean-pools the token states of each (over all chunks of a long sequence,
special and padding tokens excluded, as :meth:`~genlm_sc.models.SequenceEncoder.embed`
does), concatenates the two vectors, standardises them (a single variant moves a mean over
all tokens only a little) and maps them to expression with a linear head.
Two ways of adapting the encoder:

``strategy="lora"``
    Low-rank adapters (:mod:`peft` LoRA) on the encoder's linear layers; the pretrained
    weights stay frozen, only the adapters and the head are trained. After training the
    adapters are merged into the weights, so a fitted model is a plain encoder.
``strategy="prune"``
    Only the first ``n_layers`` blocks are kept (as in UKBioFormer) and every weight,
    embeddings included, is trained.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from torch import nn

from .._devices import resolve_device, without_denormals
from ..models.encoder import SequenceEncoder, load_encoder

__all__ = [
    "FinetuneOptions",
    "HaplotypeRegressor",
    "PooledSequenceModel",
    "pairwise_loss",
    "predict",
]

Strategy = Literal["lora", "prune"]
#: File of the regression head's weights in a saved model folder.
HEAD_WEIGHTS = "regression_head.pt"
#: File of the head's settings (target scale, context) in a saved model folder.
HEAD_CONFIG = "regression_head.json"
#: LoRA target modules per ``model_type`` (other models: every linear layer).
LORA_TARGETS: dict[str, list[str]] = {
    "genlm_conv": ["ffn.0", "ffn.2"],
    "bert": ["query", "value"],
    "esm": ["query", "value"],
    "roberta": ["query", "value"],
}


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
        Module names given adapters (default: ``LORA_TARGETS`` of the model type, i.e. the
        feed-forward layers ``ffn.0``/``ffn.2`` of a genlm_conv model and ``query``/``value``
        of BERT-family models; else every linear layer).
    device
        ``"auto"`` (CUDA, else MPS, else CPU) or a torch device name.
    seed
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
    seed: int = 0
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


# --- the model --------------------------------------------------------------------------


class PooledSequenceModel(nn.Module):
    """An encoder with its tokenizer that mean-pools token states per sequence.

    The base of the fine-tuned models (:class:`HaplotypeRegressor`,
    :class:`~genlm_sc.tl._classifier.SequenceClassifier`): sequences are cut into chunks of
    whole tokens as :meth:`~genlm_sc.models.SequenceEncoder.embed` does, and every sequence's
    token states are averaged over all its chunks, special and padding tokens excluded.

    Parameters
    ----------
    encoder
        A Hugging Face base encoder returning ``last_hidden_state``.
    tokenizer
        Its tokenizer.
    max_length
        Tokens per chunk, special tokens included (long sequences are chunked).
    """

    def __init__(self, encoder: nn.Module, tokenizer: Any, *, max_length: int):
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self._chunker: SequenceEncoder | None = None
        self._chunks: dict[str, list[list[int]]] = {}

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def pool(self, sequences: Sequence[str]) -> torch.Tensor:
        """Mean token state of each sequence over all its chunks, ``(n, hidden_size)``.

        Each distinct sequence is encoded once (people share haplotypes, so a batch of
        people holds far fewer distinct sequences than haplotypes); repeats reuse its row,
        and in training their gradients add up through the shared row.
        """
        distinct = list(dict.fromkeys(sequences))
        pooled = self._pool_distinct(distinct)
        if len(distinct) == len(sequences):
            return pooled
        row = {sequence: i for i, sequence in enumerate(distinct)}
        index = torch.as_tensor([row[s] for s in sequences], device=pooled.device)
        return pooled.index_select(0, index)

    def _pool_distinct(self, sequences: Sequence[str]) -> torch.Tensor:
        owner, chunks = [], []
        for i, sequence in enumerate(sequences):
            for chunk in self._chunk_ids(sequence):
                owner.append(i)
                chunks.append(chunk)
        ids, mask, keep = self._batcher()._batch(chunks)
        states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state.float()
        index = torch.as_tensor(owner, device=states.device)
        width = states.shape[-1]
        sums = states.new_zeros(len(sequences), width).index_add(
            0, index, (states * keep.unsqueeze(-1)).sum(1)
        )
        counts = states.new_zeros(len(sequences)).index_add(0, index, keep.sum(1))
        return sums / counts.clamp(min=1).unsqueeze(-1)

    def _batcher(self) -> SequenceEncoder:
        device = str(self.device)
        if self._chunker is None or self._chunker.device != device:
            self._chunker = _chunker(self.tokenizer, max_length=self.max_length, device=device)
        return self._chunker

    def _chunk_ids(self, sequence: str) -> list[list[int]]:
        if sequence not in self._chunks:
            self._chunks[sequence] = self._batcher().chunk_ids(sequence)
        return self._chunks[sequence]

    #: Files of the head's weights and settings in a saved folder, and what it holds.
    head_weights = "head.pt"
    head_config = "head.json"
    saved_kind = "fine-tuned model"

    def head_settings(self) -> dict[str, Any]:
        """Constructor keywords (besides encoder and tokenizer) written next to the head."""
        return {"max_length": self.max_length}

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Save the encoder and tokenizer (Hugging Face layout) and the head to ``path``."""
        from .._quiet import quiet_transformers

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        with quiet_transformers():
            self.encoder.save_pretrained(path)
        self.tokenizer.save_pretrained(path)
        weights = {k: v.cpu() for k, v in self.head.state_dict().items()}
        torch.save(weights, path / self.head_weights)
        (path / self.head_config).write_text(json.dumps(self.head_settings(), indent=2))
        return path

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: str = "auto"):
        """Load a model saved by :meth:`save_pretrained` (in evaluation mode)."""
        path = Path(path)
        if not (path / cls.head_config).is_file():
            raise FileNotFoundError(f"no {cls.saved_kind} at {path}")
        settings = json.loads((path / cls.head_config).read_text())
        loaded = load_encoder(path, device="cpu", precision="fp32")
        model = cls(loaded.model, loaded.tokenizer, **settings)
        state = torch.load(path / cls.head_weights, map_location="cpu", weights_only=True)
        model.head.load_state_dict(state)
        return model.to(resolve_device(device)).eval()


class HaplotypeRegressor(PooledSequenceModel):
    """Shared encoder on both haplotypes, mean-pooled, concatenated, linear head.

    The head standardises its inputs, since a single variant moves a mean over all tokens
    only a little: in training with the batch's means and SDs (as batch normalisation
    does), in evaluation with fixed ones, set by :meth:`standardise_inputs` to those of
    the training people under the trained encoder. Predictions are in the units of the training
    targets: the head predicts standardised values, rescaled with ``y_mean`` and ``y_std``.

    Parameters
    ----------
    encoder
        A Hugging Face base encoder returning ``last_hidden_state``.
    tokenizer
        Its tokenizer.
    max_length
        Tokens per chunk, special tokens included (long sequences are chunked).
    y_mean, y_std
        Scale of the targets.
    """

    def __init__(
        self,
        encoder: nn.Module,
        tokenizer: Any,
        *,
        max_length: int,
        y_mean: float = 0.0,
        y_std: float = 1.0,
    ):
        super().__init__(encoder, tokenizer, max_length=max_length)
        self.y_mean = float(y_mean)
        self.y_std = float(y_std)
        self.head = _Head(2 * int(encoder.config.hidden_size))

    def forward(self, pairs: Sequence[tuple[str, str]]) -> torch.Tensor:
        """Standardised predictions ``(n_people,)`` for ``(haplotype_1, haplotype_2)`` pairs."""
        sequences = [p[0] for p in pairs] + [p[1] for p in pairs]
        pooled = self.pool(sequences)
        n = len(pairs)
        return self.head(torch.cat([pooled[:n], pooled[n:]], dim=1))

    @torch.no_grad()
    def standardise_inputs(self, pairs: Sequence[tuple[str, str]], batch_size: int = 32) -> None:
        """Set the head's input means and scales to those of ``pairs`` under this encoder."""
        was_training = self.training
        self.eval()
        features = []
        for start in range(0, len(pairs), batch_size):
            batch = pairs[start : start + batch_size]
            pooled = self.pool([p[0] for p in batch] + [p[1] for p in batch])
            features.append(torch.cat([pooled[: len(batch)], pooled[len(batch) :]], dim=1))
        stacked = torch.cat(features).double()
        self.head.mean.copy_(stacked.mean(0).float())
        self.head.scale.copy_(torch.sqrt(stacked.var(0, correction=0) + _Head.EPS).float())
        self.train(was_training)

    head_weights = HEAD_WEIGHTS
    head_config = HEAD_CONFIG
    saved_kind = "fine-tuned expression model"

    def head_settings(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "y_mean": self.y_mean, "y_std": self.y_std}


class _Head(nn.Module):
    """Standardisation of the pooled features (batch statistics in training, else fixed
    ones; ``EPS`` added to variances), then a linear layer."""

    EPS = 1e-10

    def __init__(self, width: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.linear = nn.Linear(width, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if self.training and features.shape[0] > 1:
            mean = features.mean(0)
            scale = torch.sqrt(features.var(0, correction=0) + self.EPS)
        else:
            mean, scale = self.mean, self.scale
        return self.linear((features - mean) / scale).squeeze(-1)


def _chunker(tokenizer: Any, *, max_length: int, device: str) -> SequenceEncoder:
    """A :class:`SequenceEncoder` used only to chunk and pad token ids (no model)."""
    placeholder = nn.Module()
    placeholder.config = None  # type: ignore[assignment]
    return SequenceEncoder(
        placeholder, tokenizer, device=device, precision="fp32", max_length=max_length
    )


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
    torch.manual_seed(options.seed)
    encoder = copy.deepcopy(pretrained.model).float()
    if options.n_layers is not None:
        _prune(encoder, options.n_layers)
    if options.strategy == "lora":
        encoder = _add_lora(
            encoder,
            rank=options.lora_rank,
            alpha=options.lora_alpha,
            target_modules=options.target_modules,
        )
    else:
        encoder.requires_grad_(True)
    return HaplotypeRegressor(
        encoder, pretrained.tokenizer, max_length=pretrained.max_length, y_mean=y_mean, y_std=y_std
    )


def _prune(encoder: nn.Module, n_layers: int) -> None:
    """Keep the first ``n_layers`` blocks of ``encoder`` (in place), config updated."""
    from ..models.conv_lm import GenlmConvModel

    if isinstance(encoder, GenlmConvModel):
        total = len(encoder.conv_layers) + len(encoder.attention_layers)
        _check_layers(n_layers, total)
        n_conv = min(n_layers, len(encoder.conv_layers))
        encoder.conv_layers = encoder.conv_layers[:n_conv]
        encoder.attention_layers = encoder.attention_layers[: n_layers - n_conv]
        encoder.config.num_conv_layers = n_conv
        encoder.config.num_attention_layers = len(encoder.attention_layers)
        return
    layers = getattr(getattr(encoder, "encoder", None), "layer", None)
    if not isinstance(layers, nn.ModuleList):
        raise ValueError(f"cannot prune a {type(encoder).__name__}: no encoder.layer blocks")
    _check_layers(n_layers, len(layers))
    encoder.encoder.layer = layers[:n_layers]
    encoder.config.num_hidden_layers = n_layers


def _check_layers(n_layers: int, total: int) -> None:
    if not 1 <= n_layers <= total:
        raise ValueError(f"n_layers={n_layers}, but the encoder has {total} blocks")


def _add_lora(
    encoder: nn.Module,
    *,
    rank: int,
    alpha: int,
    target_modules: Sequence[str] | None = None,
) -> nn.Module:
    """The encoder frozen, with LoRA adapters of ``rank`` and ``alpha`` on
    ``target_modules`` (default: ``LORA_TARGETS`` of its model type, else every linear layer)."""
    from peft import LoraConfig, get_peft_model

    targets = target_modules
    if targets is None:
        targets = LORA_TARGETS.get(encoder.config.model_type, "all-linear")
    config = LoraConfig(
        r=rank,
        lora_alpha=alpha,
        lora_dropout=0.0,
        target_modules=list(targets) if not isinstance(targets, str) else targets,
    )
    with warnings.catch_warnings():  # peft calls a transformers v5 deprecated property
        warnings.filterwarnings(
            "ignore", message=".*is_gradient_checkpointing", category=FutureWarning
        )
        return get_peft_model(encoder, config)


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
    order = torch.Generator().manual_seed(options.seed)
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
    if hasattr(model.encoder, "merge_and_unload"):
        model.encoder = model.encoder.merge_and_unload()
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
    from ._expression import _cross_validate

    made: list[_FoldModel] = []

    def make() -> _FoldModel:
        made.append(_FoldModel(pretrained, pairs, options, f"{gene} fold {len(made) + 1}"))
        return made[-1]

    rows = np.arange(len(pairs))[:, None]
    fit = _cross_validate(rows, y, folds=folds, covariates=covariates, model=make)
    models = {}
    for fold_model in made:
        if fold_model.model is None or fold_model.test_rows is None:
            continue
        held_out = int(folds[fold_model.test_rows[0]])
        models[held_out] = fold_model.model
        if options.output_dir is not None:
            fold_model.model.save_pretrained(Path(options.output_dir) / gene / f"fold_{held_out}")
    if options.refit:
        from ._expression import _residuals

        known = np.isfinite(y)
        if covariates is not None:
            known &= np.isfinite(covariates).all(axis=1)
        target = y[known]
        if covariates is not None:
            target = _residuals(covariates[known], target, covariates[known])
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
    from ..get import haplotypes

    finetuner = _Finetuner(FinetuneOptions.parse(options))

    def pairs(gene: str) -> tuple[list[tuple[str, str]], list[str]]:
        table = haplotypes(adata, gene).reindex(adata.obs_names)
        return _as_pairs(table), []

    return pairs, finetuner
