"""The record :func:`genlm_sc.tl.pretrain` writes next to a checkpoint."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["RECORD_FILE", "pretraining_record"]

RECORD_FILE = "genlm_pretraining.json"


def pretraining_record(model_dir: str | os.PathLike) -> dict[str, Any]:
    """What a model was pretrained on and how it scored.

    Returns
    -------
    The parsed ``genlm_pretraining.json``: ``genome_build``, ``corpus`` (every source with
    files, regions, variant recipe, people and seeds), ``eval_corpus``, ``tokenizer``,
    optimisation settings, ``metrics`` (final held-out loss, perplexity, masked-token
    accuracy, bits per token/base) and ``log_history``.
    """
    path = Path(model_dir) / RECORD_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: not a checkpoint written by gl.tl.pretrain")
    return json.loads(path.read_text())
