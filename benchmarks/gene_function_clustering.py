"""Gene-function clustering of real promoters: do representations group genes by function?

10,984 GRCh38 promoters (``promoters/gene_promoters_hg38.tsv.gz``), the 4,791 of them with
one of 20 broad GO biological-process labels (``go/function_labels_GO_BP20.tsv``), scored
by :func:`genlm_sc.tl.cluster_agreement` with the probe's folds grouped by chromosome.
Representations: k-mer profiles (k = 3..6), GC and CpG content, random 50-d vectors, and
language models' embeddings with ``--model NAME=DIR`` (repeatable). Each is also scored
against a random embedding of its own shape.

Writes ``benchmarks/results/gene_function_clustering.csv`` (every row of every results
table, ``name`` = representation) and ``.png`` (leiden sweep of the first representation,
summary metrics of all side by side).

    python benchmarks/gene_function_clustering.py
    python benchmarks/gene_function_clustering.py --labelled-only --crop 1024 \
        --model pretrained=work/promoter_lm --model random-init=work/promoter_lm_random
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

import genlm_sc as gl

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
BASELINES = ("kmer", "gc_cpg", "random")
BASELINE_KEYS = {"X_kmer", "X_gc_cpg", "X_random50"}


def load_panel(data: Path, labels: str):
    """The promoter panel with ``obs["label"]`` (missing for unlabelled genes)."""
    table = pd.read_csv(data / "promoters" / "gene_promoters_hg38.tsv.gz", sep="\t")
    panel = gl.pp.sequence_panel(table, name="gene_promoters_hg38")
    known = pd.read_csv(data / "go" / f"function_labels_{labels}.tsv", sep="\t")
    label = pd.Series(pd.NA, index=panel.obs_names, dtype=object)
    label.iloc[known["row"].to_numpy()] = known["label"].to_numpy()
    panel.obs["label"] = pd.Categorical(label)
    panel.obs["chrom"] = panel.obs["chrom"].astype(str)
    return panel


def add_representations(
    panel, names: list[str], models: list[str] | None, seed: int
) -> dict[str, str]:
    """Compute each representation into ``obsm``; display name → ``obsm`` key."""
    keys = {}
    if "kmer" in names:
        gl.tl.kmer_profile(panel, k=(3, 4, 5, 6))
        keys["k-mer 3-6"] = "X_kmer"
    if "gc_cpg" in names:
        gl.tl.kmer_profile(panel, k=(1, 2), key_added="X_k12")
        f = pd.DataFrame(panel.obsm.pop("X_k12"), columns=panel.uns.pop("X_k12")["features"])
        cpg_oe = f["CG"] / np.maximum(f["C"] * f["G"], 1e-6)
        panel.obsm["X_gc_cpg"] = np.c_[f["C"] + f["G"], cpg_oe].astype(np.float32)
        keys["GC + CpG o/e"] = "X_gc_cpg"
    if "random" in names:
        rng = np.random.default_rng(seed)
        panel.obsm["X_random50"] = rng.standard_normal((panel.n_obs, 50), dtype=np.float32)
        keys["random 50-d"] = "X_random50"
    for spec in models or []:
        name, _, folder = spec.rpartition("=")
        name = name or Path(folder).name
        key = f"X_{name.replace(' ', '_')}"
        tic = time.perf_counter()
        gl.tl.embed(panel, model=folder, key_added=key, batch_size=16)
        print(f"embedding with {name}: {time.perf_counter() - tic:.0f} s", flush=True)
        keys[name] = key
    return keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=SHARED, help="the shared data folder")
    parser.add_argument("--labels", default="GO_BP20", choices=["GO_BP20", "Pfam19"])
    parser.add_argument("--only", nargs="*", default=list(BASELINES), choices=BASELINES)
    parser.add_argument(
        "--model", action="append", help="NAME=DIR of a model for gl.tl.embed (repeatable)"
    )
    parser.add_argument(
        "--crop",
        type=int,
        default=None,
        help="keep this many bases around the window centre (the TSS) for every representation",
    )
    parser.add_argument(
        "--labelled-only", action="store_true", help="drop genes without a label first"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--replot", action="store_true", help="only redraw the saved CSV")
    args = parser.parse_args()
    stem = args.out / f"gene_function_clustering_{args.labels}"
    if args.replot:
        saved = pd.read_csv(f"{stem}.csv")
        tables = {n: t.drop(columns="name") for n, t in saved.groupby("name", sort=False)}
    else:
        tables = evaluate(args)
        args.out.mkdir(parents=True, exist_ok=True)
        pd.concat(tables, names=["name", None]).reset_index(0).to_csv(f"{stem}.csv", index=False)
    plot(tables, f"Promoters vs {args.labels} labels, probe folds grouped by chromosome")
    plt.savefig(f"{stem}.png", dpi=150)
    print(f"wrote {stem}.csv and .png")


def umap_of_models(panel, keys: dict[str, str], stem: str) -> None:
    """scanpy neighbours + UMAP of each language model's embedding, coloured by label."""
    import scanpy as sc

    models = {name: key for name, key in keys.items() if key not in BASELINE_KEYS}
    if not models:
        return
    fig, axes = plt.subplots(1, len(models), figsize=(7.5 * len(models), 6), squeeze=False)
    for ax, (name, key) in zip(axes[0], models.items(), strict=True):
        view = panel[panel.obs["label"].notna()].copy()
        sc.pp.neighbors(view, use_rep=key, random_state=0)
        sc.tl.umap(view, random_state=0)
        sc.tl.leiden(view, flavor="igraph", n_iterations=2, directed=False, random_state=0)
        gl.pl.embedding(view, basis="umap", color="label", ax=ax, size=8, legend_loc=None)
        ax.set_title(f"{name}: {view.n_obs} promoters, coloured by GO label")
    fig.tight_layout()
    Path(stem).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(f"{stem}_umap.png", dpi=120)


def evaluate(args: argparse.Namespace) -> dict[str, pd.DataFrame]:
    """Results table of each representation."""
    start = time.perf_counter()
    panel = load_panel(args.data, args.labels)
    if args.labelled_only:
        panel = panel[panel.obs["label"].notna()].copy()
    if args.crop:
        centre = panel.obs["sequence"].str.len() // 2
        panel.obs["sequence"] = [
            seq[max(c - args.crop // 2, 0) : c - args.crop // 2 + args.crop]
            for seq, c in zip(panel.obs["sequence"], centre, strict=True)
        ]
    keys = add_representations(panel, args.only, args.model, args.seed)
    print(f"panel and representations: {time.perf_counter() - start:.0f} s")
    umap_of_models(panel, keys, str(args.out / f"gene_function_clustering_{args.labels}"))
    tables = {}
    for name, key in keys.items():
        tic = time.perf_counter()
        gl.tl.cluster_agreement(
            panel,
            labels="label",
            use_rep=key,
            groups="chrom",
            null=key != "X_random50",
            random_state=args.seed,
            key_added=f"agreement_{key}",
        )
        tables[name] = gl.get.cluster_agreement(panel, key=f"agreement_{key}")
        print(f"{name}: {time.perf_counter() - tic:.0f} s")
        print(summary(tables[name]).to_string(), flush=True)
    print(f"total {time.perf_counter() - start:.0f} s")
    return tables


def plot(tables: dict[str, pd.DataFrame], title: str) -> None:
    """Leiden sweep of the first representation, next to summary metrics of all."""
    fig, (sweep, bars) = plt.subplots(1, 2, figsize=(13, 5.6), width_ratios=(1, 1.15))
    first = next(iter(tables))
    gl.pl.cluster_agreement(tables[first], title=f"Leiden clusters of {first}", ax=sweep)
    gl.pl.cluster_agreement(tables, ax=bars)
    fig.suptitle(title)
    fig.tight_layout()


def summary(table: pd.DataFrame) -> pd.DataFrame:
    columns = ["representation", "resolution", "n_clusters", "nmi", "ari", "ami", "asw", "mean"]
    columns += ["probe_balanced_accuracy", "probe_sd", "chance"]
    return table.loc[table["kind"] == "summary", columns].round(4)


if __name__ == "__main__":
    main()
