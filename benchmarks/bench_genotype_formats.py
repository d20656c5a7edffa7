"""Benchmark: read the same cohort from VCF, PLINK 2 PGEN, VCF Zarr and BGEN.

For each case the VCF is converted once (``plink2 --make-pgen``, ``vcf2zarr convert``,
``plink2 --export bgen-1.3 ref-first``; conversion times are reported but not compared),
then, in one process and alternating formats, each format is timed for

* ``build``: ``gl.pp.personal_sequences(path, fasta=..., genes=panel, unphased="as_listed")``
  (haplotypes in memory), and
* ``fetch``: opening the file with ``gl.io.open_genotypes`` and ``fetch``-ing every window
  of the panel (the raw reader, no haplotypes),

each the median of ``--repeats`` runs, and reported as a ratio to the VCF (VCF seconds /
format seconds: above 1 is faster than VCF). Every format's cohort is checked identical to
the VCF's (haplotype store and variant counts).

Cases: ``real`` = the shipped example (503 people, 7,568 records, the 30 genes, 4,096-bp
windows); ``sim`` = a simulated cohort (``simulate_cohort.py``, ``--n-people``, SNVs only)
over 200 windows of 4,096 bp.

Usage::

    python benchmarks/bench_genotype_formats.py                  # both cases
    python benchmarks/bench_genotype_formats.py --cases real --repeats 3

Results: ``benchmarks/results/genotype_formats.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from bench_haplotypes import real_annotation, window_annotation  # noqa: E402
from simulate_cohort import REFERENCE, WORK, SimulationParams, simulate_cohort  # noqa: E402

import genlm_sc as gl  # noqa: E402

FORMATS = ("vcf", "pgen", "vcf_zarr", "bgen")
RESULTS = HERE / "results"


def convert(vcf: Path, folder: Path) -> tuple[dict[str, Path], dict[str, float]]:
    """``vcf`` written as PGEN, VCF Zarr and BGEN under ``folder``, and the seconds each took."""
    from bio2zarr import vcf as vcf2zarr

    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    prefix = folder / "cohort"
    seconds = {}

    def plink2(*args: str) -> None:
        subprocess.run(["plink2", "--threads", "1", *args], check=True, capture_output=True)

    t0 = time.perf_counter()
    plink2("--vcf", str(vcf), "--make-pgen", "--out", str(prefix))
    seconds["pgen"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    vcf2zarr.convert([str(vcf)], str(folder / "cohort.vcz"), worker_processes=0)
    seconds["vcf_zarr"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    plink2("--pfile", str(prefix), "--export", "bgen-1.3", "ref-first", "--out", str(prefix))
    seconds["bgen"] = time.perf_counter() - t0 + seconds["pgen"]
    paths = {
        "vcf": vcf,
        "pgen": prefix.with_suffix(".pgen"),
        "vcf_zarr": folder / "cohort.vcz",
        "bgen": prefix.with_suffix(".bgen"),
    }
    return paths, seconds


def fetch_all(path: Path, windows: list[tuple[str, int, int]]) -> int:
    """Open ``path`` and fetch every window; the number of records read."""
    n = 0
    with gl.io.open_genotypes(path) as reader:
        for chrom, start, end in windows:
            n += len(reader.fetch(chrom, start, end))
    return n


def same_cohort(a, b) -> bool:
    """Whether two cohorts hold the same haplotype store and variant counts."""
    if not a.var["n_variants"].equals(b.var["n_variants"]):
        return False
    ours, theirs = gl.get.haplotype_store(a), gl.get.haplotype_store(b)
    return all(np.array_equal(ours[k].values, theirs[k].values) for k in theirs.data_vars)


def run_case(name: str, vcf: Path, annotation, repeats: int) -> dict:
    panel = gl.pp.gene_windows(annotation, fasta=REFERENCE, width=4096)
    windows = [
        (c, int(s), int(e))
        for c, s, e in zip(panel.obs["chrom"], panel.obs["start"], panel.obs["end"], strict=True)
    ]
    paths, convert_s = convert(vcf, WORK / f"formats_{name}")
    times = {f: {"build": [], "fetch": []} for f in FORMATS}
    cohorts = {}
    for _ in range(repeats):
        for fmt in FORMATS:  # alternate, so drifts in machine load hit every format alike
            t0 = time.perf_counter()
            cohorts[fmt] = gl.pp.personal_sequences(
                paths[fmt], fasta=REFERENCE, genes=panel, unphased="as_listed", progress=False
            )
            times[fmt]["build"].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            n_records = fetch_all(paths[fmt], windows)
            times[fmt]["fetch"].append(time.perf_counter() - t0)
    vcf_cohort = cohorts["vcf"]
    result = {
        "people": int(vcf_cohort.n_obs),
        "windows": len(windows),
        "records_in_windows": n_records,
        "convert_seconds": {k: round(v, 3) for k, v in convert_s.items()},
        "formats": {},
    }
    for fmt in FORMATS:
        build = statistics.median(times[fmt]["build"])
        fetch = statistics.median(times[fmt]["fetch"])
        vcf_build = statistics.median(times["vcf"]["build"])
        vcf_fetch = statistics.median(times["vcf"]["fetch"])
        result["formats"][fmt] = {
            "build_seconds": round(build, 4),
            "fetch_seconds": round(fetch, 4),
            "build_speed_vs_vcf": round(vcf_build / build, 3),
            "fetch_speed_vs_vcf": round(vcf_fetch / fetch, 3),
            "identical_to_vcf": same_cohort(cohorts[fmt], vcf_cohort),
            "all_build_seconds": [round(t, 4) for t in times[fmt]["build"]],
            "all_fetch_seconds": [round(t, 4) for t in times[fmt]["fetch"]],
        }
    return result


def markdown(results: dict) -> str:
    lines = [
        "# Reading one cohort from four genotype formats",
        "",
        f"Command: `{results['command']}`. Median of {results['repeats']} runs per format, "
        "formats alternated within each run; speed = VCF seconds / format seconds "
        "(above 1: faster than VCF). `build` = `gl.pp.personal_sequences`; `fetch` = "
        "`gl.io.open_genotypes` + `fetch` of every window. Machine: "
        f"{results['machine']}.",
        "",
    ]
    for name, case in results["cases"].items():
        lines += [
            f"## {name}: {case['people']} people, {case['windows']} windows of 4,096 bp, "
            f"{case['records_in_windows']:,} records read",
            "",
            "| format | build s | build speed vs VCF | fetch s | fetch speed vs VCF | "
            "identical to VCF | convert s |",
            "|---|---|---|---|---|---|---|",
        ]
        for fmt, row in case["formats"].items():
            lines.append(
                f"| {fmt} | {row['build_seconds']:.3f} | {row['build_speed_vs_vcf']:.2f}x | "
                f"{row['fetch_seconds']:.3f} | {row['fetch_speed_vs_vcf']:.2f}x | "
                f"{row['identical_to_vcf']} | {case['convert_seconds'].get(fmt, '')} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["real", "sim"], choices=["real", "sim"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--n-people", type=int, default=2500)
    parser.add_argument("--out-stem", default="genotype_formats",
                        help="results file names under benchmarks/results/")  # fmt: skip
    args = parser.parse_args(argv)
    results = {
        "command": "python benchmarks/bench_genotype_formats.py " + " ".join(argv or sys.argv[1:]),
        "repeats": args.repeats,
        "machine": f"{platform.processor() or platform.machine()}, {platform.system()}, "
        f"Python {platform.python_version()}",
        "cases": {},
    }
    for name in args.cases:
        if name == "real":
            vcf = gl.datasets.chr20_example().vcf
            annotation = real_annotation()
        else:
            vcf = simulate_cohort(SimulationParams(n_people=args.n_people))
            annotation = window_annotation(200, 4096)
        results["cases"][name] = run_case(name, Path(vcf), annotation, args.repeats)
        print(json.dumps(results["cases"][name]["formats"], indent=1))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out_stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (RESULTS / f"{args.out_stem}.md").write_text(markdown(results))


if __name__ == "__main__":
    main()
