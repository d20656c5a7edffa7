"""The scorer of a model for ``gl.tl.attribute`` and ``gl.tl.variant_effects``: which
:mod:`~genlm_sc.tl.attribution.scorers` class (or
:class:`~genlm_sc.tl.attribution.backbone_scorer.BackboneScorer`) a model and a target
take, loaded from a folder when given one."""

from __future__ import annotations

import os
from typing import Any

from ...models.chunking import context_length
from ...models.heads import HaplotypeRegressor, SequenceClassifier
from .scorers import ChunkScorer, ClassifierScorer, ExpressionScorer, LikelihoodScorer

__all__ = ["load_masked_lm", "load_scorer"]


def load_scorer(model: Any, *, target: str, device: str = "auto", label: Any = None) -> Any:
    """A scorer for ``target="expression"`` (a fine-tuned regressor or a fused model: in
    memory, or a folder saved by it), ``target="classification"`` (a sequence classifier,
    in memory or its folder; ``label`` the class scored) or ``target="mlm"`` (a masked-LM
    checkpoint folder, or a ``(model, tokenizer)`` pair)."""
    from ...models.fusion import FusionRegressor
    from .backbone_scorer import BackboneScorer

    if isinstance(model, ChunkScorer | BackboneScorer):
        return model
    if target == "expression":
        if isinstance(model, str | os.PathLike) and FusionRegressor.saved_in(model):
            model = FusionRegressor.from_pretrained(model, device=device)
        if isinstance(model, FusionRegressor):
            return BackboneScorer(model, device=device)
        if not isinstance(model, HaplotypeRegressor):
            model = HaplotypeRegressor.from_pretrained(model, device=device)
        return ExpressionScorer(model, device=device)
    if target == "classification":
        if not isinstance(model, SequenceClassifier):
            model = SequenceClassifier.from_pretrained(model, device=device)
        return ClassifierScorer(model, label=label, device=device)
    if label is not None:
        raise ValueError(f"label= applies to target='classification', not {target!r}")
    if target == "mlm":
        if isinstance(model, str | os.PathLike):
            network, tokenizer = load_masked_lm(os.fspath(model))
        elif isinstance(model, tuple) and len(model) == 2:
            network, tokenizer = model
        else:
            raise TypeError("target='mlm' needs a masked-LM folder or a (model, tokenizer) pair")
        return LikelihoodScorer(
            network, tokenizer, max_length=context_length(network, tokenizer), device=device
        )
    raise ValueError(f"target must be 'expression', 'classification' or 'mlm', not {target!r}")


def load_masked_lm(path: str) -> tuple[Any, Any]:
    """A masked-LM checkpoint folder's network and tokenizer, refused when the weights or
    the tokenizer would load incompletely."""
    from transformers import AutoModelForMaskedLM

    from ..._quiet import quiet_transformers
    from ...models.loading import (
        check_tokenizer,
        check_vocabulary,
        from_local,
        require_tokenizer,
    )
    from ...models.tokenization import load_tokenizer

    with quiet_transformers():
        network = from_local(AutoModelForMaskedLM, path, strict=True)
    require_tokenizer(path)
    tokenizer = load_tokenizer(path)
    check_tokenizer(tokenizer, path)
    check_vocabulary(network, tokenizer, path)
    return network, tokenizer
