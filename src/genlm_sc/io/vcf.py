"""Genotypes from VCF/BCF files (many samples) through cyvcf2.

Positions are returned 0-based (``POS - 1``). Alleles are integer indices into
``[REF, *ALT]``; ``-1`` marks a missing allele (``.``) and a haploid call (chrX or chrY of
males, say) has :data:`ABSENT` as its second allele.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import re
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path

import cyvcf2
import numpy as np

from .errors import InputFileError
from .files import check_bgzip, existing_file, is_gzip
from .samples import select_samples
from .variants import (  # noqa: F401  (re-exported: other modules import them from here)
    ABSENT,
    IUPAC_BASES,
    VariantBlock,
    check_allele_indices,
    check_bases,
    info_values,
    is_symbolic_allele,
    passed_filters,
    r2_field,
)

_HEADER_FIELD = re.compile(r'([A-Za-z_]+)=("[^"]*"|[^,]*)')


def sort_and_index_hint(path: Path) -> str:
    """The commands that sort, compress and index a VCF/BCF like ``path``, for messages."""
    bcf = path.suffix == ".bcf"
    stem = path.name
    for suffix in (".gz", ".bgz", ".vcf", ".bcf"):
        stem = stem.removesuffix(suffix)
    sorted_name = stem + (".sorted.bcf" if bcf else ".sorted.vcf.gz")
    return (
        f"sort and index it: `bcftools sort -O{'b' if bcf else 'z'} -o {sorted_name} "
        f"{path.name}` then `bcftools index{'' if bcf else ' -t'} {sorted_name}`"
    )


class VariantFile:
    """A VCF/BCF opened for region queries over a set of samples.

    Parameters
    ----------
    path
        bgzipped and indexed (``.tbi`` or ``.csi``) VCF, or indexed BCF.
    samples
        Sample ids to read, in this order; all samples when ``None``.
    """

    #: Name of the format, recorded in provenance.
    format = "vcf"

    def __init__(self, path: str | os.PathLike, *, samples: Sequence[str] | None = None):
        self.path = existing_file(path, what="VCF file")
        #: The files read (recorded in provenance).
        self.files = [self.path]
        check_bgzip(self.path, what="VCF", index_hint="tabix -p vcf` or `bcftools index")
        header_samples = _header_samples(self.path)
        if samples is not None:
            samples = select_samples(self.path, header_samples, samples)
        else:
            select_samples(self.path, header_samples, None)
        try:
            self._vcf = cyvcf2.VCF(os.fspath(self.path), samples=samples, lazy=True, threads=1)
        except (OSError, Exception) as err:  # cyvcf2 raises bare Exception on bad headers
            raise InputFileError(self.path, f"cannot open as VCF/BCF ({err})") from err
        self.samples: list[str] = list(self._vcf.samples)
        if samples is not None and self.samples != samples:
            order = {s: i for i, s in enumerate(self.samples)}
            self._order = np.array([order[s] for s in samples])
            self.samples = samples
        else:
            self._order = None
        self.contigs: list[str] = list(self._vcf.seqnames)
        position = {s: i for i, s in enumerate(header_samples)}
        columns = np.array([position[s] for s in self.samples], dtype=np.int64)
        identity = (
            len(columns) == len(header_samples) and (columns == np.arange(len(columns))).all()
        )
        self._columns = None if identity else columns
        self._n_header_samples = len(header_samples)
        self._text = _open_tabix(self.path)
        self._indexed = any(Path(f"{self.path}{s}").exists() for s in (".tbi", ".csi"))
        #: ``FILTER`` is read from every record (``VariantBlock.passed_filters``).
        self.has_filters = True
        #: The ``INFO`` field read as imputation R² (``None``: the header declares none).
        self.r2_field = r2_field(
            line[len("##INFO=<") :].split(",", 1)[0].removeprefix("ID=")
            for line in self._vcf.raw_header.splitlines()
            if line.startswith("##INFO=<")
        )

    def _contig_lines(self) -> list[dict[str, str]]:
        """The key=value pairs of each ``##contig=<...>`` header line."""
        found = []
        for line in self._vcf.raw_header.splitlines():
            if line.startswith("##contig=<"):
                body = line[len("##contig=<") :].rstrip(">")
                found.append(dict(_HEADER_FIELD.findall(body)))
        return found

    def header_contig_lengths(self) -> dict[str, int]:
        """Contig lengths declared in ``##contig`` header lines."""
        return {
            c["ID"]: int(c["length"])
            for c in self._contig_lines()
            if "ID" in c and c.get("length", "").isdigit()
        }

    def contig_names(self) -> list[str]:
        """Contigs the file knows: those of its index, then any more of its header."""
        return list(dict.fromkeys(self.contigs + list(self.header_contig_lengths())))

    def header_assembly(self) -> str | None:
        """The ``assembly`` of the first ``##contig`` header line, or ``##reference``."""
        for contig in self._contig_lines():
            if "assembly" in contig:
                return contig["assembly"].strip('"')
        for line in self._vcf.raw_header.splitlines():
            if line.startswith("##reference="):
                return line.split("=", 1)[1]
        return None

    def has_records(self) -> bool:
        """Whether the file holds at least one record (``False`` for a header-only VCF)."""
        if self._text is not None:
            return bool(self._text.contigs)
        try:
            first = next(iter(cyvcf2.VCF(os.fspath(self.path), lazy=True, threads=1)), None)
        except Exception:  # a malformed first record: reading it reports it
            return True
        return first is not None

    def fetch(self, chrom: str, start: int, end: int) -> VariantBlock:
        """Records whose ``POS`` lies in ``[start, end)`` (0-based), in file order.

        Genotype-only, diploid, single-digit-allele VCFs (the layout of 1000 Genomes and
        most imputed panels) are decoded from the text in one vectorised step; any other
        record sends the region through cyvcf2, which gives the same result.

        Raises
        ------
        InputFileError
            On an unindexed file, a malformed record, an allele that is not bases, or a
            genotype that is not diploid or haploid.
        """
        if not self._indexed:
            plain = self.path.suffix != ".bcf" and not is_gzip(self.path)
            raise InputFileError(
                self.path,
                f"no index next to it ({self.path.name}.tbi or .csi); reading a region needs "
                f"a {'bgzip-compressed, ' if plain else ''}sorted, indexed file, so "
                f"{sort_and_index_hint(self.path)}",
            )
        block = self._fetch_text(chrom, start, end) if self._text is not None else None
        if block is None:
            block = self._fetch_cyvcf2(chrom, start, end)
        check_bases(self.path, block)
        return block

    def _fetch_text(self, chrom: str, start: int, end: int) -> VariantBlock | None:
        """Decode fixed-width ``GT``-only records; ``None`` when the region has others."""
        try:
            lines = list(self._text.fetch(chrom, start, end))
        except ValueError as err:
            if "could not create iterator" in str(err):  # contig without records
                return None
            raise InputFileError(
                self.path, f"cannot read records ({err})", record=f"{chrom}:{start + 1}-{end}"
            ) from err
        except OSError as err:
            raise InputFileError(
                self.path,
                f"truncated or corrupt data ({err})",
                record=f"{chrom}:{start + 1}-{end}",
            ) from err
        width = 4 * self._n_header_samples - 1
        positions, ids, refs, alts, filters, infos, calls = [], [], [], [], [], [], []
        for line in lines:
            fields = line.split("\t", 9)
            if len(fields) != 10 or fields[8] != "GT" or len(fields[9]) != width:
                _check_columns(self.path, lines, chrom, self._n_header_samples)
                return None
            try:
                pos = int(fields[1]) - 1
            except ValueError:
                _check_columns(self.path, lines, chrom, self._n_header_samples)
                return None
            if pos < start or pos >= end:
                continue
            positions.append(pos)
            ids.append(fields[2])
            refs.append(fields[3])
            alts.append(fields[4].split(","))
            filters.append(fields[6])
            infos.append(fields[7])
            calls.append(fields[9])
        n = len(positions)
        if n:
            codes = np.frombuffer(("\t".join(calls) + "\t").encode(), dtype=np.uint8)
            if not _fixed_width_calls(codes.reshape(-1, 4)):
                _check_columns(self.path, lines, chrom, self._n_header_samples)
                return None
        else:
            codes = np.zeros(0, dtype=np.uint8)
        codes = codes.reshape(n, self._n_header_samples, 4)
        if self._columns is not None:
            codes = codes[:, self._columns]
        alleles = codes[..., 0:3:2].astype(np.int8) - 48
        alleles[alleles == -2] = -1  # "." is 46
        separator = codes[..., 1]
        positions = np.asarray(positions, dtype=np.int64)
        block = VariantBlock(
            chrom=chrom,
            positions=positions,
            ids=ids,
            refs=refs,
            alts=alts,
            alleles=alleles,
            phased=separator == 124,
            passed_filters=passed_filters(filters),
            imputation_r2=None
            if self.r2_field is None
            else info_values(self.path, infos, self.r2_field, chrom=chrom, positions=positions),
        )
        check_allele_indices(self.path, block)
        return block

    def _fetch_cyvcf2(self, chrom: str, start: int, end: int) -> VariantBlock:
        """Records of a region read through cyvcf2 (any VCF/BCF layout)."""
        positions, ids, refs, alts, genotypes = [], [], [], [], []
        filters, r2 = [], []
        region = f"{chrom}:{start + 1}-{end}"
        n_read = 0
        try:
            with warnings.catch_warnings():  # cyvcf2 warns when a region has no records
                warnings.filterwarnings("ignore", message="no intervals found")
                for rec in self._vcf(region):
                    n_read += 1
                    pos = rec.start
                    if pos < start or pos >= end:
                        continue
                    positions.append(pos)
                    ids.append(rec.ID or ".")
                    refs.append(rec.REF)
                    alts.append(list(rec.ALT))
                    filters.append(rec.FILTER or "PASS")  # None for PASS and for "."
                    if self.r2_field is not None:
                        r2.append(_info_float(self.path, rec, self.r2_field))
                    genotypes.append(rec.genotype.array() if rec.genotype is not None else None)
        except Exception as err:  # htslib errors surface as generic exceptions in cyvcf2
            record, reason = self._unreadable_record(chrom, start, end, n_read)
            if record is None:
                record = f"after record {chrom}:{positions[-1] + 1}" if positions else region
            problem = f"htslib cannot parse this record: {reason}" if reason else None
            raise InputFileError(
                self.path, problem or f"cannot read records ({err})", record=record
            ) from err
        n_samples = len(self.samples)
        alleles = np.full((len(positions), n_samples, 2), -1, dtype=np.int8)
        phased = np.ones((len(positions), n_samples), dtype=bool)
        for i, gt in enumerate(genotypes):
            if gt is None:
                raise InputFileError(
                    self.path, "record has no GT field", record=f"{chrom}:{positions[i] + 1}"
                )
            if gt.shape[1] > 3:
                raise InputFileError(
                    self.path,
                    f"ploidy {gt.shape[1] - 1} is not supported (diploid or haploid only)",
                    record=f"{chrom}:{positions[i] + 1}",
                )
            if self._order is not None:
                gt = gt[self._order]
            calls = gt[:, :-1]
            alleles[i, :, : calls.shape[1]] = np.where(calls == -2, ABSENT, np.maximum(calls, -1))
            if calls.shape[1] == 1:
                alleles[i, :, 1] = ABSENT
            phased[i] = gt[:, -1] == 1
        block = VariantBlock(
            chrom=chrom,
            positions=np.asarray(positions, dtype=np.int64),
            ids=ids,
            refs=refs,
            alts=alts,
            alleles=alleles,
            phased=phased,
            passed_filters=passed_filters(filters),
            imputation_r2=None if self.r2_field is None else np.asarray(r2, dtype=np.float32),
        )
        check_allele_indices(self.path, block)
        return block

    def _unreadable_record(
        self, chrom: str, start: int, end: int, n_read: int
    ) -> tuple[str | None, str]:
        """The record after the ``n_read`` cyvcf2 gave, and htslib's reason for refusing it.

        The line is parsed again alone with htslib's log (standard error) captured.
        """
        if self._text is None:
            return None, ""
        try:
            line = next(itertools.islice(self._text.fetch(chrom, start, end), n_read, None))
        except (StopIteration, ValueError, OSError):
            return None, ""
        fields = line.split("\t", 3)
        record = f"record {chrom}:{fields[1]} {fields[2]}" if len(fields) > 2 else None
        with tempfile.TemporaryDirectory() as folder:
            alone = Path(folder, "record.vcf")
            alone.write_text("\n".join([*self._text.header, line]) + "\n")
            log = Path(folder, "log")
            saved = os.dup(2)
            try:
                with open(log, "wb") as handle:
                    os.dup2(handle.fileno(), 2)
                    with contextlib.suppress(Exception):
                        for _ in cyvcf2.VCF(os.fspath(alone), threads=1):
                            pass
            finally:
                os.dup2(saved, 2)
                os.close(saved)
            said = [x for x in log.read_text(errors="replace").splitlines() if "[E::" in x]
        return record, said[-1].split("] ", 1)[-1] if said else ""

    def close(self) -> None:
        """Close the file."""
        self._vcf.close()
        if self._text is not None:
            self._text.close()

    def __enter__(self) -> VariantFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _header_samples(path: Path) -> list[str]:
    """Sample ids from the ``#CHROM`` line, read with pysam's text reader."""
    import pysam

    if path.suffix == ".bcf":
        try:
            return list(cyvcf2.VCF(os.fspath(path)).samples)
        except Exception as err:
            raise InputFileError(path, f"cannot open as BCF ({err})") from err
    try:
        with pysam.BGZFile(os.fspath(path), "rb") if is_gzip(path) else open(path, "rb") as fh:
            for raw in fh:
                line = raw.decode() if isinstance(raw, bytes) else raw
                if line.startswith("#CHROM"):
                    return line.rstrip("\r\n").split("\t")[9:]
                if not line.startswith("#"):
                    break
    except (OSError, EOFError, UnicodeDecodeError) as err:
        raise InputFileError(path, f"cannot read the header ({err})") from err
    raise InputFileError(path, "no #CHROM header line: not a VCF file")


def _info_float(path: Path, rec, key: str) -> float:
    """The first value of ``INFO/key`` of a cyvcf2 record as a float (NaN when absent)."""
    value = rec.INFO.get(key)
    if isinstance(value, tuple):
        value = value[0] if value else None
    if value is None:
        return float("nan")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InputFileError(
            path, f"INFO/{key}={value!r} is not a number", record=f"record {rec.CHROM}:{rec.POS}"
        ) from None


def _open_tabix(path: Path):
    """A tabix reader for a bgzipped, tabix-indexed text VCF; ``None`` otherwise."""
    import pysam

    if path.suffix == ".bcf" or not is_gzip(path):
        return None
    if not (Path(f"{path}.tbi").exists() or Path(f"{path}.csi").exists()):
        return None
    try:
        return pysam.TabixFile(os.fspath(path))
    except (OSError, ValueError):
        return None


def _fixed_width_calls(codes: np.ndarray) -> bool:
    """Whether every 4-byte row reads ``a|b\t`` or ``a/b\t`` with one-digit or ``.`` alleles."""

    def allele_ok(column: np.ndarray) -> bool:
        return bool(((column >= 46) & (column <= 57) & (column != 47)).all())  # . and 0-9

    separator = codes[:, 1]
    return (
        bool((codes[:, 3] == 9).all())
        and bool(((separator == 124) | (separator == 47)).all())
        and allele_ok(codes[:, 0])
        and allele_ok(codes[:, 2])
    )


def _check_columns(path: Path, lines: list[str], chrom: str, n_samples: int) -> None:
    """Refuse a record whose columns do not match the ``#CHROM`` line, or whose POS is not a number.

    htslib drops extra columns silently and names no record for a missing one.
    """
    expected = 9 + n_samples
    for line in lines:
        n = line.count("\t") + 1
        fields = line.split("\t", 3)
        record = f"record {chrom}:{fields[1] if len(fields) > 1 else '?'}"
        if len(fields) > 2:
            record += f" {fields[2]}"
        if n != expected and not (n_samples == 0 and n == 8):
            difference = f"{expected - n} missing" if n < expected else f"{n - expected} too many"
            raise InputFileError(
                path,
                f"{n} tab-separated columns where the #CHROM header line has {expected} "
                f"(9 fixed and {n_samples} samples): {difference}; every record needs one "
                "genotype column per sample of the header, so look for a dropped, doubled or "
                "space-for-tab separator in this line",
                record=record,
            )
        if not fields[1].isdigit():
            raise InputFileError(path, f"POS {fields[1]!r} is not a whole number", record=record)
