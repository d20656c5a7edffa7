"""Reference genome access: bgzipped + faidx-indexed or plain FASTA, through pysam."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pysam

from .errors import InputFileError
from .files import check_bgzip, existing_file

#: Code used for bases outside a contig when a window is padded.
PAD_BASE = ord("N")


class FastaReference:
    """A reference genome opened for random access.

    Sequences come back upper-case (soft-masking is dropped) as ``uint8`` ASCII codes.
    Coordinates are 0-based, half-open ``[start, end)``.

    Parameters
    ----------
    path
        FASTA file, plain or bgzip-compressed. A missing ``.fai`` (and ``.gzi``) index is
        built next to the file when the folder is writable.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = existing_file(path, what="FASTA file")
        check_bgzip(self.path, what="FASTA", index_hint="samtools faidx")
        try:
            self._fasta = pysam.FastaFile(os.fspath(self.path))
        except (OSError, ValueError) as err:
            raise InputFileError(
                self.path,
                f"cannot open as an indexed FASTA ({err}); a compressed FASTA must be "
                "bgzip-compressed (`bgzip -d` then `bgzip`) and indexed with `samtools faidx`",
            ) from err
        self.lengths: dict[str, int] = dict(
            zip(self._fasta.references, self._fasta.lengths, strict=True)
        )

    @property
    def contigs(self) -> list[str]:
        """Contig names in file order."""
        return list(self.lengths)

    def fetch(self, chrom: str, start: int, end: int, *, pad: bool = False) -> np.ndarray:
        """Return ``[start, end)`` of ``chrom`` as upper-case ASCII codes.

        Parameters
        ----------
        chrom
            Contig name as written in this FASTA.
        start, end
            0-based, half-open coordinates.
        pad
            Fill the part of the interval outside the contig with ``N`` instead of failing.
        """
        if chrom not in self.lengths:
            raise InputFileError(self.path, f"unknown contig {chrom!r}", record=chrom)
        length = self.lengths[chrom]
        if start < 0 or end > length:
            if not pad:
                raise InputFileError(
                    self.path,
                    f"interval [{start}, {end}) runs off contig {chrom!r} of length {length}",
                    record=f"{chrom}:{start + 1}-{end}",
                )
            out = np.full(end - start, PAD_BASE, dtype=np.uint8)
            lo, hi = max(start, 0), min(end, length)
            if hi > lo:
                out[lo - start : hi - start] = self.fetch(chrom, lo, hi)
            return out
        try:
            text = self._fasta.fetch(chrom, start, end)
        except (OSError, ValueError, zlib.error) as err:
            raise InputFileError(
                self.path, f"cannot read sequence ({err})", record=f"{chrom}:{start + 1}-{end}"
            ) from err
        if len(text) != end - start:
            raise InputFileError(
                self.path,
                f"read {len(text)} bases where {end - start} were expected; "
                "the file or its index is truncated or stale",
                record=f"{chrom}:{start + 1}-{end}",
            )
        return np.frombuffer(text.upper().encode("ascii"), dtype=np.uint8).copy()

    def fetch_str(self, chrom: str, start: int, end: int, *, pad: bool = False) -> str:
        """Like :meth:`fetch`, as a string."""
        return self.fetch(chrom, start, end, pad=pad).tobytes().decode("ascii")

    def close(self) -> None:
        """Close the file handle."""
        self._fasta.close()

    def __enter__(self) -> FastaReference:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
