"""Package-wide settings in scanpy's style: ``gl.settings.verbosity = 2``.

Nothing here imports PyTorch, transformers or scanpy: the settings are read by every
floor of the package (and by the command line) before any model is loaded.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Iterator
from typing import Any

__all__ = ["Settings", "settings", "show_progress"]

#: scanpy's verbosity levels (0–3) and their names → logging levels of the ``genlm_sc`` logger.
VERBOSITY = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO,
             "debug": logging.DEBUG}  # fmt: skip
_LEVEL_NAMES = list(VERBOSITY)
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEFAULTS: dict[str, Any] = {"verbosity": 1, "progress": None, "n_jobs": 1, "device": "auto"}


class _Fallback(logging.StreamHandler):
    """Prints the package's log records to stderr while the application has configured no
    logging of its own (then the records reach the application's handlers instead)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if not logging.getLogger().handlers:
            self.stream = sys.stderr  # the current one (tests and notebooks replace it)
            super().emit(record)


class Settings:
    """Settings read by every function of the package: ``gl.settings``.

    Attributes
    ----------
    verbosity
        How much the ``genlm_sc`` logger prints: ``0`` or ``"error"``, ``1`` or
        ``"warning"`` (default), ``2`` or ``"info"``, ``3`` or ``"debug"``, as in scanpy.
        Reads back as the int.
    progress
        ``None`` (default): each function decides by its own ``progress`` argument and
        default. ``True`` or ``False`` turns every progress bar (tqdm bars and the
        Trainer's) on or off, whatever a function's ``progress`` argument says.
    n_jobs
        Worker processes or threads for the functions that can use several (the
        scikit-learn estimators of :func:`genlm_sc.tl.fit_expression`; on the command
        line also the worker processes of ``haplotypes``, ``embed``, ``fit-expression``,
        ``attribute`` and ``variant-effects``): a positive number, or ``-1`` for every
        CPU. Default ``1``. In Python, worker processes are asked for per call
        (``n_jobs=`` or ``client=``), never from this setting: a function given a model
        object would otherwise be refused.
    device
        The device used where a function is given ``device="auto"``: ``"auto"`` (default:
        CUDA when present, else MPS, else the CPU), ``"cpu"``, ``"cuda"``, ``"cuda:1"``,
        ``"mps"``.
    """

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self.reset()

    # verbosity ------------------------------------------------------------------------
    @property
    def verbosity(self) -> int:
        return self._values["verbosity"]

    @verbosity.setter
    def verbosity(self, value: int | str) -> None:
        if isinstance(value, str) and value.lower() in VERBOSITY:
            level = _LEVEL_NAMES.index(value.lower())
        elif isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 3:
            level = value
        else:
            raise ValueError(
                f"settings.verbosity must be 0-3 or one of {_LEVEL_NAMES}, not {value!r}"
            )
        self._values["verbosity"] = level
        logger = logging.getLogger("genlm_sc")
        logger.setLevel(VERBOSITY[_LEVEL_NAMES[level]])
        if not any(isinstance(h, _Fallback) for h in logger.handlers):
            logger.addHandler(_Fallback())

    # progress -------------------------------------------------------------------------
    @property
    def progress(self) -> bool | None:
        return self._values["progress"]

    @progress.setter
    def progress(self, value: bool | None) -> None:
        if value is not None and not isinstance(value, bool):
            raise ValueError(f"settings.progress must be None, True or False, not {value!r}")
        self._values["progress"] = value

    # n_jobs ---------------------------------------------------------------------------
    @property
    def n_jobs(self) -> int:
        return self._values["n_jobs"]

    @n_jobs.setter
    def n_jobs(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not (value >= 1 or value == -1):
            raise ValueError(f"settings.n_jobs must be a positive int or -1, not {value!r}")
        self._values["n_jobs"] = value

    @property
    def n_workers(self) -> int:
        """``n_jobs`` as a number of workers (``-1``: the CPUs this process may use)."""
        if self.n_jobs != -1:
            return self.n_jobs
        affinity = getattr(os, "sched_getaffinity", None)
        return len(affinity(0)) if affinity is not None else os.cpu_count() or 1

    # device ---------------------------------------------------------------------------
    @property
    def device(self) -> str:
        return self._values["device"]

    @device.setter
    def device(self, value: str) -> None:
        if not isinstance(value, str) or not _DEVICE.match(value):
            raise ValueError(
                f"settings.device must be 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', not {value!r}"
            )
        self._values["device"] = value

    # all of them ----------------------------------------------------------------------
    def reset(self) -> None:
        """Put every setting back to its default."""
        for name, value in DEFAULTS.items():
            setattr(self, name, value)

    @contextlib.contextmanager
    def override(self, **values: Any) -> Iterator[Settings]:
        """Change some settings inside a ``with`` block only."""
        unknown = sorted(set(values) - set(DEFAULTS))
        if unknown:
            raise ValueError(f"unknown settings {unknown}; known: {sorted(DEFAULTS)}")
        before = {name: getattr(self, name) for name in values}
        try:
            for name, value in values.items():
                setattr(self, name, value)
            yield self
        finally:
            for name, value in before.items():
                setattr(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_") and name not in DEFAULTS:
            raise AttributeError(f"no setting {name!r}; known: {sorted(DEFAULTS)}")
        super().__setattr__(name, value)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in DEFAULTS)
        return f"genlm_sc settings({shown})"


#: The package's settings (``gl.settings``).
settings = Settings()


def show_progress(progress: bool | None, default: bool = True) -> bool:
    """Whether to show a progress bar: ``settings.progress`` when set, else the function's
    ``progress`` argument, else its ``default``."""
    if settings.progress is not None:
        return settings.progress
    return default if progress is None else bool(progress)
