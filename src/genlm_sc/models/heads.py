"""Fine-tuned models: a pretrained encoder, mean pooling over each sequence, a head.

:class:`PooledSequenceModel` is the base: sequences are cut into chunks of whole tokens
(:class:`~genlm_sc.models.chunking.Chunker`, as :meth:`~genlm_sc.models.SequenceEncoder.embed`
does), and every sequence's token states are averaged over all its chunks, special and
padding tokens excluded. Its head is a :class:`StandardisedHead`: mean-pooled token states
differ little between sequences (a single variant moves a mean over all tokens only a
little), so the pooled features are standardised before a linear layer.

:class:`HaplotypeRegressor`
    Expression from a person's two haplotypes: the shared encoder pools each, the two
    vectors are concatenated, the head predicts one standardised value.
:class:`SequenceClassifier`
    Classes of single sequences: pooled vector, standardisation, dropout, linear layer.

Both save and load with ``save_pretrained`` / ``from_pretrained``: the encoder and
tokenizer in Hugging Face layout plus the head's weights (``torch.save``, read back with
``weights_only=True``) and settings (JSON).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .._devices import resolve_device, without_denormals
from .._distributed import gather_rows
from .chunking import Chunker, ignores_attention_mask

__all__ = ["HaplotypeRegressor", "PooledSequenceModel", "SequenceClassifier", "StandardisedHead"]


class StandardisedHead(nn.Module):
    """``linear(dropout((x - mean) / scale))``.

    ``mean`` and ``scale`` are buffers set by
    :meth:`PooledSequenceModel.standardise_inputs`. With ``batch_statistics=True`` a batch
    of more than one row in training mode is standardised with its own means and SDs instead
    (as batch normalisation does; with several processes, ``torchrun``, those of the global
    batch, gathered from every process); evaluation always uses the fixed buffers.

    Parameters
    ----------
    width
        Input features.
    n_outputs
        Outputs of the linear layer; with 1 the output is squeezed to ``(n,)``.
    dropout
        Dropout rate before the linear layer (in training).
    batch_statistics
        Standardise training batches with their own statistics.
    """

    #: Added to variances.
    EPS = 1e-10

    def __init__(
        self, width: int, n_outputs: int, *, dropout: float = 0.0, batch_statistics: bool = False
    ):
        super().__init__()
        self.register_buffer("mean", torch.zeros(width))
        self.register_buffer("scale", torch.ones(width))
        self.batch_statistics = bool(batch_statistics)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(width, n_outputs)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        batch = features
        if self.batch_statistics and self.training:
            batch = gather_rows(features)  # with torchrun: the global batch, as SyncBatchNorm
        if self.batch_statistics and self.training and batch.shape[0] > 1:
            mean = batch.mean(0)
            scale = torch.sqrt(batch.var(0, correction=0) + self.EPS)
        else:
            mean, scale = self.mean, self.scale
        out = self.linear(self.dropout((features - mean) / scale))
        return out.squeeze(-1) if self.linear.out_features == 1 else out

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # heads saved as ``nn.Sequential(standardise, dropout, linear)`` (version 0.1.0)
        renamed = {"0.mean": "mean", "0.scale": "scale", "2.weight": "linear.weight",
                   "2.bias": "linear.bias"}  # fmt: skip
        for old, new in renamed.items():
            if prefix + old in state_dict and prefix + new not in state_dict:
                state_dict[prefix + new] = state_dict.pop(prefix + old)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


class PooledSequenceModel(nn.Module):
    """An encoder with its tokenizer that mean-pools token states per sequence.

    Subclasses set ``head`` (a :class:`StandardisedHead`) and define :meth:`features`, the
    head's input for a batch of their inputs.

    Parameters
    ----------
    encoder
        A Hugging Face base encoder returning ``last_hidden_state``.
    tokenizer
        Its tokenizer.
    max_length
        Tokens per chunk, special tokens included (long sequences are chunked).
    """

    #: Files of the head's weights and settings in a saved folder, and what it holds.
    head_weights = "head.pt"
    head_config = "head.json"
    saved_kind = "fine-tuned model"

    def __init__(self, encoder: nn.Module, tokenizer: Any, *, max_length: int):
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.max_length = int(max_length)
        self.head: StandardisedHead
        self._chunker: Chunker | None = None
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
        groups = self.chunker.batches(chunks, len(chunks))  # one batch unless lengths must match
        sums = counts = None
        for group in groups:
            ids, mask, keep = self.chunker.pad([chunks[i] for i in group])
            states = self.encoder(input_ids=ids, attention_mask=mask).last_hidden_state
            states = states.to(torch.promote_types(states.dtype, torch.float32))  # fp16/bf16 up
            keep = keep.to(states.dtype)
            index = torch.as_tensor([owner[i] for i in group], device=states.device)
            if sums is None:
                sums = states.new_zeros(len(sequences), states.shape[-1])
                counts = states.new_zeros(len(sequences))
            sums = sums.index_add(0, index, (states * keep.unsqueeze(-1)).sum(1))
            counts = counts.index_add(0, index, keep.sum(1))
        if sums is None or counts is None:  # no sequence has a token
            width = int(self.encoder.config.hidden_size)
            return torch.zeros(len(sequences), width, device=self.device)
        return sums / counts.clamp(min=1).unsqueeze(-1)

    @property
    def chunker(self) -> Chunker:
        """The :class:`~genlm_sc.models.chunking.Chunker` of this model's tokenizer and
        context, on the model's device."""
        device = str(self.device)
        if self._chunker is None or self._chunker.device != device:
            self._chunker = Chunker(
                self.tokenizer,
                max_length=self.max_length,
                device=device,
                equal_lengths=ignores_attention_mask(self.encoder),
            )
        return self._chunker

    def _chunk_ids(self, sequence: str) -> list[list[int]]:
        if sequence not in self._chunks:
            self._chunks[sequence] = self.chunker.chunk_ids(sequence)
        return self._chunks[sequence]

    def features(self, inputs: Sequence[Any]) -> torch.Tensor:
        """The head's input ``(n, width)`` for a batch of inputs."""
        raise NotImplementedError

    def standardise_inputs(self, inputs: Sequence[Any], *, batch_size: int = 32) -> None:
        """Set the head's fixed input means and scales to those of :meth:`features` of
        ``inputs`` under the current encoder."""

        @torch.no_grad()
        def stacked() -> torch.Tensor:
            parts = range(0, len(inputs), batch_size)
            return torch.cat([self.features(inputs[i : i + batch_size]).double() for i in parts])

        was_training = self.training
        self.eval()
        features = without_denormals(stacked, device=self.device)
        self.head.mean.copy_(features.mean(0))  # in the buffers' own precision
        self.head.scale.copy_(torch.sqrt(features.var(0, correction=0) + self.head.EPS))
        self.train(was_training)

    def merge_adapters(self) -> None:
        """Merge any LoRA adapters into the encoder's weights (a plain encoder again)."""
        from .adapters import merge_adapters

        self.encoder = merge_adapters(self.encoder)

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
        from .encoder import load_encoder
        from .loading import local_folder

        path = Path(local_folder(path, what=cls.saved_kind))
        if not (path / cls.head_config).is_file():
            raise FileNotFoundError(f"no {cls.saved_kind} at {path}")
        settings = json.loads((path / cls.head_config).read_text())
        loaded = load_encoder(path, device="cpu", precision="fp32")
        model = cls(loaded.model, loaded.tokenizer, **settings)
        state = torch.load(path / cls.head_weights, map_location="cpu", weights_only=True)
        model.head.load_state_dict(state)
        return model.to(resolve_device(device)).eval()


class HaplotypeRegressor(PooledSequenceModel):
    """Shared encoder on both haplotypes, mean-pooled, concatenated, standardised, linear.

    The head standardises its inputs: in training with the batch's means and SDs, in
    evaluation with fixed ones, set by :meth:`~PooledSequenceModel.standardise_inputs` to
    those of the training people under the trained encoder. Predictions are in the units of
    the training targets: the head predicts standardised values, rescaled with ``y_mean``
    and ``y_std``.

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

    head_weights = "regression_head.pt"
    head_config = "regression_head.json"
    saved_kind = "fine-tuned expression model"

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
        self.head = StandardisedHead(2 * int(encoder.config.hidden_size), 1, batch_statistics=True)

    def features(self, pairs: Sequence[tuple[str, str]]) -> torch.Tensor:
        """Both haplotypes' pooled vectors side by side, ``(n_people, 2 * hidden_size)``."""
        pooled = self.pool([p[0] for p in pairs] + [p[1] for p in pairs])
        return torch.cat([pooled[: len(pairs)], pooled[len(pairs) :]], dim=1)

    def forward(self, pairs: Sequence[tuple[str, str]]) -> torch.Tensor:
        """Standardised predictions ``(n_people,)`` for ``(haplotype_1, haplotype_2)`` pairs."""
        return self.head(self.features(pairs))

    def head_settings(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "y_mean": self.y_mean, "y_std": self.y_std}


class SequenceClassifier(PooledSequenceModel):
    """Encoder, mean pooling over each sequence, fixed standardisation, dropout, linear head.

    Parameters
    ----------
    encoder
        A Hugging Face base encoder returning ``last_hidden_state``.
    tokenizer
        Its tokenizer.
    max_length
        Tokens per chunk, special tokens included (long sequences are chunked).
    classes
        The label of each output, in order (numbers or strings).
    dropout
        Dropout on the pooled vector before the head (in training).
    """

    head_weights = "classification_head.pt"
    head_config = "classification_head.json"
    saved_kind = "fine-tuned sequence classifier"

    def __init__(
        self,
        encoder: nn.Module,
        tokenizer: Any,
        *,
        max_length: int,
        classes: Sequence[Any],
        dropout: float = 0.1,
    ):
        super().__init__(encoder, tokenizer, max_length=max_length)
        if len(classes) < 2:
            raise ValueError(f"a classifier needs at least two classes, got {list(classes)}")
        self.classes = [c.item() if isinstance(c, np.generic) else c for c in classes]
        self.dropout_rate = float(dropout)
        width = int(encoder.config.hidden_size)
        self.head = StandardisedHead(width, len(self.classes), dropout=self.dropout_rate)

    def features(self, sequences: Sequence[str]) -> torch.Tensor:
        """Each sequence's pooled vector, ``(n, hidden_size)``."""
        return self.pool(sequences)

    def forward(self, sequences: Sequence[str], labels: torch.Tensor | None = None) -> Any:
        """Logits ``(n, n_classes)``, and with ``labels`` (class indices) the mean
        cross-entropy, as a :class:`~transformers.modeling_outputs.SequenceClassifierOutput`."""
        from transformers.modeling_outputs import SequenceClassifierOutput

        logits = self.head(self.pool(sequences))
        loss = None if labels is None else F.cross_entropy(logits, labels.to(logits.device))
        return SequenceClassifierOutput(loss=loss, logits=logits)

    def predict_proba(self, sequences: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
        """Class probabilities ``(n, n_classes)`` (float64), in evaluation mode; sequences
        of similar length are batched together."""
        order = np.argsort([len(s) for s in sequences], kind="stable")
        out = np.empty((len(sequences), len(self.classes)), dtype=np.float64)

        @torch.inference_mode()
        def fill() -> None:
            for start in range(0, len(order), batch_size):
                picked = order[start : start + batch_size]
                logits = self([sequences[i] for i in picked]).logits.float()
                out[picked] = torch.softmax(logits, dim=-1).double().cpu().numpy()

        was_training = self.training
        self.eval()
        without_denormals(fill, device=self.device)
        self.train(was_training)
        return out

    def head_settings(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "classes": self.classes,
                "dropout": self.dropout_rate}  # fmt: skip
