"""Wall time and peak memory of ``gl.tl.fit_expression`` on 30 genes × 503 people.

The shipped example cohort (503 people of 1000 Genomes, 30 chr20 genes) with expression
simulated from planted causal variants (h² 0.1–0.5, 1–5 causal variants). Each method runs
in its own subprocess (so peak memory is its own), on the same 5 outer folds:

* ``predixcan``: elastic net on the dosages of the variants stored for each gene window
  (PrediXcan's ±1 Mb cis window is clipped to the window, ``--width``);
* ``elastic_net`` and ``ridge`` on haplotype embeddings (two haplotypes concatenated),
  the embeddings made first by ``gl.tl.embed`` with the model given (timed separately);
* ``finetune``: one epoch of LoRA fine-tuning per outer fold of the model given, on
  ``--finetune-genes`` genes (time reported per epoch of one fold, ~402 training people).

Writes ``results/bench_expression.json``.

    python benchmarks/bench_expression.py --model work/pretrain/reference --width 1024
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
RESULTS = HERE / "results"


def worker(method: str, model: str, width: int, n_genes: int, store: str) -> dict:
    import torch

    import genlm_sc as gl

    torch.set_num_threads(2)
    cohort = gl.read(store)
    genes = list(cohort.var_names[:n_genes])
    started = time.perf_counter()
    if method == "embed":
        gl.tl.embed(cohort, model=model, progress=False, device="cpu")
        gl.write(cohort, store)
    elif method == "finetune":
        options = {"model": model, "strategy": "lora", "epochs": 1, "batch_size": 16,
                   "device": "cpu", "progress": False}  # fmt: skip
        gl.tl.fit_expression(cohort, method="finetune", genes=genes, finetune_options=options)
    else:
        gl.tl.fit_expression(cohort, method=method, genes=genes)
    elapsed = time.perf_counter() - started
    table = cohort.uns.get("gl_expression", {}).get("results")
    r = float(np.nanmean(table[table["method"] == method]["r"])) if table is not None else None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # MiB on Linux
    return {"method": method, "genes": len(genes), "width": width, "wall_s": elapsed,
            "peak_rss_mib": peak, "mean_r": r}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", required=True, help="a gl.tl.pretrain folder")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--finetune-genes", type=int, default=2)
    parser.add_argument("--worker", nargs=4, metavar=("METHOD", "GENES", "WIDTH", "STORE"))
    args = parser.parse_args()
    if args.worker:
        method, n_genes, width, store = args.worker
        print(json.dumps(worker(method, args.model, int(width), int(n_genes), store)))
        return

    import genlm_sc as gl

    RESULTS.mkdir(exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench_expression_"))
    store = folder / "cohort.zarr"
    cohort = gl.datasets.example_cohort(width=args.width)
    gl.datasets.simulate_expression(cohort, n_causal=(1, 5), h2=(0.1, 0.5), random_state=0)
    gl.write(cohort, store)
    runs = []
    plan = [("embed", 30), ("predixcan", 30), ("elastic_net", 30), ("ridge", 30),
            ("finetune", args.finetune_genes)]  # fmt: skip
    for method, n_genes in plan:
        command = [sys.executable, __file__, "--model", args.model,
                   "--worker", method, str(n_genes), str(args.width), str(store)]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=True)
        result = json.loads(done.stdout.strip().splitlines()[-1])
        runs.append(result)
        print(json.dumps(result), flush=True)
    finetune = runs[-1]
    report = {
        "people": int(cohort.n_obs), "width": args.width, "model": args.model,
        "runs": runs,
        # 5 outer folds per gene, one epoch over the ~402 training people of each
        "finetune_s_per_epoch": finetune["wall_s"] / (finetune["genes"] * 5),
    }  # fmt: skip
    (RESULTS / "bench_expression.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
