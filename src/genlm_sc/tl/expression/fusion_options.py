"""Settings of the fused backbone (``fit_expression(method="fusion")``)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from .finetune_options import TrainingOptions

__all__ = ["FusionOptions"]

#: The input length of Performer, and here the default: 384 bins of 128 bp.
DEFAULT_INPUT_LENGTH = 49_152


@dataclass(frozen=True)
class FusionOptions(TrainingOptions):
    """Settings of ``fit_expression(method="fusion", fusion_options={...})``: the backbone,
    its input, how it is tuned, and the training settings of
    :class:`~genlm_sc.tl.expression.finetune_options.TrainingOptions`.

    Parameters
    ----------
    backbone
        ``"enformer"`` (UKBioFormer) or ``"borzoi"`` (UKBioZoi); required.
    weights
        The backbone's weights (required): a folder in the packages' ``save_pretrained``
        layout, a state-dict file (``.safetensors``, ``.pt``), or ``"random"`` for random
        weights (for tests; no prediction from them means anything). See
        :func:`~genlm_sc.models.backbones.build_backbone`.
    config
        Architecture settings over the package's defaults (the published models), e.g.
        ``{"dim": 48, "depth": 2, "heads": 2}``; not with a weights folder (its
        ``config.json`` is used).
    n_blocks
        Transformer blocks kept (the first ones; ``None``: all). UKBioFormer keeps one.
    tuning
        What trains besides the two heads and the gate: ``"head"`` nothing of the backbone
        (its outputs are computed once per distinct haplotype and reused), ``"lora"`` LoRA
        adapters on its attention (``lora_rank``, ``lora_alpha``, ``target_modules``;
        merged into the weights after training), ``"full"`` all of it (UKBioFormer's
        pruned, fine-tuned Enformer).
    input_length
        Bases of each haplotype the backbone reads, cut around the window's anchor (the
        TSS of a default panel) through indels
        (:func:`genlm_sc.get.fixed_length_haplotypes`); a multiple of 128. The gene
        windows must be at least this wide. Default 49,152 (384 bins of 128 bp), the input
        of the Performer model; UKBioFormer's released code reads 100,000 bp (the nearest
        multiple of 128 is 100,096); the published Enformer reads 196,608 and Borzoi
        524,288.
    center_bins
        Central output bins averaged (``None``: all of them, as UKBioFormer does). Bins are
        ``2 ** num_downsamples`` bp for Enformer (128 published) and 32 bp for Borzoi.
    combine
        ``"mean"`` or ``"sum"`` of the two haplotypes' backbone values.
    hidden
        Hidden units of the MLP on the language-model embedding (UKBioFormer: 512).
    **training
        The fields of :class:`~genlm_sc.tl.expression.finetune_options.TrainingOptions`.
        UKBioFormer trained with MSE (``pairwise_weight=0``), Adam at a learning rate of
        5e-6 for 100 epochs, batches of 8.
    """

    argument: ClassVar[str] = "fusion options"

    backbone: Literal["enformer", "borzoi"] | None = None
    weights: str | os.PathLike | None = None
    config: Mapping[str, Any] | None = None
    n_blocks: int | None = 1
    tuning: Literal["head", "lora", "full"] = "head"
    input_length: int = DEFAULT_INPUT_LENGTH
    center_bins: int | None = None
    combine: Literal["mean", "sum"] = "mean"
    hidden: int = 512

    def _check(self) -> None:
        from ...models.backbones import BACKBONES

        if self.backbone not in BACKBONES:
            raise ValueError(f"fusion_options needs 'backbone': one of {BACKBONES}")
        if self.weights is None:
            raise ValueError(
                "fusion_options needs 'weights': the backbone's weights (a save_pretrained "
                "folder or a state-dict file), or 'random' for random weights"
            )
        if self.tuning not in ("head", "lora", "full"):
            raise ValueError(f"tuning must be 'head', 'lora' or 'full', not {self.tuning!r}")
        if self.combine not in ("mean", "sum"):
            raise ValueError(f"combine must be 'mean' or 'sum', not {self.combine!r}")
        if self.n_blocks is not None and self.n_blocks < 1:
            raise ValueError("n_blocks must be at least 1 (or None: all)")
        if self.input_length < 1 or self.hidden < 1:
            raise ValueError("input_length and hidden must be positive")
        super()._check()

    @property
    def random_weights(self) -> bool:
        return os.fspath(self.weights) == "random"

    def record(self) -> dict[str, Any]:
        record = super().record()
        record["weights"] = os.fspath(self.weights)
        record["config"] = json.dumps(dict(self.config or {}), sort_keys=True)
        record["n_blocks"] = -1 if self.n_blocks is None else int(self.n_blocks)
        record["center_bins"] = -1 if self.center_bins is None else int(self.center_bins)
        return record
