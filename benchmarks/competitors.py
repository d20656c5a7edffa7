"""The tools a user would otherwise pick to build personal haplotype sequences.

Each ``run_*`` function takes the same inputs — a VCF, a FASTA, a list of windows
``(chrom, start0, end0)`` (0-based, half-open) and the samples to build — and produces the
bytes of both haplotypes of every sample over every window, in memory or on disk,
counting the bases it produced. It returns a dict with the time spent in each phase
(``phases``, seconds), ``bases`` (bases produced), ``haplotypes`` and ``people``.

* :func:`run_bcftools` — ``samtools faidx REF win1 win2 ... | bcftools consensus -s S -H h``,
  one pipeline per sample and haplotype (2 x N pipelines, all windows in each).
* :func:`run_gvl` — GenVarLoader: ``gvl.write`` a dataset from a BED of the windows and the
  VCF, then ``gvl.Dataset.open(..., reference=...)`` and read every haplotype.
* :func:`run_bare` — cyvcf2 + numpy, SNVs only: copy the reference window into a
  ``(2 N, L)`` array and write each ALT base into the haplotypes that carry it.

Every function also keeps the haplotypes of a few ``check_samples`` (a negligible copy)
and writes them to a small FASTA (``check_path``, untimed) so the runner can compare the
tools' outputs.

The runner (``bench_haplotypes.py``) calls each tool in its own subprocess through
:func:`run_worker` so that peak memory is measured per tool::

    python benchmarks/competitors.py --worker gvl --spec spec.json --out result.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

Window = tuple[str, int, int]
"""A window ``(chrom, start0, end0)``: 0-based, end-exclusive."""


def _region(window: Window) -> str:
    """samtools-style 1-based inclusive region string of a window."""
    chrom, start0, end0 = window
    return f"{chrom}:{start0 + 1}-{end0}"


def write_check_fasta(path: str | os.PathLike, records: Iterable[tuple[str, bytes]]) -> None:
    """Write ``(name, sequence)`` records to a FASTA file (one line per sequence)."""
    with open(path, "wb") as out:
        for name, seq in records:
            out.write(b">%s\n%s\n" % (name.encode(), seq))


def read_check_fasta(path: str | os.PathLike) -> dict[str, bytes]:
    """Read a FASTA written by :func:`write_check_fasta` (or multi-line FASTA)."""
    records: dict[str, bytes] = {}
    name: str | None = None
    chunks: list[bytes] = []
    with open(path, "rb") as fh:
        for line in fh:
            line = line.rstrip(b"\r\n")
            if line.startswith(b">"):
                if name is not None:
                    records[name] = b"".join(chunks)
                name, chunks = line[1:].decode(), []
            else:
                chunks.append(line)
    if name is not None:
        records[name] = b"".join(chunks)
    return records


def check_name(sample: str, hap: int, window: Window) -> str:
    """Record name used in the check FASTAs: ``SAMPLE_h1 20:1001-5096``."""
    return f"{sample}_h{hap} {_region(window)}"


# --------------------------------------------------------------------------------------
# a. samtools faidx | bcftools consensus, one pipeline per sample and haplotype
# --------------------------------------------------------------------------------------


def _parse_fasta_stream(data: bytes) -> list[tuple[str, bytes]]:
    """Split FASTA text into ``(header, sequence)`` with line breaks removed."""
    out = []
    for block in data.split(b">")[1:]:
        header, _, body = block.partition(b"\n")
        out.append((header.decode(), body.replace(b"\n", b"")))
    return out


def run_bcftools(
    vcf: str,
    fasta: str,
    windows: Sequence[Window],
    samples: Sequence[str],
    *,
    workdir: str,
    check_samples: Sequence[str] = (),
    check_path: str | None = None,
    to_bcf: bool = True,
    samtools: str = "samtools",
    bcftools: str = "bcftools",
) -> dict[str, Any]:
    """Build haplotypes with ``samtools faidx | bcftools consensus``, batched over windows.

    For each sample and each haplotype (``-H 1`` / ``-H 2``) one ``samtools faidx`` call
    extracts all windows (regions read from a file) and is piped into one
    ``bcftools consensus -s SAMPLE -H h VCF``: 2 x ``len(samples)`` pipelines, run one
    after the other. The consensus FASTA is read back into memory and its bases counted.
    ``-H 1``/``-H 2`` take the first/second allele as listed, whatever the phasing.
    Indels are applied, so a haplotype may be longer or shorter than its window.

    With ``to_bcf`` (the default) the VCF is first converted to an indexed BCF
    (``bcftools view -Ob`` + ``bcftools index``, timed as ``convert``): every pipeline
    reads all genotypes of all samples in the windows, and parsing binary BCF instead of
    VCF text makes each pipeline ~10-20x faster on a cohort of thousands. With
    ``to_bcf=False``, or when the input already is a BCF, it is read as given.
    """
    work = Path(workdir)
    work.mkdir(parents=True, exist_ok=True)
    regions_file = work / "regions.txt"
    regions_file.write_text("".join(_region(w) + "\n" for w in windows))
    wanted = set(check_samples)
    check: list[tuple[str, bytes]] = []
    phases: dict[str, float] = {}

    if to_bcf and not vcf.endswith(".bcf"):
        t0 = time.perf_counter()
        bcf = work / "input.bcf"
        subprocess.run([bcftools, "view", "--no-version", "-Ob", "-o", str(bcf), vcf], check=True)
        subprocess.run([bcftools, "index", "-f", str(bcf)], check=True)
        vcf = str(bcf)
        phases["convert"] = time.perf_counter() - t0

    bases = 0
    t0 = time.perf_counter()
    for sample in samples:
        for hap in (1, 2):
            faidx = subprocess.Popen(
                [samtools, "faidx", fasta, "-r", str(regions_file)], stdout=subprocess.PIPE
            )
            consensus = subprocess.Popen(
                [bcftools, "consensus", "-s", sample, "-H", str(hap), vcf],
                stdin=faidx.stdout,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
            assert faidx.stdout is not None
            faidx.stdout.close()  # so that faidx gets SIGPIPE if consensus dies
            out, err = consensus.communicate()
            if faidx.wait() != 0 or consensus.returncode != 0:
                raise RuntimeError(f"bcftools consensus failed for {sample} -H {hap}: {err!r}")
            records = _parse_fasta_stream(out)
            if len(records) != len(windows):
                raise RuntimeError(f"expected {len(windows)} sequences, got {len(records)}")
            bases += sum(len(seq) for _, seq in records)
            if sample in wanted:
                check.extend(
                    (check_name(sample, hap, w), seq)
                    for w, (_, seq) in zip(windows, records, strict=True)
                )
    phases["build"] = time.perf_counter() - t0

    if check_path:
        write_check_fasta(check_path, check)
    return {
        "phases": phases,
        "bases": bases,
        "haplotypes": 2 * len(samples),
        "people": len(samples),
        "versions": {
            "bcftools": _first_line([bcftools, "--version"]).split()[-1],
            "samtools": _first_line([samtools, "--version"]).split()[-1],
        },
    }


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True).stdout
        return out.decode(errors="replace").splitlines()[0]
    except (OSError, IndexError):
        return "unknown"


# --------------------------------------------------------------------------------------
# b. GenVarLoader
# --------------------------------------------------------------------------------------


def _link_inputs(dest: Path, *files: str) -> list[Path]:
    """Symlink each file and its index files into a fresh ``dest`` directory.

    GenVarLoader writes caches next to its inputs (``<vcf>.gvi``, ``<fasta>.gvlfa``); the
    shared data are read-only, and a fresh directory makes every run start cold.
    """
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    links = []
    for f in files:
        src = Path(f).resolve()
        for suffix in ("", ".tbi", ".csi", ".fai", ".gzi"):
            side = Path(f"{src}{suffix}")
            if side.exists():
                (dest / side.name).symlink_to(side)
        links.append(dest / src.name)
    return links


def run_gvl(
    vcf: str,
    fasta: str,
    windows: Sequence[Window],
    samples: Sequence[str],
    *,
    workdir: str,
    check_samples: Sequence[str] = (),
    check_path: str | None = None,
    max_read_bytes: int = 512 * 2**20,
    warm_read: bool = True,
) -> dict[str, Any]:
    """Build haplotypes with GenVarLoader, timing import, write and read separately.

    ``write``: ``gvl.write`` of a dataset from the windows (BED, all on ``+``) and the
    VCF, including the genoray VCF index it builds on first use. ``read``:
    ``gvl.Dataset.open`` with the reference (including its first-use FASTA cache), then
    fixed-length haplotypes read for all windows and samples, a few windows at a time
    (at most ``max_read_bytes`` per batch), each batch an ``(windows, samples, 2, L)``
    array of bytes. With ``warm_read`` everything is read a second time (``read_warm``),
    which leaves out one-off costs of the first read (JIT compilation).
    """
    t0 = time.perf_counter()
    import genvarloader as gvl
    import polars as pl

    t_import = time.perf_counter() - t0
    from loguru import logger

    logger.remove()  # GenVarLoader logs every step at INFO level

    work = Path(workdir)
    vcf_link, fasta_link = _link_inputs(work / "inputs", vcf, fasta)
    lengths = {end - start for _, start, end in windows}
    if len(lengths) != 1:
        raise ValueError("all windows must have the same length")
    length = lengths.pop()
    bed = pl.DataFrame(
        {
            "chrom": [w[0] for w in windows],
            "chromStart": [w[1] for w in windows],
            "chromEnd": [w[2] for w in windows],
        }
    )
    ds_path = work / "windows.gvl"

    t0 = time.perf_counter()
    gvl.write(ds_path, bed, variants=str(vcf_link), samples=list(samples), overwrite=True)
    t_write = time.perf_counter() - t0

    t0 = time.perf_counter()
    ds = (
        gvl.Dataset.open(ds_path, reference=str(fasta_link))
        .with_seqs("haplotypes")
        .with_len(length)
    )
    t_open = time.perf_counter() - t0
    n_samples = ds.n_samples
    per_window = n_samples * 2 * length
    step = max(1, max_read_bytes // per_window)
    check_idx = [ds.samples.index(s) for s in check_samples]
    check_parts: list[Any] = []
    bases = 0
    t0 = time.perf_counter()
    for lo in range(0, len(windows), step):
        haps = ds[lo : lo + step]  # (windows, samples, ploidy, length), dtype S1
        bases += haps.size
        if check_idx:
            check_parts.append(haps[:, check_idx].copy())
        del haps
    t_read = time.perf_counter() - t0
    phases = {"import": t_import, "write": t_write, "open": t_open, "read": t_read}
    if warm_read:
        # the first read includes one-off JIT compilation; a second pass shows the steady rate
        t0 = time.perf_counter()
        warm_bases = 0
        for lo in range(0, len(windows), step):
            haps = ds[lo : lo + step]
            warm_bases += haps.size
            del haps
        phases["read_warm"] = time.perf_counter() - t0
        assert warm_bases == bases

    if check_path:
        import numpy as np

        arr = np.concatenate(check_parts) if check_parts else None
        write_check_fasta(
            check_path,
            (
                (check_name(s, h + 1, w), arr[wi, si, h].tobytes())
                for si, s in enumerate(check_samples)
                for h in range(2)
                for wi, w in enumerate(windows)
            ),
        )
    return {
        "phases": phases,
        "bases": int(bases),
        "haplotypes": 2 * n_samples,
        "people": n_samples,
        "versions": {"genvarloader": gvl.__version__},
    }


# --------------------------------------------------------------------------------------
# c. bare cyvcf2 + numpy SNV loop
# --------------------------------------------------------------------------------------


def run_bare(
    vcf: str,
    fasta: str,
    windows: Sequence[Window],
    samples: Sequence[str],
    *,
    workdir: str,
    check_samples: Sequence[str] = (),
    check_path: str | None = None,
) -> dict[str, Any]:
    """The bare-minimum baseline: cyvcf2 + numpy, SNVs only, one window at a time.

    For each window: fetch the reference (pysam), broadcast it into a ``(2 N, L)`` uint8
    array, iterate the VCF records in the window with cyvcf2 and, for biallelic SNVs,
    write the ALT base into the haplotypes whose allele is 1 (allele order as listed,
    whatever the phasing). Indels and other records are ignored.
    """
    t0 = time.perf_counter()
    import cyvcf2
    import numpy as np
    import pysam

    t_import = time.perf_counter() - t0

    del workdir  # nothing cached
    t0 = time.perf_counter()
    reader = cyvcf2.VCF(vcf, samples=list(samples), gts012=False)
    ref = pysam.FastaFile(fasta)
    order = list(reader.samples)  # cyvcf2 keeps the file's order
    check_rows = [(s, order.index(s)) for s in check_samples]
    check: list[tuple[str, bytes]] = []
    n_haps = 2 * len(order)
    bases = 0
    n_snvs = 0
    for window in windows:
        chrom, start, end = window
        seq = np.frombuffer(ref.fetch(chrom, start, end).upper().encode(), dtype=np.uint8)
        haps = np.empty((n_haps, end - start), dtype=np.uint8)
        haps[:] = seq
        for rec in reader(_region(window)):
            alts = rec.ALT
            if len(rec.REF) != 1 or len(alts) != 1 or len(alts[0]) != 1:
                continue
            offset = rec.POS - 1 - start
            if not 0 <= offset < end - start:
                continue
            alleles = rec.genotype.array()[:, :2].reshape(-1)  # hap 2i, 2i+1 of person i
            haps[alleles == 1, offset] = ord(alts[0])
            n_snvs += 1
        bases += haps.size
        for s, i in check_rows:
            check.append((check_name(s, 1, window), haps[2 * i].tobytes()))
            check.append((check_name(s, 2, window), haps[2 * i + 1].tobytes()))
    t_build = time.perf_counter() - t0

    if check_path:
        order_key = {name: k for k, name in enumerate(_check_order(check_samples, windows))}
        write_check_fasta(check_path, sorted(check, key=lambda r: order_key[r[0]]))
    return {
        "phases": {"import": t_import, "build": t_build},
        "bases": int(bases),
        "haplotypes": n_haps,
        "people": len(order),
        "snv_records_applied": n_snvs,
        "versions": {"cyvcf2": cyvcf2.__version__, "numpy": np.__version__},
    }


def _check_order(check_samples: Sequence[str], windows: Sequence[Window]) -> list[str]:
    return [check_name(s, h, w) for s in check_samples for h in (1, 2) for w in windows]


# --------------------------------------------------------------------------------------
# worker: run one tool in this process and write its result as JSON
# --------------------------------------------------------------------------------------

TOOLS: dict[str, Callable[..., dict[str, Any]]] = {
    "bcftools": run_bcftools,
    "gvl": run_gvl,
    "bare": run_bare,
}


def run_worker(fn: Callable[..., dict[str, Any]], spec_path: str, out_path: str) -> int:
    """Run ``fn(**spec)`` and write its result, timings and peak memory to ``out_path``.

    The peak RSS of this process (``VmHWM``) and ``ru_maxrss`` of its largest waited-for
    child (for example ``bcftools``) are added as ``rss_self_mib`` / ``rss_children_mib``.
    Errors are written to the JSON too (``error``), so the runner can report them.
    """
    spec = json.loads(Path(spec_path).read_text())
    spec["windows"] = [tuple(w) for w in spec["windows"]]
    t0 = time.perf_counter()
    try:
        result = fn(**spec)
        result["ok"] = True
    except Exception as exc:  # reported, not raised: the runner goes on with other tools
        result = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
        traceback.print_exc()
    result["worker_seconds"] = time.perf_counter() - t0
    result["rss_self_mib"] = peak_rss_self_mib()
    result["rss_children_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result["python"] = sys.version.split()[0]
    Path(out_path).write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["ok"] else 1


def peak_rss_self_mib() -> float:
    """This process's peak RSS (``VmHWM``) in MiB.

    ``ru_maxrss`` is not used for the process itself: on Linux it survives ``exec`` and so
    still holds the RSS of the parent it was forked from.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    """Worker entry point: ``--worker TOOL --spec SPEC.json --out RESULT.json``."""
    parser = argparse.ArgumentParser(description="Run one haplotype-building tool.")
    parser.add_argument("--worker", choices=sorted(TOOLS), required=True)
    parser.add_argument("--spec", required=True, help="JSON file with the tool's arguments")
    parser.add_argument("--out", required=True, help="where to write the result JSON")
    args = parser.parse_args(argv)
    return run_worker(TOOLS[args.worker], args.spec, args.out)


if __name__ == "__main__":
    sys.exit(main())
