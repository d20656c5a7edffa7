"""The error raised for bad input files."""

from __future__ import annotations

import os


class InputFileError(ValueError):
    """A problem with an input file, naming the file, the record and the problem.

    Parameters
    ----------
    path
        The file that holds the bad record.
    problem
        What is wrong, in words.
    record
        Where in the file: a line number, a ``contig:position`` or a gene id.
    """

    def __init__(self, path: str | os.PathLike | None, problem: str, *, record: str | None = None):
        self.path = None if path is None else os.fspath(path)
        self.problem = problem
        self.record = record
        where = self.path or "<input>"
        if record is not None:
            where = f"{where}, {record}"
        super().__init__(f"{where}: {problem}")
