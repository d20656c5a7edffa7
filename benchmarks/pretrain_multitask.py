"""Multi-task (LOGO-style) pretraining against masked-LM-only pretraining at equal compute.

The corpus joins two kinds of real sequence, each with its labels:

* the promoter corpus of ``pretrain_promoters.py`` (``promoters/pretraining_corpus_hg38.fa.gz``,
  GRCh38), label ``promoter = 1``;
* background: the real chr20 reference of the shipped example (hs37d5, 1,000,001–2,000,000)
  cut into 2,000-bp windows, without every window within 5 kb of a GENCODE v19 TSS (any
  gene type), label ``promoter = 0``; its sampling weight makes a quarter of the training
  crops background, so that the per-sequence target is not almost constant.

Every base is labelled ``cpg_island`` by ``gl.pp.cpg_islands`` (Gardiner-Garden & Frommer:
a 200-bp window with GC ≥ 50 % and CpG observed/expected ≥ 0.6). The joined corpus is
cleaned of every GUE sequence (``gl.pp.decontaminate``, all five tasks ``gue.py`` knows,
both strands) and split as ``pretrain_promoters.py`` splits: every 20th group of sequences
sharing 200 bases held out, with a check that nothing held out shares 200 bases with a
training sequence.

Two arms with the same steps, batch, crops, masks, learning rate and initial encoder
weights (the pretraining seed): ``mlm`` (masked LM only) and ``multitask`` (masked LM +
``promoter`` head on the mean-pooled last layer + per-base ``cpg_island`` head, loss
weights 1 and 1). Each run then reports

* held-out bits per masked base, on the same fixed masks for both arms (15 % of the bases
  of every 512-bp tile of the held-out sequences; ``pretrain_variant_aware.py``'s
  ``evaluation_masks`` and ``score_tiles``), overall and for promoter and background tiles,
  with a 95 % bootstrap interval over held-out sequences;
* for ``multitask``, the heads' held-out accuracy (unmasked tiles) next to the majority class;
* GUE fine-tuning (decontaminated as above) with the protocol of ``gue.py``
  (``results/gue_protocol.json``: the same train/dev subsample, steps, batch, the
  ``pretrained_ft`` learning rate chosen on dev for that task, best-dev-MCC checkpoint),
  fine-tuning seed = pretraining seed, test MCC.

    python benchmarks/pretrain_multitask.py --arm mlm --seed 0
    python benchmarks/pretrain_multitask.py --arm multitask --seed 0
    python benchmarks/pretrain_multitask.py --summarise

Each run writes ``results/pretrain_multitask_<arm>_seed<seed>.json`` (a run started again
with the same steps keeps the GUE tasks already there and adds the others); ``--summarise`` pools
them into ``results/pretrain_multitask_summary.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from gue import SHARED, TASKS, load_panel, run_neural
from pretrain_promoters import CORPUS, split
from pretrain_variant_aware import bootstrap, evaluation_masks, score_tiles

import genlm_sc as gl
from genlm_sc.models import MultiTaskMaskedLM, load_tokenizer
from genlm_sc.pp import PretrainingCorpus
from genlm_sc.pp.examples import tile_sequences

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REFERENCE = "reference/hs37d5_chr20_1-2000000_Npadded.fa.gz"
GENES = "annotation/gencode.v19.genes.v6p.hg19.bed.gz"
REAL = (1_000_001, 2_000_000)
WINDOW, TSS_DISTANCE, BACKGROUND_SHARE = 2000, 5000, 0.25
TILE = 512
AUXILIARY = {"promoter": 1.0, "cpg_island": 1.0}
GUE_TASKS = ("prom/prom_core_notata", "prom/prom_300_tata")


def background_regions(data: Path) -> list[str]:
    """2,000-bp windows of the real chr20 sequence further than 5 kb from every TSS."""
    genes = pd.read_csv(data / GENES, sep="\t", header=None, usecols=[0, 1, 2, 5])
    genes = genes[genes[0] == "chr20"]
    tss = np.where(genes[5] == "+", genes[1] + 1, genes[2]).astype(np.int64)  # 1-based
    regions = []
    for start in range(REAL[0], REAL[1] - WINDOW + 2, WINDOW):
        end = start + WINDOW - 1
        if not np.any((tss >= start - TSS_DISTANCE) & (tss <= end + TSS_DISTANCE)):
            regions.append(f"20:{start}-{end}")
    return regions


def build_corpus(data: Path) -> tuple[PretrainingCorpus, PretrainingCorpus, dict]:
    """The labelled, decontaminated corpus, split into training and held-out parts."""
    began = time.perf_counter()
    regions = background_regions(data)
    corpus = PretrainingCorpus().add_fasta(data / "promoters" / CORPUS, labels={"promoter": 1})
    corpus.add_fasta(data / REFERENCE, regions=regions, labels={"promoter": 0})
    gue = {task: data / "gue" / task for task in TASKS}
    corpus, report = gl.pp.decontaminate(corpus, gue, by=["split", "label"])
    kind = np.array([labels["promoter"] for labels in corpus.labels])
    bases = np.array([len(s) for s in corpus.sequences])
    promoter_bases, background_bases = int(bases[kind == 1].sum()), int(bases[kind == 0].sum())
    weight = BACKGROUND_SHARE / (1 - BACKGROUND_SHARE) * promoter_bases / background_bases
    corpus.weights = [weight if k == 0 else 1.0 for k in kind]
    corpus.sources.append({"kind": "background_weight", "weight": weight,
                           "share_of_crops": BACKGROUND_SHARE})  # fmt: skip
    corpus.label_bases("cpg_island", gl.pp.cpg_islands)
    train, held = split(corpus)
    island = np.concatenate([labels["cpg_island"] for labels in corpus.labels])
    summary = {
        "background_windows": len(regions),  # before decontamination
        "window": WINDOW, "tss_distance": TSS_DISTANCE,
        "gue_sequences_removed": next(s["n_sequences_removed"] for s in corpus.sources
                                      if s["kind"] == "decontaminated"),
        "promoter_sequences": int((kind == 1).sum()), "promoter_bases": promoter_bases,
        "background_sequences": int((kind == 0).sum()), "background_bases": background_bases,
        "background_weight": weight, "cpg_island_fraction": float(island.mean()),
        "training_sequences": len(train), "held_out_sequences": len(held),
        "held_out_bases": held.n_bases, "ready_s": round(time.perf_counter() - began, 1),
        "decontamination": report.to_dict("records"),
    }  # fmt: skip
    print(f"corpus: {summary['promoter_sequences']:,} promoter sequences ({promoter_bases:,} bp), "
          f"{summary['background_sequences']} background windows ({background_bases:,} bp, "
          f"weight {weight:.2f}); {island.mean():.1%} of bases in CpG islands; "
          f"ready in {summary['ready_s']:.0f} s", flush=True)  # fmt: skip
    return train, held, summary


def held_out_scores(model_dir: Path, held: PretrainingCorpus, *, multitask: bool) -> dict:
    """Bits per masked base on fixed masks, and the heads' accuracy, on held-out tiles."""
    tiles = tile_sequences(held, length=TILE)
    masks = evaluation_masks(tiles)
    bits = score_tiles(model_dir, tiles, masks, device="cpu")
    n = len(held)
    total, count = np.zeros(n), np.zeros(n)
    for tile, values in zip(tiles, bits, strict=True):
        keep = np.isfinite(values)
        total[tile["source"]] += values[keep].sum()
        count[tile["source"]] += keep.sum()
    kind = np.array([labels["promoter"] for labels in held.labels])
    out = {"tiles": len(tiles), "block_bits": total.tolist(), "block_bases": count.tolist(),
           "block_promoter": kind.tolist()}  # fmt: skip
    for name, keep in (("all", kind >= 0), ("promoter", kind == 1), ("background", kind == 0)):
        out[f"bits_{name}"] = bootstrap(total[keep], count[keep])  # over held-out sequences
    if multitask:
        out["heads"] = head_accuracy(model_dir, tiles)
    return out


@torch.inference_mode()
def head_accuracy(model_dir: Path, tiles: list[dict]) -> dict:
    """Accuracy and balanced accuracy of both heads on unmasked held-out tiles."""
    model = MultiTaskMaskedLM.from_pretrained(model_dir).eval()
    predicted = model.predict([t["sequence"] for t in tiles], load_tokenizer(model_dir))
    promoter_true = np.array([t["labels"]["promoter"] for t in tiles])
    promoter_pred = np.array([p.argmax() for p in predicted["promoter"]])
    island_true = np.concatenate([t["labels"]["cpg_island"] for t in tiles])
    island_pred = np.concatenate([p.argmax(-1) for p in predicted["cpg_island"]])
    if island_pred.shape != island_true.shape:  # per-token predictions against per-base truth
        raise ValueError("scoring the per-base head needs one token per base")
    return {"promoter": _accuracy(promoter_true, promoter_pred),
            "cpg_island": _accuracy(island_true, island_pred)}  # fmt: skip


def _accuracy(true: np.ndarray, predicted: np.ndarray) -> dict:
    from sklearn.metrics import balanced_accuracy_score

    majority = np.bincount(true).max() / len(true)
    return {"accuracy": float((true == predicted).mean()), "majority": float(majority),
            "balanced_accuracy": float(balanced_accuracy_score(true, predicted)),
            "n": len(true)}  # fmt: skip


def run(args) -> None:
    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    train, held, corpus_summary = build_corpus(args.data)
    out = gl.tl.pretrain(
        train, eval_corpus=held, output_dir=args.work / f"{args.arm}_seed{args.seed}",
        max_steps=args.steps, batch_size=args.batch_size, eval_steps=args.steps,
        save_steps=500, random_state=args.seed, device="cpu", progress=False,
        auxiliary=AUXILIARY if args.arm == "multitask" else None,
    )  # fmt: skip
    record = gl.models.pretraining_record(out)
    pretrain_s = time.perf_counter() - began
    print(f"{args.arm} seed {args.seed}: pretrained in {pretrain_s:.0f} s", flush=True)
    result = {
        "arm": args.arm, "seed": args.seed, "steps": args.steps, "batch_size": args.batch_size,
        "auxiliary": AUXILIARY if args.arm == "multitask" else None,
        "pretraining_metrics": record["metrics"], "pretrain_seconds": round(pretrain_s, 1),
        "corpus": corpus_summary,
        "held_out": held_out_scores(out, held, multitask=args.arm == "multitask"),
    }  # fmt: skip
    protocol = json.loads((RESULTS / "gue_protocol.json").read_text())
    path = RESULTS / f"pretrain_multitask_{args.arm}_seed{args.seed}.json"
    earlier = json.loads(path.read_text()) if path.exists() else {}
    if earlier.get("steps") != args.steps:
        earlier = {}
    if record.get("resumed_from") and earlier:  # the model was trained by the earlier run
        result["pretrain_seconds"] = earlier["pretrain_seconds"]
    result["gue"] = earlier.get("gue", {})
    for task in args.tasks:
        if task in result["gue"]:
            continue
        panel = load_panel(args.data, task, protocol, with_test=True)
        learning_rate = protocol["choices"][task]["pretrained_ft"]["learning_rate"]
        result["gue"][task] = run_neural(panel, "pretrained_ft", {**protocol, "model": str(out)},
                                         learning_rate=learning_rate, seed=args.seed)  # fmt: skip
        print(f"{task}: test MCC {result['gue'][task]['mcc']:.3f}", flush=True)
    result["wall_seconds"] = round(time.perf_counter() - began, 1)
    path.write_text(json.dumps(result, indent=1, default=float))
    print(f"wrote {path}")


def summarise(out: Path, data: Path) -> None:
    runs = [
        json.loads(p.read_text()) for p in sorted(RESULTS.glob("pretrain_multitask_*_seed*.json"))
    ]
    rows = []
    for r in runs:
        row = {"arm": r["arm"], "seed": r["seed"]}
        for name in ("all", "promoter", "background"):
            row[f"bits_{name}"] = r["held_out"][f"bits_{name}"]["mean"]
        for task, scores in r["gue"].items():
            row[f"mcc_{task}"] = scores["mcc"]
        for head, scores in r["held_out"].get("heads", {}).items():
            row[f"{head}_accuracy"] = scores["accuracy"]
            row[f"{head}_balanced_accuracy"] = scores["balanced_accuracy"]
            row[f"{head}_majority"] = scores["majority"]
        rows.append(row)
    table = pd.DataFrame(rows).sort_values(["arm", "seed"])
    _, held, _ = build_corpus(data)
    paired = paired_differences(runs, gl.pp.overlap_groups(held, k=200))
    spread = table.drop(columns="seed").groupby("arm").agg(["mean", "std"])
    summary = {"runs": table.to_dict("records"), "paired": paired, "gue_paired": paired_gue(table),
               "mean_sd": {f"{a}|{m}|{s}": v for (m, s), col in spread.items()
                           for a, v in col.items()}}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1, default=float))
    out.with_suffix(".md").write_text(markdown(table, paired))
    print(markdown(table, paired))


def paired_differences(runs: list[dict], groups: np.ndarray) -> list[dict]:
    """Per seed: multitask − mlm bits/base on the same masked bases, 95 % interval.

    The interval resamples whole overlap groups of held-out sequences (``groups``: the
    group of each held-out sequence), as the split held them out.
    """
    by = {(r["arm"], r["seed"]): r for r in runs}
    out = []
    for seed in sorted({s for _, s in by}):
        if ("mlm", seed) not in by or ("multitask", seed) not in by:
            continue
        a, b = by[("mlm", seed)]["held_out"], by[("multitask", seed)]["held_out"]
        count = np.asarray(a["block_bases"])
        if not np.array_equal(count, b["block_bases"]):
            raise ValueError(f"seed {seed}: the two arms were scored on different bases")
        total = np.stack([a["block_bits"], b["block_bits"]], 1)
        kind = np.asarray(a["block_promoter"])
        row = {"seed": seed}
        for name, keep in (("all", kind >= 0), ("promoter", kind == 1), ("background", kind == 0)):
            used = keep & (count > 0)
            units, unit = np.unique(groups[used], return_inverse=True)
            t = np.zeros((len(units), 2))
            np.add.at(t, unit, total[used])
            c = np.bincount(unit, weights=count[used])
            paired = bootstrap(t, c, seed=seed)  # resamples groups; last − first arm
            row[name] = {**paired, "groups": len(units), "sequences": int(used.sum())}
        out.append(row)
    return out


def paired_gue(table: pd.DataFrame) -> dict:
    """Per GUE task: multitask − mlm test MCC per seed, mean and 95 % t-interval over seeds."""
    from scipy import stats

    out = {}
    for column in (c for c in table.columns if c.startswith("mcc_")):
        wide = table.pivot(index="seed", columns="arm", values=column).dropna()
        change = (wide["multitask"] - wide["mlm"]).to_numpy()
        half = stats.t.ppf(0.975, len(change) - 1) * change.std(ddof=1) / np.sqrt(len(change))
        mean = float(change.mean())
        interval = [mean - half, mean + half]
        out[column[4:]] = {"per_seed": change.tolist(), "mean": mean, "t_ci95": interval}
    return out


def markdown(table: pd.DataFrame, paired: list[dict]) -> str:
    def cell(arm: str, column: str, digits: int, scale: float = 1.0) -> str:
        values = table.loc[table["arm"] == arm, column].dropna() * scale
        if values.empty:
            return "—"
        return f"{values.mean():.{digits}f} ± {values.std(ddof=1):.{digits}f} ({len(values)})"

    def difference(column: str, digits: int, scale: float) -> str:
        if table[column].isna().any():
            return ""
        wide = table.pivot(index="seed", columns="arm", values=column) * scale
        return ", ".join(f"{value:+.{digits}f}" for value in wide["multitask"] - wide["mlm"])

    lines = ["| measure | masked LM only | multi-task | multi-task − masked LM, per seed |",
             "|---|---|---|---|"]  # fmt: skip
    for column in table.columns:
        if column in ("arm", "seed"):
            continue
        if column.startswith("bits_"):
            name, digits, scale = f"held-out bits/base, {column[5:]} tiles", 4, 1.0
        elif column.startswith("mcc_"):
            name, digits, scale = f"GUE `{column[4:]}` test MCC × 100", 1, 100.0
        else:
            name, digits, scale = column.replace("_", " ") + " (held-out tiles)", 3, 1.0
        lines.append(f"| {name} | {cell('mlm', column, digits, scale)} | "
                     f"{cell('multitask', column, digits, scale)} | "
                     f"{difference(column, digits, scale)} |")  # fmt: skip
    lines += [
        "",
        "Mean ± SD over pretraining seeds (number of seeds). Paired, multi-task − masked LM only,"
        " bits per masked base on the same held-out bases (95 % interval, resampling the overlap"
        " groups of held-out sequences):",
        "",
        "| seed | all | promoter tiles | background tiles |",
        "|---|---|---|---|",
    ]
    for row in paired:
        cells = [f"{row[n]['difference']:+.4f} [{row[n]['ci95'][0]:+.4f}, {row[n]['ci95'][1]:+.4f}]"
                 for n in ("all", "promoter", "background")]  # fmt: skip
        lines.append(f"| {row['seed']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", choices=("mlm", "multitask"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--tasks", nargs="*", default=list(GUE_TASKS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--work", type=Path, default=HERE / "work" / "multitask")
    parser.add_argument("--summarise", action="store_true")
    args = parser.parse_args()
    if args.summarise:
        summarise(RESULTS / "pretrain_multitask_summary", args.data)
    elif args.arm is None:
        parser.error("--arm is needed unless --summarise")
    else:
        run(args)


if __name__ == "__main__":
    main()
