"""ISM and variant effects on worker processes against one process, in one run.

The shipped example cohort (503 people, its store on disk) and its first ``--genes`` genes
at ``--width`` bp go through ``gl.tl.attribute(method="ism", target="mlm")`` for the
reference and every distinct haplotype of the first ``--people`` people, and through
``gl.tl.variant_effects`` (masked and one-pass log-likelihood ratios, embedding shift),
with a masked LM of the default genlm_conv size (``--hidden`` channels, ``--layers``
blocks, random weights: speed does not depend on them). Each runs three ways:

* one process with the machine's PyTorch threads (what a user gets without ``n_jobs``),
* one process with one thread,
* a ``LocalCluster`` of ``--workers`` worker processes with one thread each, started as
  ``n_jobs=`` starts it, before the clock (its start is reported apart), given as
  ``client=``.

Recorded: wall seconds, sequences (ISM) or variants per second per worker, speed-ups, and
the largest difference between the workers' results and the one-process ones. Also: ISM of
one sequence in a one-worker cluster started with dask's default
``MALLOC_TRIM_THRESHOLD_=65536`` and in one started as ``n_jobs=`` starts its workers
(without it), the same sequence in this process as reference (``malloc_trim``).

    python benchmarks/bench_attribution_workers.py      # writes results/attribution_workers.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.fspath(HERE))

from bench_engine import default_model  # noqa: E402
from bench_haplotypes import machine_info  # noqa: E402

COMMON = {"device": "cpu", "batch_size": 32}


def timed(function) -> tuple[float, object]:
    start = time.perf_counter()
    value = function()
    return time.perf_counter() - start, value


def ism_differences(cohort, genes: list[str], key: str, reference_key: str) -> float:
    import genlm_sc as gl

    largest = 0.0
    for gene in genes:
        ours = gl.get.attribution(cohort, gene, key=key)["attribution"].values
        wanted = gl.get.attribution(cohort, gene, key=reference_key)["attribution"].values
        largest = max(largest, float(np.nanmax(np.abs(ours - wanted))))
    return largest


def effect_differences(cohort, genes: list[str], key: str, reference_key: str) -> float:
    import genlm_sc as gl

    largest = 0.0
    for gene in genes:
        ours = gl.get.variant_effects(cohort, gene, key=key)
        wanted = gl.get.variant_effects(cohort, gene, key=reference_key)
        for column in ("llr_masked", "llr_one_pass", "embedding_shift"):
            gap = np.abs(ours[column].to_numpy(float) - wanted[column].to_numpy(float))
            largest = max(largest, float(np.nanmax(gap)) if np.isfinite(gap).any() else 0.0)
    return largest


def malloc_trim(model: Path, width: int) -> dict[str, float]:
    """Seconds of one sequence's ISM (the second of two: the first loads the model) in this
    process and on one worker with and without dask's ``MALLOC_TRIM_THRESHOLD_``."""
    import torch
    from distributed import Client, LocalCluster

    from genlm_sc._engine import worker_environment
    from genlm_sc.tl.attribution.attribute import sequence_attribution

    rng = np.random.default_rng(0)
    task = {"model": os.fspath(model), "target": "mlm", "device": "cpu", "method": "ism",
            "options": {}, "batch_size": 32, "label": None, "anchor": width // 2,
            "wanted": None}  # fmt: skip

    def sequence() -> str:  # a new one each time: scores of chunks already seen are kept
        return "".join(rng.choice(list("ACGT"), width))

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    sequence_attribution(**task, sequence=sequence())
    seconds = {"this_process": timed(lambda: sequence_attribution(**task, sequence=sequence()))[0]}
    torch.set_num_threads(threads)
    for name, environment in (("worker_dask_default", contextlib.nullcontext()),
                              ("worker_n_jobs", worker_environment())):  # fmt: skip
        with environment:
            local = LocalCluster(n_workers=1, threads_per_worker=1, dashboard_address=None)
        with local, Client(local) as client:

            def on_worker() -> object:
                return client.submit(
                    sequence_attribution, **task, sequence=sequence(), pure=False
                ).result()

            on_worker()  # loads the model
            seconds[name] = timed(on_worker)[0]
    return {name: round(value, 2) for name, value in seconds.items()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--genes", type=int, default=6)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--people", type=int, default=60)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "attribution_workers.json")
    args = parser.parse_args(argv)

    import torch

    import genlm_sc as gl
    from genlm_sc._engine import cluster

    threads = torch.get_num_threads()
    work = Path(tempfile.mkdtemp(prefix="bench_attribution_"))
    model = default_model(work / "model", args.hidden, args.layers)
    example = gl.datasets.chr20_example()
    panel = gl.datasets.example_gene_panel(width=args.width)[: args.genes].copy()
    cohort = gl.pp.personal_sequences(
        example.vcf, fasta=example.fasta, genes=panel, unphased="random", progress=False,
        store=work / "cohort.zarr",
    )  # fmt: skip
    genes = list(cohort.var_names)
    samples = list(cohort.obs_names[: args.people])
    variants = {}

    def ism(key: str, **extra):
        return lambda: gl.tl.attribute(
            cohort, gene=genes, model=model, method="ism", target="mlm", samples=samples,
            key_added=key, **COMMON, **extra,
        )  # fmt: skip

    def effects(key: str, **extra):
        return lambda: gl.tl.variant_effects(
            cohort, gene=genes, model=model, key_added=key, **COMMON, **extra
        )

    runs: dict[str, dict[str, float]] = {"ism": {}, "variant_effects": {}}
    for name, n_threads in (("one_process", threads), ("one_process_one_thread", 1)):
        torch.set_num_threads(n_threads)
        runs["ism"][name] = timed(ism(f"ism_{name}"))[0]
        runs["variant_effects"][name] = timed(effects(f"effects_{name}"))[0]
    torch.set_num_threads(threads)
    for gene in genes:
        variants[gene] = len(gl.get.variant_effects(cohort, gene, key="effects_one_process"))
    sequences = sum(  # the reference and each distinct haplotype of the people
        gl.get.attribution(cohort, gene, key="ism_one_process").sizes["sequence"] for gene in genes
    )
    start = time.perf_counter()
    with cluster(None, args.workers) as client:  # the cluster n_jobs= starts
        client.wait_for_workers(args.workers)
        cluster_start = time.perf_counter() - start
        runs["ism"]["workers"] = timed(ism("ism_workers", client=client))[0]
        runs["variant_effects"]["workers"] = timed(effects("effects_workers", client=client))[0]

    trim = malloc_trim(model, args.width)
    n_variants = sum(variants.values())
    result = {
        "cohort": f"shipped example, 503 people, {len(genes)} genes at {args.width} bp",
        "model": f"genlm_conv masked LM, {args.layers} blocks x {args.hidden} channels, char "
        "tokens, random weights",
        "ism": f"target='mlm', reference + distinct haplotypes of {args.people} people: "
        f"{sequences} sequences x {3 * args.width} mutants",
        "variant_effects": f"model only (llr_masked, llr_one_pass, embedding_shift): "
        f"{n_variants} variant alleles",
        "machine": {**machine_info(), "torch_threads": threads},
        "workers": args.workers,
        "cluster_start_seconds": round(cluster_start, 2),
        "seconds": {k: {n: round(s, 2) for n, s in v.items()} for k, v in runs.items()},
        "per_worker_throughput": {
            "ism_sequences_per_second": {
                "one_process": round(sequences / runs["ism"]["one_process"], 3),
                "workers": round(sequences / runs["ism"]["workers"] / args.workers, 3),
            },
            "variant_effects_variants_per_second": {
                "one_process": round(n_variants / runs["variant_effects"]["one_process"], 2),
                "workers": round(n_variants / runs["variant_effects"]["workers"] / args.workers, 2),
            },
        },
        "speedup_workers_vs_one_process": {
            k: round(v["one_process"] / v["workers"], 2) for k, v in runs.items()
        },
        "speedup_workers_vs_one_thread": {
            k: round(v["one_process_one_thread"] / v["workers"], 2) for k, v in runs.items()
        },
        "malloc_trim_one_sequence_seconds": trim,
        "max_abs_difference_vs_one_process": {
            "ism": ism_differences(cohort, genes, "ism_workers", "ism_one_process"),
            "variant_effects": effect_differences(
                cohort, genes, "effects_workers", "effects_one_process"
            ),
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
