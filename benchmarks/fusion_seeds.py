"""Out-of-fold r of the fused backbone over seeds, on a planted deletion of the example cohort.

The case of ``tests/test_fusion.py``: the shipped 503-person cohort with 512-bp windows,
expression = copies of a 1-bp deletion 11 bp from the anchor of ENSG00000088833 (minus
strand) + N(0, 0.3²) noise, two outer folds drawn once (seed 0), each person's embedding
from a tiny genlm_conv model (16 wide, random weights). The fused model: a tiny Enformer
(dim 48, 2 blocks pruned to 1, 8-bp bins, **random weights**) reading 256 bp, its heads
trained for 3 epochs (batch 32, learning rate 1e-2, backbone frozen, or LoRA with
``--option tuning='lora'``). Only the fusion seed (backbone and head initialisation, batch
order) changes between runs. Also recorded: the backbone branch's predicted effect of the
deletion (``delta_expression`` of ``gl.tl.variant_effects``; the planted effect is +1 per
copy).

    python benchmarks/fusion_seeds.py --seeds 0 1 2 3 4 5 6 7 8 9 --label head
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).parent
RESULTS = HERE / "results"
sys.path.insert(0, str(HERE.parent / "tests"))


def run(seed: int, root: Path, extra: dict, cohort) -> dict:
    import genlm_sc as gl
    from test_fusion import GENE, OPTIONS

    cohort = cohort.copy()
    options = {
        **OPTIONS,
        **extra,
        "random_state": seed,
        "refit": True,
        "output_dir": root / str(seed),
    }
    start = time.perf_counter()
    gl.tl.fit_expression(cohort, method="fusion", genes=[GENE], n_folds=2, fusion_options=options)
    seconds = time.perf_counter() - start
    table = gl.get.expression_results(cohort).set_index("method")
    gl.tl.variant_effects(cohort, gene=GENE, expression_model=root / str(seed) / GENE / "all",
                          device="cpu")  # fmt: skip
    effects = gl.get.variant_effects(cohort, GENE).set_index("position")
    return {"seed": seed, "gene": GENE, "r": float(table.loc["fusion", "r"]),
            "r2": float(table.loc["fusion", "r2"]),
            "elastic_net_r": float(table.loc["elastic_net", "r"]),
            "deletion_delta": float(effects.loc[1448427, "delta_expression"]),
            "seconds": round(seconds, 1)}  # fmt: skip


def main(argv=None) -> None:
    from finetune_seeds import run_seeds, seed_arguments

    from test_fusion import planted_deletion

    parser = seed_arguments(__doc__.splitlines()[0], label="head",
                            out=RESULTS / "fusion_seeds.csv")  # fmt: skip
    cohorts = {}  # the planted cohort, made once

    def run_one(seed: int, scratch: Path, extra: dict) -> dict:
        if not cohorts:
            cohorts["planted"] = planted_deletion(scratch)
        return run(seed, scratch, extra, cohorts["planted"])

    run_seeds(parser.parse_args(argv), run_one)


if __name__ == "__main__":
    main()
