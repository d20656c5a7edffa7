"""The one training stack: what every :class:`transformers.Trainer` run of the tools shares.

Pretraining (:func:`genlm_sc.tl.pretrain`), classification
(:func:`genlm_sc.tl.fit_classifier`) and expression fine-tuning
(``fit_expression(method="finetune")``) all train with :class:`transformers.Trainer`.
:func:`training_arguments` builds their arguments in one place: the optimisation (AdamW,
a learning-rate schedule, gradient clipping), evaluation and checkpointing, keeping the
best checkpoint, and the settings that must agree between them (seeds, precision, device,
no reporting, inputs passed through to the model as given). The time budget, the quieting
of the Trainer's notes and the search for the last checkpoint are defined here too.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from .._distributed import (
    barrier,
    is_main_process,
    main_process_writes,
    shared_value,
    world_size,
)  # fmt: skip
from .._settings import show_progress

__all__ = [
    "TimeBudget",
    "last_checkpoint",
    "quiet_progress",
    "quiet_trainer",
    "resume_point",
    "run_settings",
    "scratch_folder",
    "training_arguments",
]


def run_settings(
    *, random_state: int, precision: str, device: str, progress: bool
) -> dict[str, Any]:
    """``TrainingArguments`` every Trainer run here shares: seeds, precision, device, no
    reporting or worker processes, model inputs passed through as given."""
    return {
        "seed": random_state, "data_seed": random_state, "bf16": precision == "bf16",
        "fp16": precision == "fp16", "use_cpu": device == "cpu", "report_to": [],
        "disable_tqdm": not show_progress(progress), "remove_unused_columns": False,
        "dataloader_num_workers": 0,
    }  # fmt: skip


def training_arguments(
    output_dir: str | os.PathLike,
    *,
    batch_size: int,
    learning_rate: float,
    random_state: int,
    precision: str,
    device: str,
    progress: bool,
    epochs: float = 1.0,
    max_steps: int | None = None,
    weight_decay: float = 0.0,
    warmup_steps: int = 0,
    scheduler: str = "linear",
    max_grad_norm: float = 1.0,
    evaluate: bool = False,
    eval_steps: int | None = None,
    eval_batch_size: int | None = None,
    save: bool = True,
    save_steps: int | None = None,
    save_total_limit: int | None = 1,
    save_only_model: bool = False,
    best_metric: str | None = None,
    greater_is_better: bool | None = None,
    logging_steps: int | None = None,
    **extra: Any,
):
    """:class:`transformers.TrainingArguments` of a training run of the tools.

    Parameters
    ----------
    output_dir
        Where checkpoints go.
    batch_size, learning_rate, weight_decay, warmup_steps, scheduler, max_grad_norm
        AdamW with ``warmup_steps`` of linear warm-up, then the ``scheduler``
        (``"linear"``, ``"cosine"``, ``"constant"``, ...), gradients clipped to
        ``max_grad_norm``.
    epochs, max_steps
        Length of training (``max_steps`` overrides ``epochs``).
    random_state, precision, device, progress
        As in :func:`run_settings`.
    evaluate
        Evaluate on the evaluation set every ``eval_steps`` steps (``None``: every epoch).
    eval_batch_size
        Default: twice ``batch_size``.
    save, save_steps, save_total_limit, save_only_model
        Checkpoints (at every evaluation, or every ``save_steps`` steps, else every epoch);
        the newest ``save_total_limit`` are kept; ``save_only_model`` leaves out the
        optimiser and random states (no resuming).
    best_metric, greater_is_better
        With ``evaluate``: keep the checkpoint with the best evaluation metric and load it
        at the end.
    logging_steps
        Default: ``eval_steps``, else 50.
    **extra
        Further :class:`~transformers.TrainingArguments`.
    """
    from transformers import TrainingArguments

    per = "epoch" if eval_steps is None else "steps"
    evaluation = per if evaluate else "no"
    saving = (
        "no" if not save else (evaluation if evaluate else ("steps" if save_steps else "epoch"))
    )
    keep_best = evaluate and save and best_metric is not None
    return TrainingArguments(
        output_dir=os.fspath(output_dir),
        max_steps=-1 if max_steps is None else int(max_steps),
        num_train_epochs=float(epochs),
        per_device_train_batch_size=batch_size,
        per_device_eval_batch_size=eval_batch_size or 2 * batch_size,
        learning_rate=learning_rate,
        weight_decay=weight_decay,
        warmup_steps=warmup_steps,
        lr_scheduler_type=scheduler,
        max_grad_norm=max_grad_norm,
        eval_strategy=evaluation,
        eval_steps=eval_steps if evaluate else None,
        save_strategy=saving,
        save_steps=save_steps or eval_steps,
        save_total_limit=save_total_limit,
        save_only_model=save_only_model,
        load_best_model_at_end=keep_best,
        metric_for_best_model=best_metric if keep_best else None,
        greater_is_better=greater_is_better if keep_best else None,
        logging_steps=logging_steps or eval_steps or 50,
        **run_settings(random_state=random_state, precision=precision, device=device,
                       progress=progress),
        **extra,
    )  # fmt: skip


def quiet_progress(trainer: Any, progress: bool) -> Any:
    """Without ``progress``, the Trainer prints no logs (its progress bar is off already)."""
    if not show_progress(progress):
        from transformers import PrinterCallback

        trainer.remove_callback(PrinterCallback)
    return trainer


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


@contextlib.contextmanager
def scratch_folder(prefix: str) -> Iterator[Path]:
    """A temporary folder for checkpoints, removed afterwards; with several processes
    (``torchrun``) the main process's, shared by all (the Trainer reads its best checkpoint
    back on every process, so on several machines it must be on a shared file system)."""
    import tempfile

    made = tempfile.TemporaryDirectory(prefix=prefix) if is_main_process() else None
    try:
        yield Path(shared_value(made.name if made is not None else ""))
    finally:
        barrier()  # no process reads from it any more
        if made is not None:
            made.cleanup()


#: The settings of the run that writes a folder of checkpoints.
RUN_FILE = "genlm_run.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def last_checkpoint(folder: Path) -> str | None:
    """The newest complete ``checkpoint-<step>`` folder in ``folder`` (``None``: none).

    A checkpoint is complete once the Trainer has written its state (``trainer_state.json``,
    written last) and the optimiser and random states; a half-written newest one, left by a
    run killed while saving, is skipped with a warning.
    """
    if not folder.is_dir():
        return None
    steps = sorted(
        (int(m.group(1)), p) for p in folder.iterdir() if (m := _CHECKPOINT.match(p.name))
    )
    for _, path in reversed(steps):
        if _complete(path):
            return os.fspath(path)
        if not is_main_process():  # said once, by the main process
            continue
        warnings.warn(
            f"{path} is incomplete (a run stopped while saving it); resuming from an earlier "
            "checkpoint",
            UserWarning,
            stacklevel=2,
        )
    return None


def _complete(path: Path) -> bool:
    try:
        json.loads((path / "trainer_state.json").read_text())
    except (OSError, ValueError):
        return False
    return (path / "optimizer.pt").is_file() and any(path.glob("rng_state*.pth"))


def resume_point(folder: Path, settings: dict[str, Any], *, resume: bool) -> str | None:
    """Where a run that writes checkpoints to ``folder`` starts from.

    Parameters
    ----------
    folder
        The run's checkpoint folder.
    settings
        Everything that determines the run's result (JSON-ready); recorded in
        ``folder/genlm_run.json``.
    resume
        Continue from the newest complete checkpoint. It is refused, naming what changed,
        when the recorded settings differ (the number of processes of a ``torchrun``
        run included); ``resume=False`` starts afresh and removes the old run's
        checkpoints.

    Returns
    -------
    The checkpoint to pass to ``Trainer.train(resume_from_checkpoint=...)``, or ``None``.
    With several processes (``torchrun``) each finds the same checkpoint; only the main
    process writes the folder, and the others wait until it has.
    """
    settings = json.loads(json.dumps(settings, default=str))
    if world_size() > 1:  # a checkpoint resumes with as many processes as wrote it
        settings["processes"] = world_size()
    recorded_file = folder / RUN_FILE
    checkpoint = last_checkpoint(folder) if resume else None
    if checkpoint is not None and recorded_file.is_file():
        recorded = json.loads(recorded_file.read_text())
        changed = sorted(k for k in settings.keys() | recorded.keys()
                         if settings.get(k) != recorded.get(k))  # fmt: skip
        if changed:
            shown = "; ".join(f"{k}: {recorded.get(k)!r} -> {settings.get(k)!r}" for k in changed)
            raise ValueError(
                f"{folder} holds checkpoints of a run with other settings ({shown}); resuming "
                "would mix the two. Pass resume=False to start afresh there (its checkpoints "
                "are removed), or use another folder"
            )
    barrier()  # every process has looked before the main process changes the folder

    def write() -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if checkpoint is None:
            for path in folder.iterdir():
                if _CHECKPOINT.match(path.name):
                    shutil.rmtree(path)
        recorded_file.write_text(json.dumps(settings, indent=2))

    main_process_writes(write)
    return checkpoint
