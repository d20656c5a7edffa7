"""Benchmark: build every person's two haplotype sequences over many windows.

Compares genlm_sc ("ours") with the tools a user would otherwise pick (see
``competitors.py``), each run in its own subprocess so that peak memory is per tool, on
four cases:

* ``real_4k`` / ``real_49k``: the real 1000 Genomes VCF (503 Europeans, SNVs + indels,
  a few unphased hets), one window per gene (30 genes) centred on the TSS, 4,096 bp and
  49,152 bp wide;
* ``sim_4k`` / ``sim_49k``: a simulated cohort of 2,500 people (``simulate_cohort.py``,
  SNVs only), 200 windows x 4,096 bp and 20 windows x 49,152 bp spread over the 1 Mb.

Throughput is haplotype-bp/s = people x 2 x window length x windows / seconds. For each
tool the report gives the time to import it, to prepare (write an index or dataset), to
build the haplotypes, and the one-shot total; throughput for the build and for the
one-shot total; how many times faster ours is; and the peak resident memory of the
tool's process tree. ``samtools | bcftools consensus`` is run on a subset of the people
and extrapolated per haplotype-bp (marked in the table).

Usage::

    python benchmarks/bench_haplotypes.py                       # everything (~10 min)
    python benchmarks/bench_haplotypes.py --quick               # CI smoke run (< 1 min)
    python benchmarks/bench_haplotypes.py --tools gvl,bare --cases sim_4k

Results: ``benchmarks/results/haplotypes.md`` and ``haplotypes.json`` (``*_quick.*`` with
``--quick``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_T_IMPORTS = time.perf_counter()
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

# numpy + pandas are imported by genlm_sc too: counted in ours' import time (the other
# workers import nothing heavy before timing their tool's import)
_DEPS_IMPORT_S = time.perf_counter() - _T_IMPORTS

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

import competitors  # noqa: E402
from competitors import Window, check_name, read_check_fasta  # noqa: E402
from simulate_cohort import (  # noqa: E402
    CONTIG,
    DATA,
    REFERENCE,
    REGION_END0,
    REGION_START0,
    SimulationParams,
    simulate_cohort,
)

REAL_VCF = DATA / "genotypes" / "1kgp3_EUR503_chr20_1000001-2000000.vcf.gz"
GENES_TSV = DATA / "annotation" / "gencode_v19_genes_chr20_TSS_in_1000001-2000000.b37.tsv"
WORK = HERE / "work"
RESULTS = HERE / "results"

ANNOTATION_COLUMNS = ["gene_id", "gene_name", "gene_type", "chrom", "start", "end", "strand", "tss"]


# ======================================================================================
# ours: the library under test. Adjust this function when the API changes.
# ======================================================================================


def run_ours(
    vcf: str,
    fasta: str,
    windows: Sequence[Window],
    samples: Sequence[str],
    *,
    genes: list[dict[str, Any]],
    width: int,
    workdir: str,
    store: str | None = None,
    check_samples: Sequence[str] = (),
    check_path: str | None = None,
) -> dict[str, Any]:
    """Build the haplotypes of every person in ``vcf`` with genlm_sc.

    Phases: ``import``; ``windows`` = ``gl.pp.gene_windows(annotation, fasta=..., width=...)``
    on the annotation (columns ``gene_id, gene_name, gene_type, chrom, start, end, strand,
    tss``, 0-based); ``build`` = ``gl.pp.personal_sequences(vcf, fasta=..., genes=...,
    store=..., unphased="as_listed")``, which stores each gene's distinct haplotypes once
    plus every person's index into them; ``dense`` = expanding that into every person's
    two haplotype byte strings for every gene (:func:`_materialize`), the form the other
    tools produce. ``windows`` and ``samples`` are what the other tools get; ours derives
    the windows from ``genes`` and builds all samples.
    """
    del windows, samples, workdir  # ours works from the annotation and the whole VCF
    t0 = time.perf_counter()
    import genlm_sc as gl

    t_import = time.perf_counter() - t0 + _DEPS_IMPORT_S

    annotation = pd.DataFrame(genes, columns=ANNOTATION_COLUMNS)
    t0 = time.perf_counter()
    panel = gl.pp.gene_windows(annotation, fasta=fasta, width=width)
    t_windows = time.perf_counter() - t0

    if store is not None and Path(store).exists():
        shutil.rmtree(store)
    t0 = time.perf_counter()
    cohort = gl.pp.personal_sequences(
        vcf, fasta=fasta, genes=panel, store=store, unphased="as_listed", progress=False
    )
    t_build = time.perf_counter() - t0
    rss_after_build = competitors.peak_rss_self_mib()

    t0 = time.perf_counter()
    bases, check = _materialize(gl.get.haplotype_store(cohort), cohort, check_samples)
    t_dense = time.perf_counter() - t0

    if check_path:
        competitors.write_check_fasta(check_path, check)
    uns = cohort.uns.get("gl", {})
    return {
        "phases": {"import": t_import, "windows": t_windows, "build": t_build, "dense": t_dense},
        "bases": bases,
        "people": int(cohort.n_obs),
        "haplotypes": 2 * int(cohort.n_obs),
        "unique_haplotypes": int(cohort.var["n_haplotypes"].sum()),
        "peak_rss_before_dense_mib": rss_after_build,
        "counts": {k: v for k, v in uns.get("counts", {}).items() if isinstance(v, int)},
        "versions": {"genlm_sc": getattr(gl, "__version__", "unknown")},
    }


def _materialize(
    ds: Any, cohort: Any, check_samples: Sequence[str]
) -> tuple[int, list[tuple[str, bytes]]]:
    """Expand ours' store into every person's haplotypes, gene by gene, and count bases.

    ``ds`` is the haplotype Dataset (``gl.get.haplotype_store``): ``sequence``
    (distinct haplotype x position), ``haplotype_length``, ``sample_haplotype``
    (sample x gene x ploidy -> row of ``sequence``), ``gene_first_haplotype`` and
    ``gene_n_haplotypes``. For each gene a ``(people, 2, length)`` uint8 array is built
    by fancy indexing, as the other tools hold it. Also returns the check samples'
    haplotypes in forward-strand genome orientation (minus-strand genes are stored
    reverse-complemented), named like the competitors' records. Adjust here if the store
    layout changes.
    """
    from genlm_sc.pp.haplotypes import reverse_complement

    codes = ds["sequence"].values  # all distinct haplotypes; per-gene slices are slower
    lengths = ds["haplotype_length"].values
    index = ds["sample_haplotype"].values  # (sample, gene, ploidy)
    first = ds["gene_first_haplotype"].values
    n_distinct = ds["gene_n_haplotypes"].values
    n_genes = index.shape[1]
    var = cohort.var
    samples = list(cohort.obs_names)
    rows = {s: samples.index(s) for s in check_samples if s in samples}
    bases = 0
    check: list[tuple[str, bytes]] = []
    for g in range(n_genes):
        n = int(lengths[first[g] : first[g] + n_distinct[g]].max())
        idx = index[:, g, :]
        dense = codes[idx, :n]  # (people, 2, n): every person's two haplotypes
        bases += int(lengths[idx].sum())
        info = var.iloc[g]
        window = (str(info["chrom"]), int(info["start"]), int(info["end"]))
        for s, i in rows.items():
            for h in range(2):
                seq = dense[i, h, : lengths[idx[i, h]]]
                if info["strand"] == "-":
                    seq = reverse_complement(seq)
                check.append((check_name(s, h + 1, window), seq.tobytes()))
        del dense
    return bases, check


# ======================================================================================
# cases
# ======================================================================================


@dataclass
class Case:
    """One benchmark input: a VCF and a set of equal-width windows given as an annotation."""

    name: str
    title: str
    vcf: Path
    annotation: pd.DataFrame
    width: int
    snv_only: bool
    samples: list[str] = field(default_factory=list)
    n_sites: int = 0

    @property
    def windows(self) -> list[Window]:
        """The windows the competitors build, as ``gl.pp.gene_windows`` places them.

        The TSS lands at index ``width // 2`` in gene orientation: ``[tss - width // 2,
        +width)`` on ``+``, ``[tss + width // 2 + 1 - width, +width)`` on ``-``.
        """
        tss = self.annotation["tss"].to_numpy()
        half = self.width // 2
        minus = self.annotation["strand"].to_numpy() == "-"
        starts = np.where(minus, tss + half + 1 - self.width, tss - half)
        return [
            (str(c), int(s), int(s) + self.width)
            for c, s in zip(self.annotation["chrom"], starts, strict=True)
        ]

    @property
    def n_people(self) -> int:
        """Number of people in the VCF."""
        return len(self.samples)

    def nominal_bp(self, people: int | None = None) -> int:
        """people x 2 x width x windows."""
        return (self.n_people if people is None else people) * 2 * self.width * len(self.windows)


def real_annotation(n_genes: int | None = None) -> pd.DataFrame:
    """The 30 genes with a TSS in the real 1 Mb, in the annotation layout ours expects."""
    genes = pd.read_csv(GENES_TSV, sep="\t", dtype={"chrom": str})
    genes = genes.rename(columns={"start0": "start", "tss0": "tss"})[ANNOTATION_COLUMNS]
    return genes.head(n_genes) if n_genes else genes


def window_annotation(n_windows: int, width: int) -> pd.DataFrame:
    """``n_windows`` windows of ``width`` bp spread evenly over the real 1 Mb, as genes.

    Each window is a ``+``-strand "gene" ``w0001``, ... whose TSS (= its start) is at
    ``window start + width // 2`` and which ends at the window end.
    """
    span = REGION_END0 - REGION_START0 - width
    starts = REGION_START0 + np.round(np.linspace(0, span, n_windows)).astype(np.int64)
    tss = starts + width // 2
    ids = [f"w{i:04d}" for i in range(1, n_windows + 1)]
    return pd.DataFrame(
        {
            "gene_id": ids,
            "gene_name": ids,
            "gene_type": "window",
            "chrom": CONTIG,
            "start": tss,
            "end": starts + width,
            "strand": "+",
            "tss": tss,
        }
    )[ANNOTATION_COLUMNS]


def vcf_summary(vcf: Path) -> tuple[list[str], int]:
    """Sample ids and number of records of an indexed VCF."""
    import pysam

    with pysam.VariantFile(str(vcf)) as fh:
        samples = list(fh.header.samples)
    stats = subprocess.run(["bcftools", "index", "-n", str(vcf)], capture_output=True, text=True)
    return samples, int(stats.stdout.strip() or 0)


def build_cases(args: argparse.Namespace) -> list[Case]:
    """The cases selected on the command line (smaller ones with ``--quick``)."""
    quick = args.quick
    n_sim = args.n_people or (200 if quick else 2500)
    sim_vcf = None
    cases: list[Case] = []
    specs = {
        "real_4k": ("real", 4096, 5 if quick else None, None),
        "real_49k": ("real", 49152, 3 if quick else None, None),
        "sim_4k": ("sim", 4096, None, 20 if quick else 200),
        "sim_49k": ("sim", 49152, None, 2 if quick else 20),
    }
    for name in args.cases:
        kind, width, n_genes, n_windows = specs[name]
        if kind == "real":
            vcf = REAL_VCF
            annotation = real_annotation(n_genes)
            title = (
                f"real 1000 Genomes EUR cohort, {len(annotation)} genes, "
                f"{width:,} bp windows centred on the TSS (SNVs + indels)"
            )
            snv_only = False
        else:
            if sim_vcf is None:
                sim_vcf = simulate_cohort(SimulationParams(n_people=n_sim))
            vcf = sim_vcf
            annotation = window_annotation(n_windows, width)
            title = (
                f"simulated cohort (msprime), {n_windows} windows x {width:,} bp "
                "spread over the 1 Mb (SNVs only)"
            )
            snv_only = True
        if args.bcf:
            vcf = to_bcf(vcf)
            title += "; all tools read an indexed BCF"
        samples, n_sites = vcf_summary(vcf)
        cases.append(Case(name, title, vcf, annotation, width, snv_only, samples, n_sites))
    return cases


def to_bcf(vcf: Path) -> Path:
    """An indexed BCF copy of ``vcf`` under ``benchmarks/work/`` (cached, untimed)."""
    bcf = WORK / (vcf.name.removesuffix(".gz").removesuffix(".vcf") + ".bcf")
    if not (bcf.exists() and Path(f"{bcf}.csi").exists()):
        WORK.mkdir(parents=True, exist_ok=True)
        view = ["bcftools", "view", "--no-version", "-Ob", "-o", str(bcf), str(vcf)]
        subprocess.run(view, check=True)
        subprocess.run(["bcftools", "index", "-f", str(bcf)], check=True)
    return bcf


# ======================================================================================
# tools and subprocess runs
# ======================================================================================


@dataclass(frozen=True)
class Tool:
    """A tool as the runner sees it."""

    name: str
    label: str
    worker: str  # competitors.TOOLS key, or "ours"
    spec: dict[str, Any] = field(default_factory=dict)


TOOLS: dict[str, Tool] = {
    "ours": Tool("ours", "genlm_sc (ours)", "ours"),
    "gvl": Tool("gvl", "GenVarLoader", "gvl"),
    "bare": Tool("bare", "cyvcf2 + numpy SNV loop", "bare"),
    "bcftools": Tool(
        "bcftools", "samtools faidx | bcftools consensus (BCF)", "bcftools", {"to_bcf": True}
    ),
    "bcftools-vcf": Tool(
        "bcftools-vcf",
        "samtools faidx | bcftools consensus (VCF.gz)",
        "bcftools",
        {"to_bcf": False},
    ),
}


def subset_people(samples: Sequence[str], n: int) -> list[str]:
    """``n`` people spread evenly over the cohort (first and last included)."""
    if n <= 0 or n >= len(samples):
        return list(samples)
    idx = np.unique(np.round(np.linspace(0, len(samples) - 1, n)).astype(int))
    return [samples[i] for i in idx]


def monitored_run(
    cmd: list[str], env: dict[str, str], log_path: Path, timeout: float
) -> tuple[int, float, float | None]:
    """Run ``cmd``, polling the RSS of its whole process tree.

    Returns the exit code, the wall seconds and the peak summed RSS in MiB (``None``
    without psutil).
    """
    try:
        import psutil
    except ImportError:
        psutil = None
    peak = 0
    t0 = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        root = psutil.Process(proc.pid) if psutil else None
        while proc.poll() is None:
            if root is not None:
                try:
                    tree = [root, *root.children(recursive=True)]
                except psutil.Error:
                    tree = []
                rss = 0
                for p in tree:
                    try:
                        rss += p.memory_info().rss
                    except psutil.Error:
                        pass
                peak = max(peak, rss)
            if time.perf_counter() - t0 > timeout:
                proc.kill()
                proc.wait()
                return -9, time.perf_counter() - t0, peak / 2**20 if psutil else None
            time.sleep(0.02)
    return proc.returncode, time.perf_counter() - t0, peak / 2**20 if psutil else None


def run_tool(tool: Tool, case: Case, args: argparse.Namespace) -> dict[str, Any]:
    """Run one tool on one case in a subprocess and return its raw result."""
    job = WORK / "jobs" / case.name / tool.name
    if job.exists():
        shutil.rmtree(job)
    job.mkdir(parents=True)
    people = case.samples
    if tool.worker == "bcftools":
        n = args.bcftools_people if tool.name == "bcftools" else args.bcftools_vcf_people
        people = subset_people(case.samples, n)
    check_samples = [case.samples[0], case.samples[-1]]
    spec: dict[str, Any] = {
        "vcf": str(case.vcf),
        "fasta": str(REFERENCE),
        "windows": case.windows,
        "samples": people,
        "workdir": str(job / "work"),
        "check_samples": check_samples,
        "check_path": str(job / "check.fa"),
        **tool.spec,
    }
    env = {**os.environ, "TQDM_DISABLE": "1"}
    python = sys.executable
    if tool.worker == "ours":
        spec.update(
            genes=case.annotation.to_dict("records"),
            width=case.width,
            store=str(job / "store.zarr") if args.ours_store else None,
        )
        cmd_tail = [str(Path(__file__).resolve()), "--worker-ours"]
        src = str(ROOT / "src")  # benchmark the working tree
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    else:
        cmd_tail = [str(HERE / "competitors.py"), "--worker", tool.worker]
        if tool.worker == "gvl" and args.gvl_python:
            python = args.gvl_python
    spec_path, out_path = job / "spec.json", job / "result.json"
    spec_path.write_text(json.dumps(spec, default=_json_default))
    cmd = [python, *cmd_tail, "--spec", str(spec_path), "--out", str(out_path)]

    load_before = os.getloadavg()[0]
    rc, wall, peak = monitored_run(cmd, env, job / "log.txt", args.timeout)
    if out_path.exists():
        result = json.loads(out_path.read_text())
    else:
        tail = (job / "log.txt").read_text(errors="replace")[-2000:]
        result = {"ok": False, "error": f"exit code {rc}, no result; log tail:\n{tail}"}
    result.update(
        tool=tool.name,
        label=tool.label,
        case=case.name,
        returncode=rc,
        process_wall_s=wall,
        peak_rss_polled_mib=peak,
        load_avg_1min_before=load_before,
        people_built=len(people),
        check_path=str(job / "check.fa"),
    )
    return result


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    raise TypeError(f"not JSON serialisable: {type(obj)}")


# ======================================================================================
# metrics and report
# ======================================================================================

PREP_PHASES = ("write", "convert", "windows")
BUILD_PHASES = ("build", "dense", "open", "read")


def summarize(result: dict[str, Any], case: Case) -> dict[str, Any]:
    """Derive times, throughputs and memory from a raw tool result."""
    row: dict[str, Any] = {"tool": result["tool"], "label": result["label"], "ok": result["ok"]}
    rss = [result.get("peak_rss_polled_mib"), result.get("rss_self_mib")]
    row["peak_rss_mib"] = max((r for r in rss if r is not None), default=None)
    row["process_wall_s"] = result["process_wall_s"]
    if not result["ok"]:
        row["error"] = result.get("error", "failed")
        return row
    phases = result["phases"]
    people = result.get("people") or result["people_built"]
    if result["tool"] == "ours":
        people = case.n_people
    scale = case.n_people / people  # > 1 when a subset was measured (bcftools)
    t_import = phases.get("import", 0.0)
    t_prep = sum(phases.get(p, 0.0) for p in PREP_PHASES)
    t_build = sum(phases.get(p, 0.0) for p in BUILD_PHASES)
    one_shot = t_import + t_prep + t_build * scale
    measured_bp = case.nominal_bp(people)
    row.update(
        people=people,
        extrapolated=scale > 1,
        import_s=t_import,
        prep_s=t_prep,
        build_s=t_build,
        one_shot_s=one_shot,
        one_shot_extrapolated_s=one_shot if scale > 1 else None,
        bases=result.get("bases"),
        nominal_bp=measured_bp,
        build_hbps=measured_bp / t_build if t_build > 0 else math.inf,
        one_shot_hbps=case.nominal_bp() / one_shot if one_shot > 0 else math.inf,
        versions=result.get("versions", {}),
        load_avg_1min_before=result.get("load_avg_1min_before"),
    )
    if "read_warm" in phases:
        row["warm_read_hbps"] = measured_bp / phases["read_warm"]
    if "open" in phases:
        row["open_s"] = phases["open"]
    if "dense" in phases:  # ours: distinct haplotypes + index, before expanding
        row["store_hbps"] = measured_bp / phases["build"]
        row["unique_haplotypes"] = result.get("unique_haplotypes")
        row["peak_rss_before_dense_mib"] = result.get("peak_rss_before_dense_mib")
    return row


def compare_checks(results: list[dict[str, Any]], case: Case) -> dict[str, str]:
    """Compare the tools' check haplotypes (first and last person, every window).

    Each tool is compared with ``bcftools`` (the reference behaviour, indels included) and
    with the ``bare`` SNV loop, where those ran. Returns a note per tool such as
    ``"= bcftools 120/120, = bare 112/120"`` (identical haplotype-windows / checked).
    """
    available = {
        r["tool"]: read_check_fasta(r["check_path"])
        for r in results
        if r["ok"] and Path(r["check_path"]).exists()
    }
    names = [
        check_name(s, h, w)
        for s in (case.samples[0], case.samples[-1])
        for h in (1, 2)
        for w in case.windows
    ]
    references = [t for t in ("bcftools", "bcftools-vcf", "bare") if t in available]
    if "bcftools" in references and "bcftools-vcf" in references:
        references.remove("bcftools-vcf")
    notes: dict[str, str] = {}
    for tool, recs in available.items():
        parts = []
        for ref_tool in references:
            if ref_tool == tool or (tool.startswith("bcftools") and ref_tool.startswith("bcf")):
                continue
            same = sum(n in recs and recs[n] == available[ref_tool].get(n) for n in names)
            parts.append(f"= {ref_tool} {same}/{len(names)}")
        if parts:
            notes[tool] = "check haplotypes " + ", ".join(parts)
    return notes


def _fmt_rate(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    for unit, div in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= div:
            return f"{x / div:.3g} {unit}"
    return f"{x:.3g}"


def _fmt_s(x: float | None) -> str:
    return "–" if x is None or x == 0 else (f"{x:.3g}" if x < 100 else f"{x:,.0f}")


def _fmt_ratio(ours: float | None, tool: float | None) -> str:
    if not ours or not tool or not math.isfinite(ours) or not math.isfinite(tool):
        return "n/a"
    return f"{ours / tool:.3g}×"


def render_case(case: Case, rows: list[dict[str, Any]], checks: dict[str, str]) -> str:
    """Markdown section for one case."""
    ours = next((r for r in rows if r["tool"] == "ours" and r["ok"]), None)
    lines = [
        f"### `{case.name}`: {case.title}",
        "",
        f"{case.n_people:,} people x 2 haplotypes x {len(case.windows)} windows x "
        f"{case.width:,} bp = {case.nominal_bp() / 1e9:.3g} G haplotype-bp; "
        f"VCF: `{case.vcf.name}`, {case.n_sites:,} records.",
        "",
        "| tool | people built | import s | prep s | build s | one-shot s "
        "| build hap-bp/s | one-shot hap-bp/s | ours × faster (build / one-shot) "
        "| peak RSS MiB | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        label = r["label"].replace("|", "\\|")
        rss = "n/a" if r["peak_rss_mib"] is None else f"{r['peak_rss_mib']:,.0f}"
        if not r["ok"]:
            err = r["error"].splitlines()[0][:120].replace("|", "/")
            lines.append(f"| {label} | – | – | – | – | – | – | – | – | {rss} | failed: {err} |")
            continue
        notes = []
        if r["extrapolated"]:
            notes.append(
                f"measured on {r['people']:,} of {case.n_people:,} people, "
                "one-shot extrapolated per haplotype-bp"
            )
        if "warm_read_hbps" in r:
            notes.append(f"read again (warm): {_fmt_rate(r['warm_read_hbps'])} hap-bp/s")
        if r["tool"] == "bare":
            notes.append("SNVs only, indels ignored")
        if "store_hbps" in r:
            notes.append(
                f"distinct haplotypes + index: {_fmt_rate(r['store_hbps'])} hap-bp/s "
                f"(peak RSS {r['peak_rss_before_dense_mib']:,.0f} MiB), "
                "then expanded to every person's bytes"
            )
        if r["tool"] in checks:
            notes.append(checks[r["tool"]])
        load = r.get("load_avg_1min_before")
        if load is not None and load > (os.cpu_count() or 1) * 0.75:
            notes.append(f"machine busy (load {load:.1f})")
        people = f"{r['people']:,}" + (" *" if r["extrapolated"] else "")
        build_ratio = _fmt_ratio(ours and ours["build_hbps"], r["build_hbps"])
        shot_ratio = _fmt_ratio(ours and ours["one_shot_hbps"], r["one_shot_hbps"])
        lines.append(
            f"| {label} | {people} | {_fmt_s(r['import_s'])} | {_fmt_s(r['prep_s'])} "
            f"| {_fmt_s(r['build_s'])} | {_fmt_s(r['one_shot_s'])} "
            f"| {_fmt_rate(r['build_hbps'])} | {_fmt_rate(r['one_shot_hbps'])} "
            f"| {build_ratio} / {shot_ratio} | {rss} | {'; '.join(notes)} |"
        )
    return "\n".join(lines) + "\n"


LEGEND = """\
Columns: *import* = importing the tool's Python package; *prep* = one-off preparation
(GenVarLoader: `gvl.write` of the dataset incl. its VCF index; bcftools: VCF -> indexed
BCF; ours: `gene_windows`); *build* = producing every haplotype of every person over every
window in memory (GenVarLoader: `Dataset.open` + reading all haplotypes; bcftools: the
2 x N `samtools faidx | bcftools consensus` pipelines); *one-shot* = import + prep + build
(for bcftools, build is extrapolated from the measured people (*) to the whole cohort).
hap-bp/s = people x 2 x window length x windows / seconds. *ours × faster* = our
throughput ÷ the tool's (> 1: ours is faster). Peak RSS = the larger of the summed RSS
of the tool's process tree (polled every 20 ms) and the worker's own peak (`VmHWM`).
Every tool runs in a fresh Python subprocess; times exclude interpreter start-up. On a
shared machine, rows flagged "machine busy" ran while other work was using the cores.
"""


def machine_info() -> dict[str, Any]:
    """CPU, memory and versions, for the report."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        mem_kb = next(
            int(line.split()[1])
            for line in Path("/proc/meminfo").read_text().splitlines()
            if line.startswith("MemTotal")
        )
    except (OSError, StopIteration):
        mem_kb = 0
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
    }


def write_report(
    sections: list[str],
    payload: dict[str, Any],
    quick: bool,
    out_dir: Path,
) -> Path:
    """Write the markdown and JSON reports; return the markdown path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    store = payload["args"].get("ours_store")
    stem = "haplotypes" + ("_quick" if quick else "") + ("_store" if store else "")
    info = payload["machine"]
    versions: dict[str, str] = {}
    for case in payload["cases"]:
        for row in case["rows"]:
            versions.update(row.get("versions", {}))
    header = [
        "## Building personal haplotype sequences" + (" (quick run)" if quick else ""),
        "",
        f"Machine: {info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB RAM; "
        f"Python {info['python']}; "
        + ", ".join(f"{k} {v}" for k, v in sorted(versions.items()))
        + f". Run {payload['started']}, {payload['total_seconds']:.0f} s in all.",
        "",
        LEGEND,
    ]
    md = "\n".join(header) + "\n" + "\n".join(sections)
    md_path = out_dir / f"{stem}.md"
    md_path.write_text(md)
    (out_dir / f"{stem}.json").write_text(
        json.dumps(payload, indent=2, default=_json_default) + "\n"
    )
    return md_path


# ======================================================================================
# main
# ======================================================================================


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tools",
        default="ours,gvl,bare,bcftools,bcftools-vcf",
        help=f"comma-separated, from {','.join(TOOLS)} (default: all)",
    )
    parser.add_argument(
        "--cases",
        default=None,
        help="comma-separated, from real_4k,real_49k,sim_4k,sim_49k "
        "(default: all; with --quick: real_4k,sim_4k)",
    )
    parser.add_argument("--quick", action="store_true", help="small CI smoke run (< 1 min)")
    parser.add_argument(
        "--n-people", type=int, default=None, help="simulated cohort size (default 2,500)"
    )
    parser.add_argument(
        "--bcftools-people",
        type=int,
        default=None,
        help="people measured with bcftools on BCF, then extrapolated (default 100; 0 = all)",
    )
    parser.add_argument(
        "--bcftools-vcf-people",
        type=int,
        default=None,
        help="people measured with bcftools on the VCF.gz (default 10; 0 = all)",
    )
    parser.add_argument(
        "--gvl-python",
        default=os.environ.get("GVL_PYTHON"),
        help="Python interpreter with genvarloader (default: this one; env GVL_PYTHON)",
    )
    parser.add_argument(
        "--ours-store", action="store_true", help="let ours write a store instead of memory"
    )
    parser.add_argument(
        "--bcf",
        action="store_true",
        help="give every tool an indexed BCF instead of the bgzipped VCF (converted untimed)",
    )
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per tool run")
    parser.add_argument("--out-dir", type=Path, default=RESULTS)
    parser.add_argument("--worker-ours", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker_ours:
        return args
    args.tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    if unknown := [t for t in args.tools if t not in TOOLS]:
        parser.error(f"unknown tools {unknown}; choose from {list(TOOLS)}")
    default_cases = "real_4k,sim_4k" if args.quick else "real_4k,real_49k,sim_4k,sim_49k"
    args.cases = [c.strip() for c in (args.cases or default_cases).split(",") if c.strip()]
    if unknown := [c for c in args.cases if c not in ("real_4k", "real_49k", "sim_4k", "sim_49k")]:
        parser.error(f"unknown cases {unknown}")
    if args.bcftools_people is None:
        args.bcftools_people = 4 if args.quick else 100
    if args.bcftools_vcf_people is None:
        args.bcftools_vcf_people = 2 if args.quick else 10
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with ``--worker-ours``, the ours worker)."""
    args = parse_args(argv)
    if args.worker_ours:
        return competitors.run_worker(run_ours, args.spec, args.out)

    started = time.strftime("%Y-%m-%d %H:%M")
    t_start = time.perf_counter()
    cases = build_cases(args)
    sections: list[str] = []
    payload: dict[str, Any] = {
        "started": started,
        "machine": machine_info(),
        "args": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "cases": [],
    }
    for case in cases:
        print(
            f"\n== {case.name}: {case.title}; {case.n_people} people, "
            f"{case.nominal_bp() / 1e9:.3g} G hap-bp",
            flush=True,
        )
        raw = []
        for name in args.tools:
            result = run_tool(TOOLS[name], case, args)
            raw.append(result)
            status = "ok" if result["ok"] else f"FAILED ({result.get('error', '')[:200]})"
            print(f"   {name:<13} {result['process_wall_s']:8.1f} s  {status}", flush=True)
        rows = [summarize(r, case) for r in raw]
        checks = compare_checks(raw, case)
        section = render_case(case, rows, checks)
        print("\n" + section, flush=True)
        sections.append(section)
        payload["cases"].append(
            {
                "name": case.name,
                "title": case.title,
                "vcf": str(case.vcf),
                "n_sites": case.n_sites,
                "people": case.n_people,
                "windows": len(case.windows),
                "width": case.width,
                "nominal_hap_bp": case.nominal_bp(),
                "rows": rows,
                "checks": checks,
                "raw": raw,
            }
        )
    payload["total_seconds"] = time.perf_counter() - t_start
    md_path = write_report(sections, payload, args.quick, args.out_dir)
    print(f"wrote {md_path} and {md_path.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
