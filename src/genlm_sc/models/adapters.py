"""Ways to adapt a pretrained encoder before fine-tuning: depth pruning and LoRA adapters.

``prune_layers``
    Keep only the first ``n_layers`` blocks (as in UKBioFormer); every remaining weight,
    embeddings included, is trained.
``add_lora``
    Low-rank adapters (:mod:`peft` LoRA) on the encoder's linear layers; the pretrained
    weights stay frozen and only the adapters (and the head put on top) are trained. After
    training the adapters are merged into the weights (:func:`merge_adapters`), so a saved
    fine-tuned model is a plain encoder that loads without peft.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from torch import nn

__all__ = ["LORA_TARGETS", "adapt_encoder", "add_lora", "merge_adapters", "prune_layers"]

#: LoRA target modules per ``model_type`` (other models: every linear layer).
LORA_TARGETS: dict[str, list[str]] = {
    "genlm_conv": ["ffn.0", "ffn.2"],
    "bert": ["query", "value"],
    "esm": ["query", "value"],
    "roberta": ["query", "value"],
    "enformer": ["to_q", "to_v"],
    "borzoi": ["to_q", "to_v"],
}


def prune_layers(encoder: nn.Module, n_layers: int) -> None:
    """Keep the first ``n_layers`` blocks of ``encoder`` (in place), config updated."""
    from .conv_lm import GenlmConvModel

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


def add_lora(
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


def adapt_encoder(
    encoder: nn.Module,
    *,
    lora: bool,
    n_layers: int | None = None,
    lora_rank: int = 8,
    lora_alpha: int = 16,
    target_modules: Sequence[str] | None = None,
) -> nn.Module:
    """``encoder`` (modified in place where it can be) ready for fine-tuning.

    The first ``n_layers`` blocks are kept when given (``None``: all); then either LoRA
    adapters are added (``lora=True``, the rest frozen) or every weight is made trainable.
    """
    encoder = encoder.float()
    if n_layers is not None:
        prune_layers(encoder, n_layers)
    if lora:
        return add_lora(encoder, rank=lora_rank, alpha=lora_alpha, target_modules=target_modules)
    encoder.requires_grad_(True)
    return encoder


def merge_adapters(encoder: nn.Module) -> nn.Module:
    """The plain encoder with any LoRA adapters merged into its weights."""
    if hasattr(encoder, "merge_and_unload"):
        return encoder.merge_and_unload()
    return encoder
