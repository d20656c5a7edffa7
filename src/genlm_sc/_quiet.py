"""Keep transformers' own progress bars and notes out of our output when asked."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from ._settings import settings


@contextlib.contextmanager
def quiet_transformers(quiet: bool = True, *, errors_only: bool = False) -> Iterator[None]:
    """Hide transformers' progress bars (loading, saving weights) while ``quiet``.

    With ``errors_only``, also its warnings and notes (e.g. about the unused masked-LM head
    when a checkpoint is loaded as a plain encoder).
    """
    from transformers.utils import logging

    if not quiet and settings.progress is not False:
        yield
        return
    verbosity = logging.get_verbosity()
    if errors_only:
        logging.set_verbosity_error()
    logging.disable_progress_bar()
    try:
        yield
    finally:
        logging.set_verbosity(verbosity)
        logging.enable_progress_bar()
