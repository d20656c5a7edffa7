"""What every :class:`transformers.Trainer` run of the tools shares.

Pretraining (:func:`genlm_sc.tl.pretrain`) and classification
(:func:`genlm_sc.tl.fit_classifier`) train with :class:`transformers.Trainer`; the settings
that must agree between them (seeds, precision, device, no reporting, inputs passed through
to the model as given), the time budget, the quieting of the Trainer's notes and the search
for the last checkpoint are defined here once.
"""

from __future__ import annotations

import contextlib
import os
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

__all__ = ["TimeBudget", "last_checkpoint", "quiet_trainer", "run_settings"]


def run_settings(
    *, random_state: int, precision: str, device: str, progress: bool
) -> dict[str, Any]:
    """``TrainingArguments`` every Trainer run here shares: seeds, precision, device, no
    reporting or worker processes, model inputs passed through as given."""
    return {
        "seed": random_state, "data_seed": random_state, "bf16": precision == "bf16",
        "fp16": precision == "fp16", "use_cpu": device == "cpu", "report_to": [],
        "disable_tqdm": not progress, "remove_unused_columns": False,
        "dataloader_num_workers": 0,
    }  # fmt: skip


class TimeBudget(TrainerCallback):
    """Stops training (after one more evaluation and save) once ``seconds`` have passed.

    Parameters
    ----------
    seconds
        Seconds of training; ``None``: no limit.
    """

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self.hit = False
        self.start = 0.0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        if self.seconds is None or time.perf_counter() - self.start < self.seconds:
            return
        self.hit = True
        control.should_training_stop = True
        if args.eval_strategy != "no":
            control.should_evaluate = True
            control.should_save = True


@contextlib.contextmanager
def quiet_trainer() -> Iterator[None]:
    """Silence the Trainer's notes about a model that is not a ``PreTrainedModel``."""
    from transformers.utils import logging

    verbosity = logging.get_verbosity()
    logging.set_verbosity_error()
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing")
            yield
    finally:
        logging.set_verbosity(verbosity)


def last_checkpoint(folder: Path) -> str | None:
    """The newest ``checkpoint-<step>`` folder in ``folder`` (``None``: none there)."""
    from transformers.trainer_utils import get_last_checkpoint

    if not folder.is_dir():
        return None
    return get_last_checkpoint(os.fspath(folder))
