"""Every ``gl.tl.fit_expression`` method against the oracle on semi-synthetic expression.

The case: the shipped example cohort (503 people of 1000 Genomes, the 30 chr20 genes in
512-bp windows centred on the TSS) with expression simulated by
``gl.datasets.simulate_expression(n_causal=(1, 5), h2=(0.1, 0.5), random_state=seed)``;
genes without a causal variant are left out. For each seed every method runs on the same
5 outer folds (``random_state=seed``) and is scored by out-of-fold r per gene, next to the
oracle (the r of the true genetic value with expression in the same people):

* ``predixcan``, ``elastic_net`` and ``ridge`` with their defaults, on every heritable gene;
* ``finetune``: LoRA, one epoch, on ``--finetune-genes`` heritable genes drawn at random
  per seed (for time);
* ``fusion``: the reduced, random-weight Enformer of ``cross_ancestry.py`` (dim 48, 2
  blocks pruned to 1, 8-bp bins, reading 256 bp around the TSS; heads trained 3 epochs)
  on every heritable gene. Its backbone has **random weights** (no published weights are
  reachable here), so its branch adds random features of the sequence, not Enformer's
  knowledge.

The language-model embeddings (and the model fine-tuned) come from the small genlm_conv
model of ``cross_ancestry.py``, pretrained on the reference megabase alone. No setting is
chosen on these data: every method has the one setting above, fixed before the run.

Writes ``results/expression_methods.{json,md,csv}``.

    OMP_NUM_THREADS=1 python benchmarks/expression_methods.py          # seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
from cross_ancestry import FUSION, pretrained_model

import genlm_sc as gl

HERE = Path(__file__).parent
RESULTS = HERE / "results"
METHODS = ("predixcan", "elastic_net", "ridge", "finetune", "fusion")


def options(method: str, model: Path) -> dict:
    """fit_expression keywords of ``method`` beyond the genes and folds."""
    common = {"device": "cpu", "progress": False}
    if method == "finetune":
        return {"finetune_options": {**common, "model": str(model), "strategy": "lora",
                                     "epochs": 1}}  # fmt: skip
    if method == "fusion":
        return {"fusion_options": {**common, **FUSION}}
    return {}


def run_seed(cohort, seed: int, args, model: Path) -> pd.DataFrame:
    simulated = cohort.copy()
    gl.datasets.simulate_expression(simulated, n_causal=(1, 5), h2=(0.1, 0.5), random_state=seed)
    heritable = list(simulated.var_names[simulated.var["sim_n_causal"] > 0])
    drawn = sorted(np.random.default_rng(seed).permutation(heritable)[: args.finetune_genes])
    seconds = {}
    for method in args.methods:
        genes = drawn if method == "finetune" else heritable
        started = time.perf_counter()
        gl.tl.fit_expression(
            simulated, method=method, genes=genes, random_state=seed, **options(method, model)
        )
        seconds[method] = time.perf_counter() - started
        print(f"seed {seed} {method}: {len(genes)} genes, {seconds[method]:.1f} s", flush=True)
    rows = gl.get.expression_results(simulated)
    rows["r"] = rows["r"].fillna(0.0)  # a constant prediction predicts nothing
    rows["in_finetune_genes"] = rows["gene"].isin(drawn)
    rows["seconds"] = rows["method"].map(seconds)
    return rows.assign(seed=seed)


def summarise(rows: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean r and oracle r over genes per seed, then mean ± sd over seeds, on
    all its genes and on the fine-tuned genes only; and the paired difference from
    PrediXcan on the same genes."""
    predixcan = rows[rows["method"] == "predixcan"].set_index(["seed", "gene"])["r"]
    rows = rows.assign(vs_predixcan=rows["r"].to_numpy()
                       - predixcan.reindex(pd.MultiIndex.from_frame(rows[["seed", "gene"]]))
                       .to_numpy())  # fmt: skip
    out = []
    for method, part in rows.groupby("method", sort=False):
        seeds = part.groupby("seed").agg(
            genes=("gene", "size"), r=("r", "mean"), oracle=("oracle_r", "mean"),
            vs_predixcan=("vs_predixcan", "mean"), seconds=("seconds", "first"),
        )  # fmt: skip
        subset = part[part["in_finetune_genes"]].groupby("seed")["r"].mean()
        out.append({
            "method": method, "genes": int(seeds["genes"].sum()),
            **{f"{k}_mean": float(seeds[k].mean()) for k in ("r", "oracle", "vs_predixcan")},
            **{f"{k}_sd": float(seeds[k].std()) for k in ("r", "oracle", "vs_predixcan")},
            "r_finetune_genes_mean": float(subset.mean()),
            "r_finetune_genes_sd": float(subset.std()),
            "seconds_per_seed": float(seeds["seconds"].mean()),
        })  # fmt: skip
    return pd.DataFrame(out).round(4)


def markdown(summary: pd.DataFrame, args) -> str:
    lines = [
        "# Every expression method against the oracle (semi-synthetic, example cohort)",
        "",
        f"503 people × the heritable ones of 30 genes, 512-bp windows, seeds {args.seeds}; "
        "same 5 outer folds for every method. Mean over genes per seed, then mean ± sd over "
        f"seeds. Fine-tuning runs on {args.finetune_genes} genes per seed; the column "
        "'on the fine-tuned genes' scores every method on those genes only. The fused "
        "backbone has random weights.",
        "",
        "| method | genes × seeds | r | oracle r | r − PrediXcan r (same genes) | "
        "r on the fine-tuned genes | s per seed |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary.itertuples():
        lines.append(
            f"| {row.method} | {row.genes} | {row.r_mean:.3f} ± {row.r_sd:.3f} | "
            f"{row.oracle_mean:.3f} ± {row.oracle_sd:.3f} | "
            f"{row.vs_predixcan_mean:+.3f} ± {row.vs_predixcan_sd:.3f} | "
            f"{row.r_finetune_genes_mean:.3f} ± {row.r_finetune_genes_sd:.3f} | "
            f"{row.seconds_per_seed:.0f} |"
        )
    lines += ["", "Command: `OMP_NUM_THREADS=1 python benchmarks/expression_methods.py`.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--finetune-genes", type=int, default=3)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    started = time.perf_counter()
    model = pretrained_model(args)
    cohort = gl.datasets.example_cohort(width=512)
    gl.tl.embed(cohort, model=model, device="cpu", progress=False)
    rows = pd.concat([run_seed(cohort, s, args, model) for s in args.seeds], ignore_index=True)
    summary = summarise(rows)
    report = {
        "case": "example cohort, 503 people, 30 chr20 genes in 512-bp TSS windows; "
        "simulate_expression(n_causal=(1, 5), h2=(0.1, 0.5)); heritable genes only; "
        "5 outer folds, random_state = seed",
        "fusion": FUSION | {"note": "random backbone weights"},
        "summary": summary.to_dict(orient="records"),
        "wall_s": round(time.perf_counter() - started, 1),
        "args": vars(args),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "expression_methods.json").write_text(json.dumps(report, indent=2) + "\n")
    columns = ["seed", "method", "gene", "gene_name", "r", "oracle_r", "in_finetune_genes",
               "n_train", "n_test"]  # fmt: skip
    rows[[c for c in columns if c in rows]].round(4).to_csv(
        RESULTS / "expression_methods.csv", index=False
    )
    (RESULTS / "expression_methods.md").write_text(markdown(summary, args))
    print(markdown(summary, args))


if __name__ == "__main__":
    main()
