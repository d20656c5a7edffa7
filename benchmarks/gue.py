"""Sequence classification on five GUE tasks: k-mers, a CNN from scratch, our pretrained model.

The tasks are the five of the GUE benchmark (Zhou et al. 2023, DNABERT-2) staged in
``shared/data/gue``: ``prom/prom_core_notata``, ``prom/prom_300_tata``, ``tf/0``, ``tf/1``
and ``mouse/0`` (binary; train/dev/test CSVs). Methods, all scored by test MCC, macro F1
and accuracy:

``kmer_lr``
    k-mer profile (``gl.tl.kmer_profile``, k = 3–6, 5,440 frequencies), standardised, and an
    L2 logistic regression whose ``C`` is chosen on the dev rows.
``cnn_scratch``
    A small randomly initialised genlm_conv model (4 dilated-convolution blocks of 64
    channels, char tokens) trained by ``fit_classifier(method="full")``.
``pretrained_ft``
    The promoter-pretrained genlm_conv model (``--model``, by default
    ``work/promoter_lm`` from ``pretrain_promoters.py``) fully fine-tuned by the same call.
``pretrained_lora``, ``random_init_ft`` (not run by default)
    The same model with LoRA adapters, and its random-init twin (``work/promoter_lm_random``)
    fully fine-tuned: the effect of pretraining at equal architecture.

Every method sees the same subsample of at most ``--max-train`` training and ``--max-dev``
dev rows (drawn once per task with ``--seed``) and the whole test split. Neural methods
train for at most ``--max-steps`` steps and ``--time-budget`` seconds each, evaluating on the
dev rows every ``--eval-steps`` steps, stopping early after ``--patience`` evaluations
without a better dev MCC and keeping the best dev checkpoint.

Writes ``results/gue.csv`` (one row per task and method; the pretrained models' rows name
their number of pretraining steps), the plot
``docs/images/gue_mcc.png`` (test MCC next to the published DNABERT 6-mer,
Nucleotide Transformer 2.5B multi-species and DNABERT-2 numbers of the DNABERT-2 paper,
Table 4) and prints a Markdown table.

    python benchmarks/gue.py --max-train 10000 --max-dev 500 --time-budget 100

``--replot A.csv B.csv ...`` trains nothing: it joins earlier results (e.g. the same task
with two pretrained models) into one plot and table; where two files have a row for the
same task and method (and pretraining steps), the later file's row is kept.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import genlm_sc as gl
from genlm_sc.io.labelled import read_labelled_sequences
from genlm_sc.models import GenlmConvConfig, GenlmConvForMaskedLM, build_tokenizer
from genlm_sc.pp import sequence_panel
from genlm_sc.tl.classification.classifier import classification_metrics, fit_classifier

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("GENLM_SC_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
TASKS = ("prom/prom_core_notata", "prom/prom_300_tata", "tf/0", "tf/1", "mouse/0")
METHODS = ("kmer_lr", "cnn_scratch", "pretrained_ft", "pretrained_lora", "random_init_ft")
DEFAULT_METHODS = ("kmer_lr", "cnn_scratch", "pretrained_ft")
LABELS = {
    "kmer_lr": "k-mer 3–6 + logistic regression",
    "cnn_scratch": "small CNN from scratch",
    "pretrained_ft": "ours: promoter-pretrained, fine-tuned",
    "pretrained_lora": "ours: promoter-pretrained, LoRA",
    "random_init_ft": "ours: random-init twin, fine-tuned",
}
#: Rows of the published table shown next to ours.
PUBLISHED = {
    "DNABERT (6-mer)": "DNABERT 6-mer",
    "NT-2500M-multi": "NT 2.5B multi-species",
    "DNABERT-2": "DNABERT-2",
}
PUBLISHED_FILE = "GUE_published_baselines_MCCx100_DNABERT2_Table4.csv"
C_GRID = (1e-4, 1e-3, 1e-2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS))
    parser.add_argument("--model", type=Path, default=HERE / "work" / "promoter_lm")
    parser.add_argument("--random-model", type=Path, default=HERE / "work" / "promoter_lm_random")
    parser.add_argument("--max-train", type=int, default=10000, help="training rows per task")
    parser.add_argument("--max-dev", type=int, default=500, help="dev rows per task")
    parser.add_argument("--max-test", type=int, default=None, help="test rows (default: all)")
    parser.add_argument("--max-steps", type=int, default=2000)
    parser.add_argument("--time-budget", type=float, default=100.0, help="s of training")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--eval-steps", type=int, default=50)
    parser.add_argument("--patience", type=int, default=6)
    parser.add_argument("--lr-finetune", type=float, default=3e-3)
    parser.add_argument("--lr-scratch", type=float, default=3e-3)
    parser.add_argument("--lr-lora", type=float, default=2e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--replot", type=Path, nargs="+", help="results CSVs to join and plot")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gue.csv")
    parser.add_argument(
        "--plot", type=Path, default=HERE.parent / "docs" / "images" / "gue_mcc.png"
    )
    args = parser.parse_args()
    methods = [m for m in args.methods.split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {list(METHODS)}")

    published = read_published(args.data / "gue" / PUBLISHED_FILE)
    if args.replot:
        table = pd.concat([pd.read_csv(path) for path in args.replot], ignore_index=True)
        repeated = pd.DataFrame({"task": table["task"], "label": method_labels(table)})
        table = table[~repeated.duplicated(keep="last")]  # later files win
        plot(table, published, args.plot)
        print(f"wrote {args.plot}\n")
        print(markdown(table, published))
        return
    rows = []
    start = time.perf_counter()
    for task in [t for t in args.tasks.split(",") if t]:
        panel = subsample(sequence_panel(read_labelled_sequences(args.data / "gue" / task)), args)
        counts = panel.obs["split"].value_counts()
        print(f"\n{task}: {counts['train']} train, {counts['dev']} dev, {counts['test']} test",
              flush=True)  # fmt: skip
        for method in methods:
            began = time.perf_counter()
            result = (
                run_kmer_lr(panel, args) if method == "kmer_lr" else run_neural(panel, method, args)
            )
            result = {"task": task, "method": method, **result,
                      "wall_seconds": time.perf_counter() - began}  # fmt: skip
            rows.append(result)
            print(f"  {method:16s} MCC {result['mcc']:.3f}  F1 {result['f1_macro']:.3f}  "
                  f"acc {result['accuracy']:.3f}  {result['wall_seconds']:.0f} s  "
                  f"{result['steps']} steps ({result['stop_reason']})", flush=True)  # fmt: skip
    table = pd.DataFrame(rows)
    for name in ("max_train", "max_dev", "max_steps", "time_budget", "batch_size", "seed"):
        table[name] = getattr(args, name)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    plot(table, published, args.plot)
    print(f"\ntotal {time.perf_counter() - start:.0f} s; wrote {args.out} and {args.plot}\n")
    print(markdown(table, published))


def subsample(panel, args):
    """At most ``max_train`` train, ``max_dev`` dev and ``max_test`` test rows (seeded)."""
    rng = np.random.default_rng(args.seed)
    split = panel.obs["split"].astype(str).to_numpy()
    keep = []
    for name, cap in (("train", args.max_train), ("dev", args.max_dev), ("test", args.max_test)):
        rows = np.flatnonzero(split == name)
        if cap is not None and rows.size > cap:
            rows = np.sort(rng.choice(rows, cap, replace=False))
        keep.append(rows)
    return panel[np.concatenate(keep)].copy()


def run_kmer_lr(panel, args) -> dict:
    """k-mer 3–6 frequencies, standardised; logistic regression with C chosen on dev MCC."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    began = time.perf_counter()
    gl.tl.kmer_profile(panel, k=(3, 4, 5, 6))
    x = panel.obsm["X_kmer"]
    y = panel.obs["label"].to_numpy()
    split = panel.obs["split"].astype(str).to_numpy()
    train, dev, test = (split == s for s in ("train", "dev", "test"))
    scaler = StandardScaler().fit(x[train])
    best = (-np.inf, None)
    for c in C_GRID:
        fitted = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x[train]), y[train])
        score = classification_metrics(y[dev], fitted.predict(scaler.transform(x[dev])))["mcc"]
        best = max(best, (score, fitted), key=lambda b: b[0])
    _, fitted = best
    metrics = classification_metrics(y[test], fitted.predict(scaler.transform(x[test])))
    return {
        **metrics, "steps": 0, "stop_reason": f"C={fitted.C:g}",
        "train_seconds": time.perf_counter() - began, "n_parameters": int(x.shape[1] + 1),
        "n_trainable_parameters": int(x.shape[1] + 1), "n_train": int(train.sum()),
    }  # fmt: skip


def small_cnn() -> tuple[GenlmConvForMaskedLM, object]:
    """A randomly initialised genlm_conv model: 4 blocks × 64 channels, char tokens."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer("char", model_max_length=512)
    config = GenlmConvConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_conv_layers=4, dilation_cycle=[1, 2, 4, 8],
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return GenlmConvForMaskedLM(config), tokenizer


def run_neural(panel, method: str, args) -> dict:
    model = {
        "cnn_scratch": small_cnn,
        "pretrained_ft": lambda: args.model,
        "pretrained_lora": lambda: args.model,
        "random_init_ft": lambda: args.random_model,
    }[method]()
    learning_rate = {"cnn_scratch": args.lr_scratch, "pretrained_lora": args.lr_lora}.get(
        method, args.lr_finetune
    )
    pretraining_steps = (
        gl.models.pretraining_record(model)["max_steps"] if method.startswith("pretrained") else 0
    )
    fit_classifier(
        panel, model=model, method="lora" if method == "pretrained_lora" else "full",
        learning_rate=learning_rate, max_steps=args.max_steps, batch_size=args.batch_size,
        warmup_steps=min(50, args.max_steps // 10), eval_steps=args.eval_steps,
        patience=args.patience, time_budget=args.time_budget, random_state=args.seed,
        key_added=f"gl_{method}", progress=False,
    )  # fmt: skip
    record = panel.uns[f"gl_{method}"]
    return {
        **record["test"], "dev_mcc": record["dev"]["best_mcc"],
        "best_step": record["dev"]["best_step"],
        "steps": record["steps"], "stop_reason": record["stop_reason"],
        "pretraining_steps": pretraining_steps,
        "train_seconds": record["train_seconds"], "n_parameters": record["n_parameters"],
        "n_trainable_parameters": record["n_trainable_parameters"], "n_train": record["n_train"],
    }  # fmt: skip


def read_published(path: Path) -> pd.DataFrame:
    """Published test MCC × 100: rows = models of ``PUBLISHED``, columns = task keys."""
    table = pd.read_csv(path, comment="#").set_index("model")
    return table.loc[list(PUBLISHED)].rename(index=PUBLISHED)


def task_key(task: str) -> str:
    """``prom/prom_core_notata`` → ``prom_core_notata``, ``tf/0`` → ``tf_0``."""
    group, name = task.split("/")
    return name if group == "prom" else f"{group}_{name}"


def method_labels(table: pd.DataFrame) -> pd.Series:
    """Each row's method label; a pretrained model's names its pretraining steps."""
    steps = table.get("pretraining_steps", pd.Series(0, index=table.index)).fillna(0)
    labels = [LABELS[method] + (f" ({int(n):,} pretraining steps)" if n else "")
              for method, n in zip(table["method"], steps, strict=True)]  # fmt: skip
    return pd.Series(labels, index=table.index)


def mcc_table(table: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    """Tasks × methods (ours, then published) of test MCC × 100."""
    table = table.assign(label=method_labels(table))
    ours = table.pivot(index="task", columns="label", values="mcc") * 100
    ours = ours.reindex(index=list(dict.fromkeys(table["task"])),
                        columns=list(dict.fromkeys(table["label"])))  # fmt: skip
    theirs = published.T.reindex([task_key(t) for t in ours.index])
    theirs.index = ours.index
    return pd.concat([ours, theirs], axis=1)


def plot(table: pd.DataFrame, published: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scores = mcc_table(table, published)
    n_ours = method_labels(table).nunique()
    ours_colours = plt.get_cmap("tab10").colors
    greys = ["#4d4d4d", "#8c8c8c", "#c4c4c4"]
    width = 0.8 / scores.shape[1]
    fig, ax = plt.subplots(figsize=(11, 5))
    x = np.arange(scores.shape[0])
    for j, column in enumerate(scores.columns):
        mine = j < n_ours
        colour = ours_colours[j] if mine else greys[(j - n_ours) % len(greys)]
        ax.bar(x + (j - (scores.shape[1] - 1) / 2) * width, scores[column].to_numpy(), width,
               label=column if mine else f"{column} (published)", color=colour,
               hatch=None if mine else "//", edgecolor="white" if mine else "black",
               linewidth=0.4)  # fmt: skip
    promoter = scores.index.str.startswith("prom/")
    if promoter.any():
        goal = scores["DNABERT 6-mer"].to_numpy()[promoter] - 5
        ax.hlines(goal, x[promoter] - 0.42, x[promoter] + 0.42, colors="black",
                  linestyles="dashed", linewidth=1,
                  label="DNABERT 6-mer − 5 (the CPU goal on promoters)")  # fmt: skip
    ax.set_xticks(x, [task_key(t) for t in scores.index])
    ax.set_ylabel("test MCC × 100")
    ax.axhline(0, color="black", linewidth=0.6)
    caps = table.max(numeric_only=True)
    ax.set_title(
        f"GUE test MCC: ours on 2 shared CPU cores (≤ {int(caps['max_train']):,} training "
        f"sequences, ≤ {caps['time_budget']:.0f} s of training per model)\nvs published models "
        "(full training sets, GPUs; DNABERT-2 paper, Table 4)",
        fontsize=10,
    )
    ax.legend(ncol=3, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
    ax.set_ylim(min(0, np.nanmin(scores.to_numpy()) - 5), 100)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def markdown(table: pd.DataFrame, published: pd.DataFrame) -> str:
    scores = mcc_table(table, published)
    header = "| task | " + " | ".join(scores.columns) + " |"
    lines = [header, "|---" * (scores.shape[1] + 1) + "|"]
    for task, row in scores.iterrows():
        cells = " | ".join("–" if np.isnan(v) else f"{v:.1f}" for v in row.to_numpy())
        lines.append(f"| `{task}` | {cells} |")
    lines += ["", "| method | parameters (trained) | mean wall s per task | mean steps | stops |",
              "|---|---|---|---|---|"]  # fmt: skip
    for label, group in table.groupby(method_labels(table), sort=False):
        params = f"{int(group['n_parameters'].iloc[0]):,}"
        trained = int(group["n_trainable_parameters"].iloc[0])
        if trained != int(group["n_parameters"].iloc[0]):
            params += f" ({trained:,})"
        stops = ", ".join(f"{k} × {v}" for k, v in group["stop_reason"].value_counts().items())
        lines.append(f"| {label} | {params} | {group['wall_seconds'].mean():.0f} | "
                     f"{group['steps'].mean():.0f} | {stops} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
