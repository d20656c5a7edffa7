"""Errors about cohort stores: each names the store, the array or attribute, and the fix."""

from __future__ import annotations

import os


class StoreError(ValueError):
    """A problem with a cohort store on disk.

    Parameters
    ----------
    path
        The store (or the path a store was to be written to).
    problem
        What is wrong and what to do about it, in words.
    record
        Where in the store: an array, a chunk or an attribute.
    """

    def __init__(self, path: str | os.PathLike, problem: str, *, record: str | None = None):
        self.path = os.fspath(path)
        self.problem = problem
        self.record = record
        where = self.path if record is None else f"{self.path}, {record}"
        super().__init__(f"{where}: {problem}")


class StoreTargetError(StoreError):
    """Refusal to write a store onto a path that holds something else."""


class CorruptStoreError(StoreError):
    """A store whose content does not match what was written (damaged or edited)."""
