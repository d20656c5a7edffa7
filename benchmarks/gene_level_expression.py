"""Gene-level expression from promoter sequence: embeddings vs k-mer profiles.

The ~11,000 real promoters of ``shared/data/promoters`` (2 kb around the TSS, strand
oriented) as a sequence panel; targets ``xpresso_log10_median_expr`` and
``log10(TPM + 0.1)`` of the EN-TEx liver, substantia nigra and aorta samples;
``gl.tl.fit_gene_expression`` (ridge, standardised features) with chromosome-held-out folds.
Representations: k-mer profiles (k = 3–6, ``gl.tl.kmer_profile``) and the mean-pooled
embeddings of each ``--model NAME=DIR`` (``gl.tl.embed``), also combined with the k-mers.

Writes ``results/gene_level_expression.{csv,md}``.

    python benchmarks/gene_level_expression.py --model promoter_lm=work/promoter_lm
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

import genlm_sc as gl

HERE = Path(__file__).parent
RESULTS = HERE / "results"
SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
TISSUES = {"liver": "liver_tpm", "substantia_nigra": "brain_substantia_nigra_tpm",
           "aorta": "aorta_tpm"}  # fmt: skip


def promoter_panel(limit: int | None):
    table = pd.read_csv(SHARED / "promoters" / "gene_promoters_hg38.tsv.gz", sep="\t")
    table = table.dropna(subset=["gene_symbol"]).drop_duplicates("gene_symbol")
    table = table.set_index("gene_symbol")
    if limit:
        table = table.sample(limit, random_state=0)
    panel = gl.pp.sequence_panel(table["sequence"].to_dict())
    panel.obs["chrom"] = table.loc[panel.obs_names, "chrom"].astype(str).to_numpy()
    panel.obs["xpresso"] = table.loc[panel.obs_names, "xpresso_log10_median_expr"].to_numpy()
    for name, column in TISSUES.items():
        panel.obs[name] = np.log10(table.loc[panel.obs_names, column].to_numpy() + 0.1)
    return panel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", default=[], help="NAME=DIR, repeatable")
    parser.add_argument("--limit", type=int, default=None, help="a random subset of genes")
    parser.add_argument("--batch-size", type=int, default=16)
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    panel = promoter_panel(args.limit)
    targets = ["xpresso", *TISSUES]
    gl.tl.kmer_profile(panel, k=[3, 4, 5, 6], key_added="X_kmer")
    runs = [("k-mer 3–6", "X_kmer", None)]
    timings = {}
    for spec in args.model:
        name, folder = spec.split("=", 1)
        started = time.perf_counter()
        gl.tl.embed(panel, model=folder, key_added=f"X_{name}", batch_size=args.batch_size,
                    progress=False)  # fmt: skip
        timings[name] = time.perf_counter() - started
        runs += [(name, f"X_{name}", None), (f"{name} + k-mer", f"X_{name}", ["X_kmer"])]
    rows = []
    for label, rep, extra in runs:
        table = gl.tl.fit_gene_expression(panel, target=targets, use_rep=rep, extra_reps=extra)
        table = table[table["representation"] == "+".join([rep, *(extra or [])])]
        for _, row in table.iterrows():
            rows.append({"representation": label, "target": row["target"], "r": row["r"],
                         "n_genes": row.get("n_genes", np.nan)})  # fmt: skip
        print(label, table[["target", "r"]].to_dict("records"), flush=True)
    out = pd.DataFrame(rows).pivot(index="representation", columns="target", values="r")
    out = out[targets].round(3)
    print(out.to_markdown())
    print({k: round(v, 1) for k, v in timings.items()}, "s to embed", panel.n_obs, "promoters")
    out.to_csv(RESULTS / "gene_level_expression.csv")
    (RESULTS / "gene_level_expression.md").write_text(out.to_markdown())


if __name__ == "__main__":
    main()
