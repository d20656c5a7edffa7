"""The distributed engine on a simulated cohort: haplotypes -> embeddings -> store.

A cohort of ``--n-people`` simulated people (msprime on the real 1 Mb of chr20, as
``simulate_cohort.py`` makes it) and ``--windows`` windows of ``--width`` bp spread over the
1 Mb (as ``bench_haplotypes.py`` places them) go through ``gl.pp.personal_sequences`` and
``gl.tl.embed`` (the default genlm_conv architecture at ``--hidden`` channels and
``--layers`` layers, random weights: speed does not depend on them) on a ``LocalCluster``
of 1 and then 2 worker processes, one thread each, in one run. Recorded per phase: wall
seconds, haplotype-bp per second per worker, and the peak resident memory of each worker
process (sampled every 0.1 s with psutil). The 2-worker results are checked against the
1-worker ones (stores equal array by array, embeddings within 1e-5).

Resuming: a 2-worker build in a child process is killed once half of its gene-group parts
are complete, then run again; the second run reports how many parts it reused and its
time. The same for embedding: killed once half of the chunks are saved in the chunk
cache, then run again, reporting the chunks it computed.

Growth: distinct haplotypes and distinct 512-token chunks over all windows, at each of
``--sizes`` people (one process), fitted as a power of the number of people, and from
these an estimate for 500,000 people x 20,000 genes (see ``docs/scaling.md``).

    python benchmarks/bench_engine.py                     # 10,000 people, 200 x 4 kb
    python benchmarks/bench_engine.py --n-people 2000 --sizes 500 1000 2000   # quicker
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.fspath(HERE))

from bench_haplotypes import machine_info, window_annotation  # noqa: E402
from simulate_cohort import REFERENCE, SimulationParams, simulate_cohort  # noqa: E402

from genlm_sc.tl.language_model.chunk_cache import CACHE_FOLDER  # noqa: E402
from genlm_sc.tl.language_model.embed_tasks import ROWS_PER_TASK  # noqa: E402


class PeakMemory:
    """Peak resident memory of every process under ``root`` (this one excluded)."""

    def __init__(self, interval: float = 0.1) -> None:
        self.interval = interval
        self.peaks: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.is_set():
            for child in me.children(recursive=True):
                try:
                    rss = child.memory_info().rss
                except psutil.Error:
                    continue
                self.peaks[child.pid] = max(self.peaks.get(child.pid, 0), rss)
            time.sleep(self.interval)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def default_model(folder: Path, hidden: int, layers: int) -> Path:
    """The default genlm_conv masked LM (random weights) with a char tokenizer."""
    import torch

    from genlm_sc.models import GenlmConvConfig, GenlmConvForMaskedLM, build_tokenizer

    torch.manual_seed(0)
    tokenizer = build_tokenizer("char", model_max_length=512)
    config = GenlmConvConfig(vocab_size=len(tokenizer), hidden_size=hidden, num_conv_layers=layers)
    GenlmConvForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def panel_of(n_windows: int, width: int):
    import genlm_sc as gl

    table = window_annotation(n_windows, width)
    folder = Path(tempfile.mkdtemp())
    table.to_csv(folder / "windows.tsv", sep="\t", index=False)
    return gl.pp.gene_windows(table, fasta=REFERENCE, width=width)


EMBED = {"device": "cpu", "precision": "fp32", "max_length": 512, "batch_size": 16,
         "progress": False}  # fmt: skip


def growth(sizes: list[int], panel, model: Path, work: Path) -> list[dict]:
    """Distinct haplotypes and distinct chunks over all windows at each cohort size."""
    import genlm_sc as gl

    rows = []
    for n in sizes:
        vcf = simulate_cohort(SimulationParams(n_people=n), verbose=False)
        start = time.perf_counter()
        cohort = gl.pp.personal_sequences(
            vcf, fasta=REFERENCE, genes=panel, unphased="as_listed", progress=False,
            store=work / f"growth_{n}" / "cohort.zarr",
        )  # fmt: skip
        build = time.perf_counter() - start
        start = time.perf_counter()
        gl.tl.embed(cohort, model=model, **EMBED)
        embed = time.perf_counter() - start
        record = cohort.uns["gl"]["embeddings"]["X_gl"]
        store = work / f"growth_{n}" / "cohort.zarr"
        ds = gl.get.haplotype_store(cohort)
        per_person = [k for k in ds.data_vars if "sample" in ds[k].dims]
        rows.append({
            "store_bytes": sum(f.stat().st_size for f in store.rglob("*") if f.is_file()),
            "embedding_bytes": _folder_bytes(store, "X_gl"),
            "per_person_arrays": {  # bytes on disk, and cells, of the arrays with a sample axis
                k: {"bytes": _folder_bytes(store / "haplotypes", k), "cells": int(ds[k].size),
                    "dims": dict(ds[k].sizes)} for k in per_person
            },
            "people": n, "windows": int(cohort.n_vars),
            "variants": int(cohort.var["n_variants"].sum()),
            "distinct_haplotypes": int(cohort.var["n_haplotypes"].sum()),
            "chunks_of_distinct_haplotypes": int(record["n_chunks"]),
            "distinct_chunks": int(record["n_forward_chunks"]),
            "build_seconds": round(build, 2), "embed_seconds": round(embed, 2),
        })  # fmt: skip
        print(rows[-1], flush=True)
        shutil.rmtree(work / f"growth_{n}", ignore_errors=True)
    return rows


def _folder_bytes(store: Path, name: str) -> int:
    """Bytes on disk of the store's arrays called ``name``."""
    return sum(f.stat().st_size for d in store.rglob(name) if d.is_dir()
               for f in d.rglob("*") if f.is_file())  # fmt: skip


def estimate(result: dict, people: int = 500_000, genes: int = 20_000) -> dict:
    """Storage, CPU-hours and workers for ``people`` x ``genes`` windows like these, from the
    measured growth (power fits) and the measured 1-worker rates."""
    fits, windows = result["growth_fit"], result["windows"]
    scale = genes / windows
    at = {name: fits[name]["a"] * people ** fits[name]["b"] * scale for name in fits}
    # arrays with a sample axis: the largest cohort's bytes per cell, times their cells here
    # (people x genes or variants x ploidy), not a power fit in the number of people
    largest = result["growth"][-1]
    per_person = 0.0
    for array in largest["per_person_arrays"].values():
        cells = array["cells"] * people / array["dims"]["sample"]
        if "gene" in array["dims"]:
            cells *= scale
        if "variant" in array["dims"]:
            cells *= at["variants"] / array["dims"]["variant"]
        per_person += array["bytes"] / array["cells"] * cells
    one = result["runs"][0]
    bp = people * 2 * result["width"] * genes
    build_cpu_h = bp / one["haplotype_bp_per_second_per_worker"] / 3600
    embed_cpu_h = at["distinct_chunks"] / one["distinct_chunks_per_second_per_worker"] / 3600
    return {
        "people": people, "genes": genes, "window_bp": result["width"],
        "distinct_haplotypes": round(at["distinct_haplotypes"]),
        "distinct_chunks": round(at["distinct_chunks"]),
        "haplotype_store_gb": round((at["store_bytes_other_arrays"] + per_person) / 1e9, 1),
        "of_which_per_person_arrays_gb": round(per_person / 1e9, 1),
        "embeddings_gb_float32_768_dims": round(at["distinct_haplotypes"] * 768 * 4 / 1e9, 1),
        "build_cpu_hours": round(build_cpu_h),
        "embed_cpu_hours_this_small_model": round(embed_cpu_h),
        "workers_for_build_in_24h": int(np.ceil(build_cpu_h / 24)),
        "assumptions": "every gene a window of this width with this simulated diversity "
                       "(OOA European demography on real chr20); distinct counts and the "
                       "store's arrays without a sample axis extrapolated by their power fits "
                       "in the number of people, arrays with a sample axis by their measured "
                       "bytes per cell at the largest cohort; build time "
                       "proportional to haplotype bases at the measured 1-worker rate; "
                       "embedding CPU time per distinct chunk of this small model. GPU hours "
                       "are not estimated: no GPU was measured.",
    }  # fmt: skip


def power_fit(sizes, values) -> dict:
    """``value = a * people ** b`` by least squares on the logs."""
    b, log_a = np.polyfit(np.log(sizes), np.log(values), 1)
    return {"a": float(np.exp(log_a)), "b": round(float(b), 3)}


def run_on(n_workers: int, vcf: Path, panel, model: Path, store: Path) -> dict:
    """Build and embed on a LocalCluster of ``n_workers`` worker processes."""
    from distributed import Client, LocalCluster

    import genlm_sc as gl

    with (
        LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                     dashboard_address=None) as local,
        Client(local) as client,
        PeakMemory() as memory,
    ):  # fmt: skip
        workers = set(client.run(os.getpid).values())
        start = time.perf_counter()
        cohort = gl.pp.personal_sequences(
            vcf, fasta=REFERENCE, genes=panel, unphased="as_listed", progress=False,
            store=store, client=client,
        )  # fmt: skip
        build = time.perf_counter() - start
        start = time.perf_counter()
        gl.tl.embed(cohort, model=model, client=client, **EMBED)
        embed = time.perf_counter() - start
    peaks = [memory.peaks.get(pid, 0) / 2**20 for pid in sorted(workers)]
    bp = cohort.n_obs * 2 * int((panel.obs["end"] - panel.obs["start"]).sum())
    return {
        "workers": n_workers,
        "build_seconds": round(build, 2),
        "embed_seconds": round(embed, 2),
        "haplotype_bp_per_second_per_worker": round(bp / build / n_workers),
        "distinct_chunks_per_second_per_worker": round(
            cohort.uns["gl"]["embeddings"]["X_gl"]["n_forward_chunks"] / embed / n_workers, 1
        ),
        "peak_worker_memory_mib": [round(p) for p in peaks],
        "parts": cohort.uns["gl"]["parts"],
    }


def same_results(a: Path, b: Path) -> dict:
    import genlm_sc as gl

    one, two = gl.read(a), gl.read(b)
    ours, theirs = gl.get.haplotype_store(one), gl.get.haplotype_store(two)
    equal = all(np.array_equal(ours[k].values, theirs[k].values) for k in ours.data_vars)
    x, y = (gl.get.haplotype_store(c)["X_gl"].values for c in (one, two))
    rel = float(np.max(np.abs(x - y)) / max(np.max(np.abs(x)), 1e-30))
    return {"haplotypes_equal": bool(equal), "embeddings_max_relative_difference": rel}


CHILD = """
import sys, pickle
sys.path.insert(0, {here!r})
import genlm_sc as gl
if __name__ == "__main__":
    panel = pickle.load(open({panel!r}, "rb"))
    if {what!r} == "build":
        gl.pp.personal_sequences({vcf!r}, fasta={fasta!r}, genes=panel, unphased="as_listed",
                                 progress=False, store={store!r}, n_jobs=2)
    else:
        cohort = gl.read({store!r})
        gl.tl.embed(cohort, model={model!r}, n_jobs=2, **{embed!r})
"""


def killed_and_resumed(vcf: Path, panel, model: Path, work: Path) -> dict:
    """Kill a 2-worker build (then embedding) half-way; run it again; what was kept."""
    import pickle

    import genlm_sc as gl
    from genlm_sc.pp.cohort_parts import parts_folder

    store = work / "resumed" / "cohort.zarr"
    store.parent.mkdir()
    pickle.dump(panel, open(work / "panel.pkl", "wb"))
    script = work / "child.py"
    result = {}
    for what in ("build", "embed"):
        script.write_text(CHILD.format(
            here=os.fspath(HERE), panel=os.fspath(work / "panel.pkl"), what=what,
            vcf=os.fspath(vcf), fasta=os.fspath(REFERENCE), store=os.fspath(store),
            model=os.fspath(model), embed=EMBED,
        ))  # fmt: skip
        if what == "build":
            done = functools.partial(_parts_done, parts_folder(store))
            target = _n_groups(panel, 2) // 2
        else:  # each task saves its chunks to the cache once: half the tasks
            rows = gl.get.haplotype_store(gl.read(store)).sizes["haplotype"]
            done = functools.partial(_shards_saved, store.parent / CACHE_FOLDER)
            target = max(1, int(np.ceil(rows / ROWS_PER_TASK)) // 2)
        child = subprocess.Popen([sys.executable, os.fspath(script)], start_new_session=True)
        start = time.perf_counter()
        while child.poll() is None and done() < target:
            time.sleep(0.02)
        killed_after = time.perf_counter() - start
        finished_before_kill = child.poll() is not None
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        kept = done()
        start = time.perf_counter()
        if what == "build":
            cohort = gl.pp.personal_sequences(
                vcf, fasta=REFERENCE, genes=panel, unphased="as_listed", progress=False,
                store=store, n_jobs=2,
            )  # fmt: skip
            again = {"parts": cohort.uns["gl"]["parts"]}
        else:
            cohort = gl.read(store)
            gl.tl.embed(cohort, model=model, n_jobs=2, **EMBED)
            record = cohort.uns["gl"]["embeddings"]["X_gl"]
            again = {"computed_chunks_after_resume": int(record["n_forward_chunks"])}
        result[what] = {
            "killed_after_seconds": round(killed_after, 2),
            "finished_before_kill": finished_before_kill,
            "kept_when_killed": kept,
            "rerun_seconds": round(time.perf_counter() - start, 2),
            **again,
        }
        print(what, result[what], flush=True)
    return result


def _parts_done(folder: Path) -> int:
    from genlm_sc.store.files import is_cohort_store

    return sum(is_cohort_store(p) for p in folder.glob("part-*")) if folder.exists() else 0


def _shards_saved(cache: Path) -> int:
    return len(list(cache.glob("*/shard-*.npz")))


def _n_groups(panel, n_workers: int) -> int:
    from genlm_sc.pp.cohort_parts import gene_groups

    per_group = int(np.clip(np.ceil(panel.n_obs / (4 * n_workers)), 1, 16))
    return len(gene_groups(panel.obs, per_group))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-people", type=int, default=10_000)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 2500, 10_000])
    parser.add_argument("--windows", type=int, default=200)
    parser.add_argument("--width", type=int, default=4096)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "engine.json")
    parser.add_argument(
        "--growth-only",
        action="store_true",
        help="measure the growth with cohort size again and update --out's growth and estimate",
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="bench_engine_"))
    model = default_model(work / "model", args.hidden, args.layers)
    panel = panel_of(args.windows, args.width)
    if args.growth_only:
        result = json.loads(args.out.read_text())
        fit_growth(result, growth(args.sizes, panel, model, work), args.out)
        shutil.rmtree(work, ignore_errors=True)
        return
    vcf = simulate_cohort(SimulationParams(n_people=args.n_people), verbose=False)
    result = {
        "cohort": f"{args.n_people:,} simulated people (msprime, OOA demography, real chr20 1 Mb)",
        "windows": args.windows, "width": args.width,
        "model": f"genlm_conv {args.layers} layers x {args.hidden} channels, char tokens, "
                 "512-token chunks, random weights",
        "machine": machine_info(),
    }  # fmt: skip
    # each store in its own folder: the chunk cache beside a store is not shared
    runs = [run_on(n, vcf, panel, model, work / f"w{n}" / "cohort.zarr") for n in (1, 2)]
    for r in runs:
        print(r, flush=True)
    result["runs"] = runs
    result["two_vs_one_worker"] = {
        **same_results(work / "w1" / "cohort.zarr", work / "w2" / "cohort.zarr"),
        "build_speedup": round(runs[0]["build_seconds"] / runs[1]["build_seconds"], 2),
        "embed_speedup": round(runs[0]["embed_seconds"] / runs[1]["embed_seconds"], 2),
    }
    result["resume"] = killed_and_resumed(vcf, panel, model, work)
    fit_growth(result, growth(args.sizes, panel, model, work), args.out)
    shutil.rmtree(work, ignore_errors=True)


def fit_growth(result: dict, rows: list[dict], out: Path) -> None:
    """Growth rows, their power fits and the estimate into ``result``, written to ``out``."""
    result["growth"] = rows
    sizes = [r["people"] for r in rows]
    result["growth_fit"] = {
        name: power_fit(sizes, [r[name] for r in rows])
        for name in ("distinct_haplotypes", "distinct_chunks", "variants")
    }
    result["growth_fit"]["store_bytes_other_arrays"] = power_fit(sizes, [
        r["store_bytes"] - r["embedding_bytes"]
        - sum(a["bytes"] for a in r["per_person_arrays"].values()) for r in rows
    ])  # fmt: skip
    result["estimate"] = estimate(result)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
