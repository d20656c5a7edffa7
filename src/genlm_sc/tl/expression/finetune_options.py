"""Settings of expression fine-tuning (``fit_expression(method="finetune")``), and the
training settings it shares with the fused backbone (``method="fusion"``)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any, ClassVar, Literal, Self

__all__ = ["FinetuneOptions", "TrainingOptions"]

Strategy = Literal["lora", "prune"]


@dataclass(frozen=True)
class TrainingOptions:
    """How a model is trained per gene and outer fold: the settings ``fit_expression``'s
    ``"finetune"`` (:class:`FinetuneOptions`) and ``"fusion"``
    (:class:`~genlm_sc.tl.expression.fusion_options.FusionOptions`) share. Both train with
    :class:`transformers.Trainer` (:mod:`genlm_sc.tl.training`).

    Parameters
    ----------
    epochs
        Passes over the training people of each fold.
    batch_size
        People per optimisation step (each contributes two haplotypes).
    learning_rate
        Of AdamW.
    weight_decay
        Of AdamW.
    scheduler, warmup_steps
        Learning-rate schedule (:class:`transformers.Trainer`'s ``lr_scheduler_type``:
        ``"linear"`` decay to 0 at the last step, ``"cosine"``, ``"constant"``, ...) after
        ``warmup_steps`` of linear warm-up.
    validation_fraction
        Share of each fold's training people held out as an inner validation set
        (``0``: none). With one, the model is evaluated on it every epoch (or every
        ``eval_steps`` steps) and the best evaluation's weights are kept.
    patience
        With a validation set: stop when the validation loss has not improved for this
        many evaluations (``None``: train for all ``epochs``).
    eval_steps
        Evaluate (and checkpoint) every ``eval_steps`` steps instead of every epoch.
    pairwise_weight
        ``w`` of the loss ``(1 - w) * MSE + w * pairwise``
        (:func:`~genlm_sc.tl.expression.finetune.pairwise_loss`); the Performer model
        uses 0.5.
    lora_rank, lora_alpha
        Rank and scaling of the LoRA adapters.
    target_modules
        Module names given adapters (default:
        :data:`~genlm_sc.models.adapters.LORA_TARGETS` of the model type, i.e. the
        feed-forward layers ``ffn.0``/``ffn.2`` of a genlm_conv model, ``query``/``value``
        of BERT-family models and ``to_q``/``to_v`` of Enformer and Borzoi; else every
        linear layer).
    device
        ``"auto"`` (CUDA, else MPS, else CPU) or a torch device name.
    precision
        ``"auto"``: mixed precision (bf16, or fp16 on GPUs without it) on a GPU, fp32 on
        the CPU (so CPU results do not depend on whether the CPU computes bf16);
        ``"fp32"``, ``"bf16"``, ``"fp16"`` force one.
    random_state
        Seed of the head's and adapters' initialisation, of the batch order and of the
        validation split (the same in every fold and gene).
    output_dir
        Where the fitted models are saved: one folder per gene and outer fold,
        ``output_dir/<gene>/fold_<k>``. Fold ``k``'s model produced the out-of-fold
        predictions of the people in fold ``k``. ``None``: the models are not kept.
    resume
        With ``output_dir``: each fold checkpoints to ``output_dir/<gene>/checkpoints/``
        while it trains, and a re-run resumes an interrupted fold from its last checkpoint
        (random states included; the checkpoints are removed once the fold's model is
        saved). The other settings must be those of the interrupted run.
    refit
        After the cross-validation, also fit one model on every person with a value
        (covariates regressed out on everyone) and save it as ``output_dir/<gene>/all``:
        the model to explain (:func:`genlm_sc.tl.attribute`,
        :func:`genlm_sc.tl.variant_effects`); the fold models are for honest evaluation.
        Needs ``output_dir``.
    progress
        Show a progress bar per gene and fold.
    """

    #: The keyword of ``fit_expression`` these options are given as (for messages).
    argument: ClassVar[str] = "options"

    epochs: int = 3
    batch_size: int = 16
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    scheduler: str = "linear"
    warmup_steps: int = 0
    validation_fraction: float = 0.0
    patience: int | None = None
    eval_steps: int | None = None
    pairwise_weight: float = 0.0
    lora_rank: int = 8
    lora_alpha: int = 16
    target_modules: Sequence[str] | None = None
    device: str = "auto"
    precision: str = "auto"
    random_state: int = 0
    output_dir: str | os.PathLike | None = None
    resume: bool = True
    refit: bool = False
    progress: bool = True

    @classmethod
    def parse(cls, options: Mapping[str, Any] | Self | None) -> Self:
        """Validated options from a mapping (unknown keys raise)."""
        if isinstance(options, cls):
            parsed = options
        else:
            options = dict(options or {})
            known = {f.name for f in fields(cls)}
            unknown = sorted(set(options) - known)
            if unknown:
                raise TypeError(f"unknown {cls.argument} {unknown}; known: {sorted(known)}")
            parsed = cls(**options)
        parsed._check()
        return parsed

    def _check(self) -> None:
        if not 0.0 <= self.pairwise_weight <= 1.0:
            raise ValueError("pairwise_weight must lie in [0, 1]")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError("epochs and batch_size must be positive")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValueError("validation_fraction must lie in [0, 1)")
        if self.patience is not None and (self.patience < 1 or self.validation_fraction == 0):
            raise ValueError("patience needs validation_fraction > 0 and is at least 1")
        if self.precision not in ("auto", "fp32", "bf16", "fp16"):
            raise ValueError(f"precision must be auto, fp32, bf16 or fp16, not {self.precision!r}")
        if self.refit and self.output_dir is None:
            raise ValueError("refit=True saves the model fitted on everyone: give output_dir")

    def record(self) -> dict[str, Any]:
        """The settings as plain strings and numbers (storable in ``uns``)."""
        record = asdict(self)
        record["output_dir"] = "" if self.output_dir is None else os.fspath(self.output_dir)
        record["target_modules"] = ",".join(self.target_modules or [])
        record["patience"] = -1 if self.patience is None else int(self.patience)
        record["eval_steps"] = -1 if self.eval_steps is None else int(self.eval_steps)
        return record


@dataclass(frozen=True)
class FinetuneOptions(TrainingOptions):
    """Settings of ``fit_expression(method="finetune", finetune_options={...})``: the
    pretrained language model and how it is adapted, and the training settings of
    :class:`TrainingOptions`.

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
    **training
        The fields of :class:`TrainingOptions` (``epochs``, ``batch_size``, ...). With
        ``output_dir`` each fold's model is saved in Hugging Face layout plus the head,
        loadable with :meth:`~genlm_sc.models.HaplotypeRegressor.from_pretrained` and
        usable by :func:`~genlm_sc.tl.predict`.
    """

    argument: ClassVar[str] = "finetune options"

    model: str | os.PathLike | None = None
    strategy: Strategy = "lora"
    n_layers: int | None = None

    def _check(self) -> None:
        if self.model is None:
            raise ValueError("finetune_options needs 'model': a checkpoint directory")
        if self.strategy not in ("lora", "prune"):
            raise ValueError(f"strategy must be 'lora' or 'prune', not {self.strategy!r}")
        if self.n_layers is not None and self.n_layers < 1:
            raise ValueError("n_layers must be at least 1 (or None: all)")
        super()._check()

    def record(self) -> dict[str, Any]:
        record = super().record()
        record["model"] = os.fspath(self.model)
        record["n_layers"] = -1 if self.n_layers is None else int(self.n_layers)
        return record
