"""Sequence classification on GUE tasks: k-mers, a CNN from scratch, our pretrained model.

The tasks are those of the GUE benchmark (Zhou et al. 2023, DNABERT-2) staged in
``shared/data/gue``: ``prom/prom_core_notata``, ``prom/prom_300_tata``, ``tf/0``, ``tf/1``
and ``mouse/0`` (binary; train/dev/test CSVs). Methods, all scored by test MCC, macro F1
and accuracy:

``kmer_lr``
    k-mer profile (``gl.tl.kmer_profile``, k = 3–6, 5,440 frequencies), standardised, and an
    L2 logistic regression whose ``C`` is chosen on the dev rows.
``cnn_scratch``
    A small randomly initialised genlm_conv model (4 dilated-convolution blocks of 64
    channels, char tokens; initialised with the fine-tuning seed) trained by
    ``fit_classifier(method="full")``.
``pretrained_ft``
    The promoter-pretrained model (``--model``, by default ``work/promoter_lm_clean`` from
    ``pretrain_promoters.py``, whose corpus is decontaminated against every GUE task)
    fully fine-tuned by the same call.
``random_init_ft``
    Its random-init twin (``work/promoter_lm_random``: same architecture and tokenizer,
    untrained weights) fine-tuned the same way: the effect of pretraining.
``pretrained_lora`` (not run by default)
    The pretrained model with LoRA adapters.

The protocol has two phases, so that nothing is chosen after a test score is seen:

``--phase dev``
    Reads only the train and dev rows (the test rows are dropped before anything runs).
    For each task and network it trains once per learning rate of ``--lr-grid`` (seed 0)
    and keeps the one with the best dev MCC; k-mer + LR keeps the ``C`` with the best dev
    MCC. The budget is fixed in steps and equal for every network (``--max-steps`` steps
    of ``--batch-size`` sequences, no early stopping, no time limit); the checkpoint rule
    is fixed too: the step with the best dev MCC of the evaluations every
    ``--eval-steps`` steps. Writes every dev run to ``results/gue_dev.csv`` and the choices
    to ``results/gue_protocol.json`` (with the pretrained model's pretraining record),
    which is committed before the test phase runs. ``--add`` adds tasks or methods to an
    existing protocol file run with the same settings.
``--phase test``
    Reads the protocol file and nothing else of the settings, and trains every network
    (or those of ``--methods``) with its chosen learning rate once per seed of
    ``--seeds`` (the head and CNN initialisation, batch order and dropout change with the
    seed; the training and dev subsample does not). k-mer + LR is deterministic and runs
    once. Writes one row per task, method and seed to ``results/gue_test.csv``, the plot
    ``docs/images/gue_mcc.png`` (mean ± sd of the seeds next to the published DNABERT
    6-mer, Nucleotide Transformer 2.5B multi-species and DNABERT-2 MCCs of the DNABERT-2
    paper, Table 4) and prints a Markdown table.

Every method sees the same subsample of at most ``--max-train`` training and ``--max-dev``
dev rows (drawn once per task with seed 0) and the whole test split.

    python benchmarks/gue.py --phase dev --tasks prom/prom_core_notata,prom/prom_300_tata
    python benchmarks/gue.py --phase test
"""

from __future__ import annotations

import argparse
import json
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
REPOSITORY = HERE.parent
RESULTS = HERE / "results"
SHARED = Path(os.environ.get("GENLM_SC_SHARED_DATA", HERE.parents[1] / "shared" / "data"))
TASKS = ("prom/prom_core_notata", "prom/prom_300_tata", "tf/0", "tf/1", "mouse/0")
METHODS = ("kmer_lr", "cnn_scratch", "pretrained_ft", "random_init_ft", "pretrained_lora")
DEFAULT_METHODS = ("kmer_lr", "cnn_scratch", "pretrained_ft", "random_init_ft")
LABELS = {
    "kmer_lr": "k-mer 3–6 + logistic regression",
    "cnn_scratch": "small CNN from scratch",
    "pretrained_ft": "ours: promoter-pretrained, fine-tuned",
    "random_init_ft": "ours: random-init twin, fine-tuned",
    "pretrained_lora": "ours: promoter-pretrained, LoRA",
}
#: Rows of the published table shown next to ours.
PUBLISHED = {
    "DNABERT (6-mer)": "DNABERT 6-mer",
    "NT-2500M-multi": "NT 2.5B multi-species",
    "DNABERT-2": "DNABERT-2",
}
PUBLISHED_FILE = "GUE_published_baselines_MCCx100_DNABERT2_Table4.csv"
C_GRID = (1e-4, 1e-3, 1e-2)
CHECKPOINT_RULE = "the evaluation step with the best dev MCC (every eval_steps steps)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--phase", choices=("dev", "test"), required=True)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--protocol", type=Path, default=RESULTS / "gue_protocol.json")
    parser.add_argument("--out", type=Path, help="results CSV (default: results/gue_<phase>.csv)")
    parser.add_argument(
        "--plot", type=Path, default=HERE.parent / "docs" / "images" / "gue_mcc.png"
    )
    dev = parser.add_argument_group("dev phase (the test phase reads these from --protocol)")
    dev.add_argument("--tasks", default=",".join(TASKS))
    parser.add_argument("--methods", help="methods to run (default: dev, "
                        f"{','.join(DEFAULT_METHODS)}; test, those of the protocol)")  # fmt: skip
    dev.add_argument("--model", type=Path, default=HERE / "work" / "promoter_lm_clean")
    dev.add_argument("--random-model", type=Path, default=HERE / "work" / "promoter_lm_random")
    dev.add_argument("--max-train", type=int, default=10000, help="training rows per task")
    dev.add_argument("--max-dev", type=int, default=500, help="dev rows per task")
    dev.add_argument("--max-steps", type=int, default=600, help="steps of every network")
    dev.add_argument("--batch-size", type=int, default=32)
    dev.add_argument("--eval-steps", type=int, default=100)
    dev.add_argument("--lr-grid", default="3e-4,1e-3,3e-3", help="learning rates tried on dev")
    dev.add_argument("--add", action="store_true",
                     help="add these tasks or methods to an existing protocol file")  # fmt: skip
    test = parser.add_argument_group("test phase")
    test.add_argument("--seeds", default="0,1,2", help="fine-tuning seeds")
    args = parser.parse_args()
    if args.phase == "dev":
        run_dev(args, parser)
    else:
        run_test(args)


def run_dev(args, parser) -> None:
    """Choose each network's learning rate and the k-mer model's C on dev rows only."""
    methods = [m for m in (args.methods or ",".join(DEFAULT_METHODS)).split(",") if m]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {list(METHODS)}")
    settings = {
        "tasks": [t for t in args.tasks.split(",") if t], "methods": methods,
        "model": _portable(args.model), "random_model": _portable(args.random_model),
        "max_train": args.max_train, "max_dev": args.max_dev, "max_steps": args.max_steps,
        "batch_size": args.batch_size, "eval_steps": args.eval_steps, "subsample_seed": 0,
        "lr_grid": [float(v) for v in args.lr_grid.split(",")], "c_grid": list(C_GRID),
        "checkpoint_rule": CHECKPOINT_RULE, "early_stopping": None, "time_budget": None,
    }  # fmt: skip
    rows, choices = [], {}
    start = time.perf_counter()
    for task in settings["tasks"]:
        panel = load_panel(args.data, task, settings, with_test=False)
        choices[task] = {}
        for method in methods:
            if method == "kmer_lr":
                result = run_kmer_lr(panel, c_grid=C_GRID)
                rows.append({"task": task, "method": method, **result})
                choices[task][method] = {"C": result["C"], "dev_mcc": result["dev_mcc"]}
                print(f"  {task} kmer_lr: C={result['C']:g}, dev MCC {result['dev_mcc']:.3f}")
                continue
            tried = []
            for lr in settings["lr_grid"]:
                result = run_neural(panel, method, settings, learning_rate=lr, seed=0)
                tried.append({"task": task, "method": method, **result})
                print(f"  {task} {method} lr {lr:g}: dev MCC {result['dev_mcc']:.3f} at step "
                      f"{result['best_step']} ({result['train_seconds']:.0f} s)",
                      flush=True)  # fmt: skip
            rows += tried
            best = max(tried, key=lambda r: r["dev_mcc"])
            choices[task][method] = {
                "learning_rate": best["learning_rate"], "dev_mcc": best["dev_mcc"],
                "best_step": best["best_step"],
            }  # fmt: skip
    out = args.out or RESULTS / "gue_dev.csv"
    dev_rows = pd.DataFrame(rows)
    pretraining = gl.models.pretraining_record(args.model) if "pretrained_ft" in methods else {}
    protocol = {
        **settings, "choices": choices, "dev_seconds": round(time.perf_counter() - start),
        "pretraining": {key: pretraining.get(key) for key in
                        ("max_steps", "batch_size", "corpus", "eval_corpus", "metrics")},
    }  # fmt: skip
    if args.add:
        protocol = merged(json.loads(args.protocol.read_text()), protocol)
        dev_rows = pd.concat([pd.read_csv(out), dev_rows], ignore_index=True)
    dev_rows.to_csv(out, index=False)
    args.protocol.write_text(json.dumps(protocol, indent=1, default=str))
    print(f"wrote {out} and {args.protocol}")


def _portable(path: Path) -> str:
    """A model folder as recorded in the protocol: relative to the repository when inside."""
    path = Path(path).resolve()
    return str(path.relative_to(REPOSITORY)) if path.is_relative_to(REPOSITORY) else str(path)


def merged(earlier: dict, later: dict) -> dict:
    """One protocol from two dev runs with the same settings (other tasks or methods)."""
    shared = ("max_train", "max_dev", "max_steps", "batch_size", "eval_steps", "lr_grid",
              "c_grid", "subsample_seed", "model", "random_model")  # fmt: skip
    differ = [key for key in shared if earlier[key] != later[key]]
    if differ:
        raise SystemExit(f"--add: settings differ from the protocol file's: {differ}")
    protocol = {**earlier, "dev_seconds": earlier["dev_seconds"] + later["dev_seconds"]}
    protocol["tasks"] = list(dict.fromkeys(earlier["tasks"] + later["tasks"]))
    protocol["methods"] = list(dict.fromkeys(earlier["methods"] + later["methods"]))
    for task, chosen in later["choices"].items():
        protocol["choices"].setdefault(task, {}).update(chosen)
    if later["pretraining"].get("max_steps"):
        protocol["pretraining"] = later["pretraining"]
    return protocol


def run_test(args) -> None:
    """Score every method on the test rows with the settings the dev phase chose."""
    protocol = json.loads(args.protocol.read_text())
    seeds = [int(s) for s in args.seeds.split(",")]
    methods = args.methods.split(",") if args.methods else protocol["methods"]
    missing = sorted(set(methods) - set(protocol["methods"]))
    if missing:
        raise SystemExit(f"{missing}: no learning rate chosen on dev; run --phase dev first")
    rows = []
    for task in protocol["tasks"]:
        panel = load_panel(args.data, task, protocol, with_test=True)
        for method in methods:
            chosen = protocol["choices"][task][method]
            if method == "kmer_lr":
                began = time.perf_counter()
                result = run_kmer_lr(panel, c_grid=(chosen["C"],))
                runs = [{**result, "seed": -1, "wall_seconds": time.perf_counter() - began}]
            else:
                runs = []
                for seed in seeds:
                    began = time.perf_counter()
                    result = run_neural(
                        panel, method, protocol, learning_rate=chosen["learning_rate"], seed=seed
                    )
                    runs.append({**result, "seed": seed,
                                 "wall_seconds": time.perf_counter() - began})  # fmt: skip
            for run in runs:
                rows.append({"task": task, "method": method, **run})
                print(f"  {task} {method} seed {run['seed']}: test MCC {run['mcc']:.3f} "
                      f"(dev {run['dev_mcc']:.3f})", flush=True)  # fmt: skip
    table = pd.DataFrame(rows)
    out = args.out or RESULTS / "gue_test.csv"
    table.to_csv(out, index=False)
    published = read_published(args.data / "gue" / PUBLISHED_FILE)
    plot(table, published, args.plot, protocol)
    print(f"wrote {out} and {args.plot}\n")
    print(markdown(table, published))


def load_panel(data: Path, task: str, settings: dict, *, with_test: bool):
    """The task's panel: at most ``max_train`` train and ``max_dev`` dev rows (seed 0)."""
    panel = sequence_panel(read_labelled_sequences(data / "gue" / task))
    split = panel.obs["split"].astype(str).to_numpy()
    rng = np.random.default_rng(settings["subsample_seed"])
    keep = []
    for name, cap in (("train", settings["max_train"]), ("dev", settings["max_dev"])):
        rows = np.flatnonzero(split == name)
        if cap is not None and rows.size > cap:
            rows = np.sort(rng.choice(rows, cap, replace=False))
        keep.append(rows)
    if with_test:
        keep.append(np.flatnonzero(split == "test"))
    panel = panel[np.concatenate(keep)].copy()
    counts = panel.obs["split"].value_counts()
    print(f"\n{task}: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("train", "dev", "test")),
          flush=True)  # fmt: skip
    return panel


def run_kmer_lr(panel, *, c_grid) -> dict:
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
    for c in c_grid:
        fitted = LogisticRegression(C=c, max_iter=2000).fit(scaler.transform(x[train]), y[train])
        score = classification_metrics(y[dev], fitted.predict(scaler.transform(x[dev])))["mcc"]
        best = max(best, (score, fitted), key=lambda b: b[0])
    dev_mcc, fitted = best
    metrics = {}
    if test.any():
        metrics = classification_metrics(y[test], fitted.predict(scaler.transform(x[test])))
    return {
        **metrics, "C": float(fitted.C), "dev_mcc": float(dev_mcc), "steps": 0,
        "train_seconds": time.perf_counter() - began, "n_parameters": int(x.shape[1] + 1),
        "n_trainable_parameters": int(x.shape[1] + 1), "n_train": int(train.sum()),
    }  # fmt: skip


def small_cnn(seed: int) -> tuple[GenlmConvForMaskedLM, object]:
    """A randomly initialised genlm_conv model: 4 blocks × 64 channels, char tokens."""
    torch.manual_seed(seed)
    tokenizer = build_tokenizer("char", model_max_length=512)
    config = GenlmConvConfig(
        vocab_size=len(tokenizer), hidden_size=64, num_conv_layers=4, dilation_cycle=[1, 2, 4, 8],
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return GenlmConvForMaskedLM(config), tokenizer


def run_neural(panel, method: str, settings: dict, *, learning_rate: float, seed: int) -> dict:
    """Fine-tune one network for the fixed step budget; keep the best dev-MCC checkpoint."""
    model = {
        "cnn_scratch": lambda: small_cnn(seed),
        "pretrained_ft": lambda: REPOSITORY / settings["model"],
        "pretrained_lora": lambda: REPOSITORY / settings["model"],
        "random_init_ft": lambda: REPOSITORY / settings["random_model"],
    }[method]()
    key = f"gl_{method}"
    fit_classifier(
        panel, model=model, method="lora" if method == "pretrained_lora" else "full",
        learning_rate=learning_rate, max_steps=settings["max_steps"],
        batch_size=settings["batch_size"], warmup_steps=settings["max_steps"] // 10,
        eval_steps=settings["eval_steps"], patience=None, random_state=seed,
        key_added=key, progress=False,
    )  # fmt: skip
    record = panel.uns[key]
    return {
        **record["test"], "learning_rate": learning_rate, "dev_mcc": record["dev"]["best_mcc"],
        "best_step": record["dev"]["best_step"], "steps": record["steps"],
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


def summary(table: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tasks × method labels: mean and sd (over seeds) of test MCC × 100."""
    table = table.assign(label=table["method"].map(LABELS), mcc100=table["mcc"] * 100)
    grouped = table.groupby(["task", "label"], sort=False)["mcc100"]
    order = dict(index=list(dict.fromkeys(table["task"])),
                 columns=list(dict.fromkeys(table["label"])))  # fmt: skip
    mean = grouped.mean().unstack().reindex(**order)
    sd = grouped.std(ddof=1).unstack().reindex(**order)
    return mean, sd


def with_published(mean: pd.DataFrame, published: pd.DataFrame) -> pd.DataFrame:
    theirs = published.T.reindex([task_key(t) for t in mean.index])
    theirs.index = mean.index
    return pd.concat([mean, theirs], axis=1)


def plot(table: pd.DataFrame, published: pd.DataFrame, path: Path, protocol: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean, sd = summary(table)
    scores = with_published(mean, published)
    n_ours = mean.shape[1]
    greys = ["#4d4d4d", "#8c8c8c", "#c4c4c4"]
    width = 0.8 / scores.shape[1]
    fig, ax = plt.subplots(figsize=(10, 5))
    x = np.arange(scores.shape[0])
    for j, column in enumerate(scores.columns):
        mine = j < n_ours
        offset = x + (j - (scores.shape[1] - 1) / 2) * width
        ax.bar(offset, scores[column].to_numpy(), width,
               label=column if mine else f"{column} (published)",
               color=plt.get_cmap("tab10").colors[j] if mine else greys[(j - n_ours) % 3],
               hatch=None if mine else "//", edgecolor="white" if mine else "black",
               linewidth=0.4)  # fmt: skip
        if mine:
            ax.errorbar(offset, mean[column].to_numpy(), yerr=sd[column].fillna(0).to_numpy(),
                        fmt="none", ecolor="black", capsize=2, linewidth=0.8)  # fmt: skip
    promoter = scores.index.str.startswith("prom/")
    if promoter.any():
        goal = scores["DNABERT 6-mer"].to_numpy()[promoter] - 5
        ax.hlines(goal, x[promoter] - 0.42, x[promoter] + 0.42, colors="black",
                  linestyles="dashed", linewidth=1,
                  label="DNABERT 6-mer − 5 (the goal)")  # fmt: skip
    ax.set_xticks(x, [task_key(t) for t in scores.index])
    ax.set_ylabel("test MCC × 100 (ours: mean ± sd of seeds)")
    ax.axhline(0, color="black", linewidth=0.6)
    steps = protocol["pretraining"].get("max_steps")
    pretrained = f"; pretrained {steps:,} steps, decontaminated corpus" if steps else ""
    ax.set_title(
        f"GUE test MCC: ours on 2 CPU cores (≤ {protocol['max_train']:,} training sequences, "
        f"{protocol['max_steps']} fine-tuning steps × {protocol['batch_size']}{pretrained})\n"
        "vs published models (full training sets, GPUs; DNABERT-2 paper, Table 4)",
        fontsize=9,
    )
    ax.legend(ncol=3, fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), frameon=False)
    ax.set_ylim(min(0, np.nanmin(scores.to_numpy()) - 5), 100)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=150)
    plt.close(fig)


def markdown(table: pd.DataFrame, published: pd.DataFrame) -> str:
    mean, sd = summary(table)
    scores = with_published(mean, published)
    n_ours = mean.shape[1]
    lines = ["| task | " + " | ".join(scores.columns) + " |", "|---" * (scores.shape[1] + 1) + "|"]
    for task, row in scores.iterrows():
        cells = []
        for j, (column, value) in enumerate(row.items()):
            spread = sd.loc[task, column] if j < n_ours else np.nan
            cell = "–" if np.isnan(value) else f"{value:.1f}"
            cells.append(cell + ("" if np.isnan(spread) else f" ± {spread:.1f}"))
        lines.append(f"| `{task}` | " + " | ".join(cells) + " |")
    lines += ["", "| method | parameters (trained) | seeds | mean wall s per run |",
              "|---|---|---|---|"]  # fmt: skip
    for method, group in table.groupby("method", sort=False):
        params = f"{int(group['n_parameters'].iloc[0]):,}"
        trained = int(group["n_trainable_parameters"].iloc[0])
        if trained != int(group["n_parameters"].iloc[0]):
            params += f" ({trained:,})"
        lines.append(f"| {LABELS[method]} | {params} | {group['seed'].nunique()} | "
                     f"{group['wall_seconds'].mean():.0f} |")  # fmt: skip
    return "\n".join(lines)


if __name__ == "__main__":
    main()
