"""A sequence-to-function backbone fused with the person's language-model embedding.

:class:`FusionRegressor` is the model of UKBioFormer (Enformer backbone) and UKBioZoi
(Borzoi backbone), Liu et al. 2026. It predicts one person's expression of one gene from two
branches:

``x1``, the backbone branch
    Each of the person's two haplotypes, cut to ``input_length`` bases around the window's
    centre, goes through the (depth-pruned) backbone
    (:class:`~genlm_sc.models.backbones.SequenceBackbone`); the per-bin embeddings are
    averaged over the ``center_bins`` central bins (all bins by default, as UKBioFormer's
    average pooling), standardised and mapped to one value by a linear head; the two
    haplotypes' values are combined by their mean (or sum).
``x2``, the embedding branch
    The person's language-model embedding (the features of ``fit_expression``'s embedding
    methods, e.g. the two haplotype embeddings side by side), standardised, through an
    MLP ``linear → ReLU → linear`` (512 hidden units, as UKBioFormer).

The prediction is ``σ(β) x1 + (1 − σ(β)) x2`` with a learned gate ``β``, in standardised
units (``y_mean`` and ``y_std`` give the scale of the targets). The branch standardisations
are fixed from the training people (:meth:`FusionRegressor.standardise`): before training,
and for a backbone that trains (whose embeddings are standardised per training batch
meanwhile) again after it.
The backbone stays in evaluation mode (its dropout off, its batch-normalisation statistics
as loaded) whatever is trained.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from .._devices import resolve_device
from .backbones import SequenceBackbone, build_backbone, parameter_counts
from .heads import StandardisedHead

__all__ = ["FusionRegressor", "onehot"]

Combine = Literal["mean", "sum"]
#: ASCII code → base index (A, C, G, T; either case), -1 for anything else (N: a zero row).
_CODES = np.full(256, -1, dtype=np.int64)
for _i, _base in enumerate("ACGT"):
    _CODES[ord(_base)] = _CODES[ord(_base.lower())] = _i


def onehot(sequences: Sequence[str], length: int) -> torch.Tensor:
    """``(n, length, 4)`` float32 one-hot of sequences cut or padded to ``length`` bases.

    A longer sequence keeps ``length`` bases from ``len // 2 - length // 2`` (its centre,
    where an anchor-aligned window has its anchor); a shorter one is padded with N (zero
    rows) on both sides the same way.
    """
    out = np.zeros((len(sequences), length, 4), dtype=np.float32)
    for row, sequence in enumerate(sequences):
        codes = _CODES[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]
        start = len(codes) // 2 - length // 2
        lo, hi = max(start, 0), min(start + length, len(codes))
        picked = codes[lo:hi]
        at = lo - start + np.flatnonzero(picked >= 0)
        out[row, at, picked[picked >= 0]] = 1.0
    return torch.from_numpy(out)


class FusionRegressor(nn.Module):
    """Backbone branch on both haplotypes, MLP on the embedding, gated (see module notes).

    Parameters
    ----------
    backbone
        The sequence-to-function backbone.
    embedding_width
        Width of a person's embedding features.
    input_length
        Bases of each haplotype the backbone reads (a multiple of its ``stride``).
    center_bins
        Central output bins averaged (``None``: all).
    combine
        ``"mean"`` or ``"sum"`` of the two haplotypes' values.
    hidden
        Hidden units of the embedding MLP.
    gate
        Initial ``β`` (``0``: the branches weighted equally).
    y_mean, y_std
        Scale of the targets.
    record
        Where the backbone weights came from and how it was tuned (saved with the model).
    """

    weights_file = "fusion.safetensors"
    config_file = "fusion.json"

    def __init__(
        self,
        backbone: SequenceBackbone,
        *,
        embedding_width: int,
        input_length: int,
        center_bins: int | None = None,
        combine: Combine = "mean",
        hidden: int = 512,
        gate: float = 0.0,
        y_mean: float = 0.0,
        y_std: float = 1.0,
        record: dict[str, Any] | None = None,
    ):
        super().__init__()
        if input_length < backbone.stride or input_length % backbone.stride:
            raise ValueError(
                f"input_length={input_length} must be a positive multiple of {backbone.stride} "
                f"for this {backbone.name} backbone"
            )
        bins = input_length // backbone.bin_size
        if center_bins is not None and not 1 <= center_bins <= bins:
            raise ValueError(f"center_bins={center_bins}, but {input_length} bp make {bins} bins")
        if combine not in ("mean", "sum"):
            raise ValueError(f"combine must be 'mean' or 'sum', not {combine!r}")
        self.backbone = backbone.eval()
        self.embedding_width = int(embedding_width)
        self.input_length = int(input_length)
        self.center_bins = None if center_bins is None else int(center_bins)
        self.combine = combine
        self.hidden = int(hidden)
        self.y_mean, self.y_std = float(y_mean), float(y_std)
        self.record = dict(record or {})
        self.sequence_head = StandardisedHead(backbone.channels, 1)
        self.embedding_mlp = nn.Sequential(
            StandardisedHead(self.embedding_width, self.hidden), nn.ReLU(), nn.Linear(hidden, 1)
        )
        self.gate = nn.Parameter(torch.tensor([float(gate)]))
        #: The embedding branch's mean over the training people (attribution scores)
        self.register_buffer("embedding_offset", torch.zeros(()))
        self._cache: dict[str, torch.Tensor] = {}

    @property
    def device(self) -> torch.device:
        return self.gate.device

    def train(self, mode: bool = True) -> FusionRegressor:
        super().train(mode)
        self.backbone.eval()
        return self

    # --- the backbone branch ------------------------------------------------------------

    def pooled(self, sequences: Sequence[str]) -> torch.Tensor:
        """``(n, channels)``: each sequence's backbone embedding averaged over the central
        bins. Each distinct sequence runs once; with a frozen backbone (nothing of it
        trains) results are kept by sequence and reused."""
        distinct = list(dict.fromkeys(sequences))
        frozen = not any(p.requires_grad for p in self.backbone.parameters())
        if frozen:
            todo = [s for s in distinct if s not in self._cache]
            if todo:
                with torch.no_grad():
                    for s, row in zip(todo, self._pool_onehot(self._onehot(todo)), strict=True):
                        self._cache[s] = row
            rows = torch.stack([self._cache[s] for s in distinct])
        else:
            rows = self._pool_onehot(self._onehot(distinct))
        if len(distinct) == len(sequences):
            return rows
        index = {s: i for i, s in enumerate(distinct)}
        return rows[torch.as_tensor([index[s] for s in sequences], device=rows.device)]

    def _onehot(self, sequences: Sequence[str]) -> torch.Tensor:
        return onehot(sequences, self.input_length).to(self.device)

    def _pool_onehot(self, bases: torch.Tensor) -> torch.Tensor:
        bins = self.backbone(bases.to(self.device)).float()
        if self.center_bins is not None:
            start = (bins.shape[1] - self.center_bins) // 2
            bins = bins[:, start : start + self.center_bins]
        return bins.mean(1)

    def sequence_branch(self, first: Sequence[str], second: Sequence[str]) -> torch.Tensor:
        """``x1`` ``(n,)`` of people with haplotypes ``first[i]`` and ``second[i]``."""
        values = self.sequence_head(self.pooled(list(first) + list(second)))
        total = values[: len(first)] + values[len(first) :]
        return total / 2 if self.combine == "mean" else total

    def homozygous(self, bases: torch.Tensor) -> torch.Tensor:
        """Predicted expression ``(n,)`` of people homozygous for one-hot sequences
        ``(n, input_length, 4)``, their embedding branch at its training mean: the score
        that attributions and variant effects explain (differentiable in ``bases``)."""
        value = self.sequence_head(self._pool_onehot(bases))
        x1 = value if self.combine == "mean" else 2 * value
        beta = torch.sigmoid(self.gate)
        out = beta * x1 + (1 - beta) * self.embedding_offset
        return self.y_mean + self.y_std * out

    # --- both branches ------------------------------------------------------------------

    def embedding_branch(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``x2`` ``(n,)`` of people's embedding features ``(n, embedding_width)``."""
        return self.embedding_mlp(embeddings.to(self.device).float()).squeeze(-1)

    def forward(self, people: Sequence[tuple[str, str, Any]]) -> torch.Tensor:
        """Standardised predictions ``(n,)`` of people given as
        ``(haplotype_1, haplotype_2, embedding features)``."""
        x1 = self.sequence_branch([p[0] for p in people], [p[1] for p in people])
        x2 = self.embedding_branch(_stack([p[2] for p in people]))
        beta = torch.sigmoid(self.gate)
        return beta * x1 + (1 - beta) * x2

    def predict(
        self, people: Sequence[tuple[str, str, Any]], *, batch_size: int = 32
    ) -> np.ndarray:
        """``(n,)`` float64 predictions in the units of the targets (evaluation mode)."""
        was_training = self.training
        self.eval()
        out = []
        with torch.inference_mode():
            for start in range(0, len(people), batch_size):
                out.append(self(people[start : start + batch_size]).double().cpu().numpy())
        self.train(was_training)
        standardised = np.concatenate(out) if out else np.empty(0)
        return self.y_mean + self.y_std * standardised

    def standardise(
        self,
        people: Sequence[tuple[str, str, Any]],
        *,
        embeddings: bool = True,
        batch_size: int = 32,
    ) -> None:
        """Fix the branches' input means and scales to those of these (training) people:
        of the pooled backbone embeddings of their haplotypes (under the current backbone)
        and, with ``embeddings``, of their embedding features."""
        haplotypes = [p[0] for p in people] + [p[1] for p in people]
        was_training = self.training
        self.eval()
        with torch.no_grad():
            pooled = torch.cat([self.pooled(haplotypes[i : i + batch_size]).double()
                                for i in range(0, len(haplotypes), batch_size)])  # fmt: skip
        self.train(was_training)
        _fix(self.sequence_head, pooled)
        if embeddings:
            _fix(self.embedding_mlp[0], _stack([p[2] for p in people]).double().to(self.device))

    def set_embedding_offset(self, people: Sequence[tuple[str, str, Any]]) -> None:
        """Record the embedding branch's mean over these (training) people."""
        with torch.no_grad():
            x2 = self.embedding_branch(_stack([p[2] for p in people]))
        self.embedding_offset.fill_(float(x2.double().mean()))

    def set_tuning(
        self,
        tuning: Literal["head", "lora", "full"],
        *,
        lora_rank: int = 8,
        lora_alpha: int = 16,
        target_modules: Sequence[str] | None = None,
    ) -> None:
        """Choose what trains: the heads and the gate always; with ``"head"`` nothing of the
        backbone, with ``"lora"`` LoRA adapters on its linear layers
        (:func:`~genlm_sc.models.adapters.add_lora`; default targets ``to_q``/``to_v`` of
        the attention), with ``"full"`` all of it. While the backbone trains, its pooled
        embeddings are standardised with each training batch's own statistics (they move
        as it trains); :meth:`standardise` fixes them again afterwards."""
        from .adapters import add_lora

        if tuning not in ("head", "lora", "full"):
            raise ValueError(f"tuning must be 'head', 'lora' or 'full', not {tuning!r}")
        self.requires_grad_(True)
        self.sequence_head.batch_statistics = tuning != "head"
        if tuning == "head":
            self.backbone.requires_grad_(False)
        elif tuning == "lora":
            self.backbone.model = add_lora(
                self.backbone.model, rank=lora_rank, alpha=lora_alpha, target_modules=target_modules
            )
        self._cache.clear()

    def merge_adapters(self) -> None:
        """Merge any LoRA adapters into the backbone's weights (a plain backbone again)."""
        from .adapters import merge_adapters

        self.backbone.model = merge_adapters(self.backbone.model)
        self._cache.clear()

    def parameter_counts(self) -> dict[str, int]:
        """Trainable and frozen parameters, and the parameters of each part."""
        counts = parameter_counts(self)
        for part in ("backbone", "sequence_head", "embedding_mlp"):
            counts[part] = sum(parameter_counts(getattr(self, part)).values())
        counts["gate"] = 1
        return counts

    # --- save / load ------------------------------------------------------------------

    def settings(self) -> dict[str, Any]:
        """Everything needed to rebuild the model (written to ``fusion.json``)."""
        config = self.backbone.config.to_dict()
        for key in ("transformers_version", "architectures", "dtype", "torch_dtype"):
            config.pop(key, None)
        return {
            "backbone": self.backbone.name, "backbone_config": config,
            "embedding_width": self.embedding_width, "input_length": self.input_length,
            "center_bins": self.center_bins, "combine": self.combine, "hidden": self.hidden,
            "y_mean": self.y_mean, "y_std": self.y_std, "record": self.record,
        }  # fmt: skip

    def save_pretrained(self, path: str | os.PathLike) -> Path:
        """Save the settings (JSON) and every weight (safetensors) to the folder ``path``."""
        from safetensors.torch import save_file

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / self.config_file).write_text(json.dumps(self.settings(), indent=2))
        weights = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
        save_file(weights, path / self.weights_file, metadata={"format": "pt"})
        return path

    @classmethod
    def saved_in(cls, path: str | os.PathLike) -> bool:
        """Whether the folder ``path`` holds a model saved by :meth:`save_pretrained`."""
        return (Path(path) / cls.config_file).is_file()

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike, *, device: str = "auto") -> FusionRegressor:
        """Load a model saved by :meth:`save_pretrained` (in evaluation mode, nothing
        trainable: :meth:`set_tuning` chooses what trains)."""
        from safetensors.torch import load_file

        from .backbones import load_state
        from .loading import local_folder

        path = Path(local_folder(path, what="fused expression model"))
        if not (path / cls.config_file).is_file():
            raise FileNotFoundError(f"no fused expression model at {path} (no {cls.config_file})")
        settings = json.loads((path / cls.config_file).read_text())
        backbone, _ = build_backbone(
            settings.pop("backbone"), weights=None, config=settings.pop("backbone_config")
        )
        model = cls(backbone, **settings)
        load_state(model, load_file(path / cls.weights_file), source=str(path))
        return model.requires_grad_(False).to(resolve_device(device)).eval()


def _stack(rows: Sequence[Any]) -> torch.Tensor:
    return torch.as_tensor(np.stack([np.asarray(r, dtype=np.float32) for r in rows]))


def _fix(head: StandardisedHead, features: torch.Tensor) -> None:
    head.mean.copy_(features.mean(0).float())
    head.scale.copy_(torch.sqrt(features.var(0, correction=0) + head.EPS).float())
