"""Out-of-fold r of expression fine-tuning over seeds, on a planted variant of the example cohort.

The case of ``tests/test_finetune.py``: the shipped 503-person cohort with 128-bp windows,
expression = ALT count of one common SNV + N(0, 0.3²) noise, two outer folds drawn once
(seed 0), a tiny genlm_conv model (16 wide, 2 blocks, random weights) fine-tuned with LoRA
for one epoch (batch 16, learning rate 1e-2) in every fold. Only the fine-tuning seed
(head and adapter initialisation, batch order) changes between runs. The same script runs
against an older checkout of the package (``--old-api``: ``cv=``/``rng=``, tools returning
their tables), so the numbers of two training implementations can be compared in one
table.

    python benchmarks/finetune_seeds.py --seeds 0 1 2 3 4 --label trainer
"""

from __future__ import annotations

import argparse
import inspect
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent / "tests"))


def planted_cohort():
    """The cohort with expression planted on one common SNV, and that gene."""
    import genlm_sc as gl

    cohort = gl.datasets.example_cohort(width=128)
    try:
        from genlm_sc.tl.expression.features import dosage_source
    except ImportError:  # an older checkout
        from genlm_sc.tl._expression import _dosage_source as dosage_source
    dosages = dosage_source(cohort, window=10**6)
    best = (np.inf, None, None)
    for gene in cohort.var_names[:10]:
        x, _ = dosages(gene)
        if x.shape[1]:
            j = np.argmin(np.abs(x.mean(0) / 2 - 0.4))
            best = min(best, (abs(x[:, j].mean() / 2 - 0.4), gene, x[:, j]), key=lambda b: b[0])
    _, gene, dose = best
    expression = np.zeros(cohort.shape, dtype=np.float32)
    noise = np.random.default_rng(0).standard_normal(cohort.n_obs)
    expression[:, cohort.var_names.get_loc(gene)] = dose + 0.3 * noise
    cohort.X = expression
    return cohort, gene


def run(seed: int, root: Path, extra: dict) -> dict:
    import genlm_sc as gl
    from test_embed import conv_checkpoint

    cohort, gene = planted_cohort()
    new_api = "n_folds" in inspect.signature(gl.tl.fit_expression).parameters
    folds = {"n_folds": 2} if new_api else {"cv": 2}
    seed_name = "random_state" if new_api else "seed"
    options = {"model": conv_checkpoint(root / "model"), "strategy": "lora", "epochs": 1,
               "batch_size": 16, "learning_rate": 1e-2, "device": "cpu", seed_name: seed,
               "progress": False, **extra}  # fmt: skip
    start = time.perf_counter()
    gl.tl.fit_expression(cohort, method="finetune", genes=[gene], finetune_options=options, **folds)
    seconds = time.perf_counter() - start
    table = cohort.uns["gl_expression"]["results"]
    row = table[(table["method"] == "finetune") & (table["gene"] == gene)].iloc[0]
    return {"seed": seed, "gene": gene, "r": float(row["r"]), "r2": float(row["r2"]),
            "seconds": round(seconds, 1)}  # fmt: skip


def seed_arguments(description: str, *, label: str, out: Path) -> argparse.ArgumentParser:
    """The options of a seeds benchmark: seeds, a label for the rows, extra options, output."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--label", default=label)
    parser.add_argument("--option", action="append", default=[],
                        help="extra option NAME=VALUE (a Python literal)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=out)
    return parser


def run_seeds(args: argparse.Namespace, run_one) -> None:
    """``run_one(seed, scratch folder, extra options)`` for every seed, on one CPU thread;
    the rows are printed, summarised and saved (:func:`save_runs`)."""
    import ast
    import os

    os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
    import torch

    torch.set_num_threads(1)
    extra = {k: ast.literal_eval(v) for k, v in (o.split("=", 1) for o in args.option)}
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        for seed in args.seeds:
            rows.append({"label": args.label, **run_one(seed, Path(scratch), extra)})
            print(rows[-1], flush=True)
    save_runs(rows, args.label, args.out)


def save_runs(rows: list[dict], label: str, out: Path) -> None:
    """Print the summary of ``rows`` and write them to ``out`` over earlier rows of ``label``."""
    table = pd.DataFrame(rows)
    print(f"{label}: r mean {table['r'].mean():.4f}, sd {table['r'].std(ddof=1):.4f}, "
          f"min {table['r'].min():.4f}")  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists():
        earlier = pd.read_csv(out)
        table = pd.concat([earlier[earlier["label"] != label], table], ignore_index=True)
    table.to_csv(out, index=False)


def main(argv=None) -> None:
    parser = seed_arguments(__doc__.splitlines()[0], label="current",
                            out=RESULTS / "finetune_seeds.csv")  # fmt: skip
    run_seeds(parser.parse_args(argv), run)


if __name__ == "__main__":
    main()
