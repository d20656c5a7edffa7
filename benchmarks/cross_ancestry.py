"""Cross-ancestry expression prediction: train on one population, test on the other.

A two-population cohort is simulated on the real reference (``simulate_cohort.py``:
msprime through stdpopsim's ``HomSap`` ``OutOfAfrica_2T12`` model, ``--n-people`` Africans
and as many Europeans, a 1 Mb contig with a uniform recombination rate of 1e-8, binary
mutations dropped on the real chr20:1,000,001-2,000,000 of hs37d5), over ``--width``-bp
windows centred on the TSS of the 30 GENCODE v19 genes of that megabase. For each
direction (EUR → AFR, AFR → EUR) expression is simulated with
``gl.datasets.simulate_expression(reference_people=<training population>)``: 1-3 causal
variants per gene, common (MAF >= 5 %) in the training population, with effects shared by
both populations and heritability ``--h2`` in the training population. Then every method
of ``gl.tl.fit_expression`` is scored three ways, genes being the units of reporting:

* ``cross``: trained on 4/5 of the training population (drawn at random: as many people
  as a within-population fold trains on), scored in the whole test population
  (``folds_by="population", test_groups=[test]``);
* ``within_test``: 5-fold cross-validation within the test population (the accuracy a
  model trained on the target population reaches);
* ``within_train``: 5-fold cross-validation within the training population (the accuracy
  usually reported).

The oracle of each split is the r of the true genetic value with expression in the same
people. Genes without a causal variant (no common variant in the training population)
are left out; a constant prediction (r undefined) counts as r = 0.

Configuration is chosen on dev data only: ``--phase dev`` simulates ``--dev-seed`` and
scores each candidate setting of :data:`METHOD_SETTINGS` by ``within_train`` r alone (no
test population is looked at), and writes the choice per method to
``results/cross_ancestry_dev.json``; ``--phase test`` reads it and runs the ``--seeds``
(other genealogies). Embedding methods use a small genlm_conv model pretrained here on the
reference megabase alone (cached in ``work/``), as tutorial 2 does.

Writes ``results/cross_ancestry.{json,md,csv}``.

    OMP_NUM_THREADS=1 python benchmarks/cross_ancestry.py              # dev, then test
    python benchmarks/cross_ancestry.py --phase test --seeds 11 12 13
    python benchmarks/cross_ancestry.py --phase test --methods fusion --add   # one more method

Needs ``stdpopsim`` (``bench`` extra).
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from simulate_cohort import DATA, REFERENCE, WORK, SimulationParams, panel_path, simulate_cohort

import genlm_sc as gl
from genlm_sc.tl.expression.fit import METHODS

HERE = Path(__file__).parent
RESULTS = HERE / "results"
GENES = DATA / "annotation" / "gencode_v19_genes_chr20_TSS_in_1000001-2000000.b37.tsv"
DEMOGRAPHY = "OutOfAfrica_2T12"
DIRECTIONS = (("EUR", "AFR"), ("AFR", "EUR"))
SPLITS = ("cross", "within_test", "within_train")
N_FOLDS = 5
#: The summary's scores, in the order of the Markdown table's columns (``gap``: cross r
#: less within-test r, per gene).
SCORES = ("r_within_train", "r_cross", "r_within_test", "gap", "oracle_r_cross",
          "oracle_r_within_train")  # fmt: skip


@dataclass(frozen=True)
class Method:
    """How a method of ``gl.tl.fit_expression`` is benchmarked.

    ``candidates``: its keyword settings, one picked on the dev seed when there are several
    (a ``*_options`` mapping gets ``model``, the small checkpoint, ``device="cpu"`` and
    ``progress=False`` unless it sets them).
    ``max_genes``: a costly method runs on that many heritable genes per simulation, drawn
    at random, not on all.
    """

    candidates: tuple[dict[str, Any], ...] = ({},)
    max_genes: int | None = None


#: The methods compared, one line each; a name that ``fit_expression`` does not offer
#: (``METHODS``) is skipped with a message.
#: The fused model: a reduced Enformer with random weights (dim 48, 2 blocks pruned to 1,
#: 8-bp bins) reading 256 bp around the TSS, heads trained for 3 epochs on the language
#: model's embeddings and the backbone's output (the settings of ``fusion_seeds.py``,
#: fixed before this benchmark ran; nothing chosen on its data).
FUSION = {"backbone": "enformer", "weights": "random", "input_length": 256, "epochs": 3,
          "batch_size": 32, "learning_rate": 1e-2,
          "config": {"dim": 48, "depth": 2, "heads": 2, "attn_dim_key": 8,
                     "num_downsamples": 3, "dim_divisible_by": 8}}  # fmt: skip
METHOD_SETTINGS: dict[str, Method] = {
    "predixcan": Method(),
    "elastic_net": Method(({}, {"n_pcs": 20})),
    "ridge": Method(),
    "finetune": Method(({"finetune_options": {"strategy": "lora", "epochs": 1}},), max_genes=2),
    "fusion": Method(({"fusion_options": FUSION},)),
}
#: Seconds spent in fit_expression per method (all splits, seeds and directions).
FIT_SECONDS: dict[str, float] = {}


def methods_to_run(wanted: list[str] | None) -> list[str]:
    names = wanted or list(METHOD_SETTINGS)
    skipped = [m for m in names if m not in METHODS or m not in METHOD_SETTINGS]
    if skipped:
        print(f"skipping {skipped}: not a method of this fit_expression or not configured")
    return [m for m in names if m not in skipped]


def keywords(setting: dict[str, Any], model: Path) -> dict[str, Any]:
    """fit_expression keywords of one setting, the ``*_options`` completed."""
    defaults = {"device": "cpu", "progress": False}
    return {
        k: defaults | ({"model": str(model)} if k == "finetune_options" else {}) | v
        if k.endswith("_options") else v
        for k, v in setting.items()
    }  # fmt: skip


def pretrained_model(args) -> Path:
    """A small genlm_conv model pretrained on the reference megabase (tutorial 2's recipe)."""
    folder = WORK / "cross_ancestry_model"
    if (folder / "config.json").exists():
        return folder
    corpus = gl.pp.PretrainingCorpus().add_fasta(REFERENCE, regions=["20:1000001-2000000"])
    return gl.tl.pretrain(
        corpus,
        output_dir=folder,
        model={"hidden_size": 64, "num_conv_layers": 4},
        sequence_length=256,
        max_steps=150,
        warmup_steps=20,
        genome_build="GRCh37",
        device="cpu",
        progress=False,
    )


def build_cohort(seed: int, args, model: Path):
    """The simulated people over the gene windows, embedded."""
    params = SimulationParams(n_people=args.n_people, seed=seed, demography=DEMOGRAPHY)
    vcf = simulate_cohort(params, verbose=False)
    genes = gl.pp.gene_windows(GENES, fasta=REFERENCE, width=args.width)
    cohort = gl.pp.personal_sequences(
        vcf, fasta=REFERENCE, genes=genes, panel=panel_path(vcf), progress=False
    )
    gl.tl.embed(cohort, model=model, device="cpu", progress=False)
    return cohort


def simulate(cohort, train: str, seed: int, args):
    """Expression with causal variants common in, and heritability set in, ``train``."""
    simulated = cohort.copy()
    people = (simulated.obs["population"] == train).to_numpy()
    gl.datasets.simulate_expression(
        simulated,
        n_causal=(1, 3),
        h2=args.h2,
        min_maf=0.05,
        reference_people=people,
        random_state=seed * 10 + [d[0] for d in DIRECTIONS].index(train),
    )
    return simulated


def split_cohort(simulated, split: str, train: str, test: str, seed: int):
    """The people a split uses, and fit_expression's fold keywords for it."""
    population = simulated.obs["population"].to_numpy()
    if split == "cross":  # train on as many people as a within-population fold does
        trained = np.flatnonzero(population == train)
        rng = np.random.default_rng(seed)
        left_out = rng.choice(trained, trained.size // N_FOLDS, replace=False)
        people = ~np.isin(np.arange(simulated.n_obs), left_out)
        return simulated[people].copy(), {"folds_by": "population", "test_groups": [test]}
    people = population == (test if split == "within_test" else train)
    return simulated[people].copy(), {"n_folds": N_FOLDS}


def realised_h2(simulated, population: str) -> pd.Series:
    """Share of expression variance that is genetic, per gene, in one population."""
    people = (simulated.obs["population"] == population).to_numpy()
    genetic = np.asarray(simulated.layers["sim_genetic_value"])[people]
    y = np.asarray(simulated.X)[people]
    return pd.Series(genetic.var(axis=0) / y.var(axis=0), index=simulated.var_names)


def run_simulation(cohort, seed, train, test, *, plan, splits, args, model) -> pd.DataFrame:
    """Every (method, setting) of ``plan`` on ``splits`` of one simulated expression."""
    simulated = simulate(cohort, train, seed, args)
    heritable = list(simulated.var_names[simulated.var["sim_n_causal"] > 0])
    rng = np.random.default_rng(seed)
    drawn = list(rng.permutation(heritable))
    frames = []
    for split in splits:
        people, folds = split_cohort(simulated, split, train, test, seed)
        for method, index, setting in plan:
            limit = METHOD_SETTINGS[method].max_genes
            genes = sorted(drawn[:limit]) if limit else heritable
            started = time.perf_counter()
            gl.tl.fit_expression(
                people,
                method=method,
                genes=genes,
                random_state=seed,
                key_added=f"{method}#{index}",
                **folds,
                **keywords(setting, model),
            )
            elapsed = time.perf_counter() - started
            FIT_SECONDS[method] = FIT_SECONDS.get(method, 0.0) + elapsed
            print(
                f"seed {seed} {train}->{test} {split:12s} {method}#{index}: {len(genes)} "
                f"genes, {elapsed:.1f} s",
                flush=True,
            )
        table = gl.get.expression_results(people)
        scored_in = train if split == "within_train" else test
        frames.append(table.assign(split=split, scored_in=scored_in))
    rows = pd.concat(frames, ignore_index=True)
    rows[["method", "setting"]] = rows["method"].str.split("#", expand=True)
    rows["setting"] = rows["setting"].astype(int)
    rows["r"] = rows["r"].fillna(0.0)  # a constant prediction predicts nothing
    h2 = {p: realised_h2(simulated, p) for p in (train, test)}
    rows["h2_scored"] = [h2[p][g] for p, g in zip(rows["scored_in"], rows["gene"], strict=True)]
    rows["n_causal"] = simulated.var.loc[rows["gene"], "sim_n_causal"].to_numpy()
    return rows.assign(seed=seed, train=train, test=test)


def dev_phase(args, model) -> dict[str, Any]:
    """Pick each method's setting by within-training-population r on the dev seed (only
    methods with several candidates run)."""
    names = [m for m in methods_to_run(args.methods) if len(METHOD_SETTINGS[m].candidates) > 1]
    plan = [(m, i, s) for m in names for i, s in enumerate(METHOD_SETTINGS[m].candidates)]
    cohort = build_cohort(args.dev_seed, args, model)
    rows = pd.concat(
        [
            run_simulation(
                cohort,
                args.dev_seed,
                train,
                test,
                plan=plan,
                splits=("within_train",),
                args=args,
                model=model,
            )
            for train, test in DIRECTIONS
        ]
    )
    scores = rows.groupby(["method", "setting"])["r"].mean()
    choice = {m: int(scores[m].idxmax()) for m in names}
    choice |= {m: 0 for m in METHOD_SETTINGS if m not in choice}
    report = {
        "dev_seed": args.dev_seed,
        "criterion": "mean within-training-population 5-fold CV r over heritable genes, "
        "both training populations; no test population scored",
        "scores": [
            {"method": m, "setting": METHOD_SETTINGS[m].candidates[i], "r": round(r, 4)}
            for (m, i), r in scores.items()
        ],
        "chosen": {m: METHOD_SETTINGS[m].candidates[i] for m, i in choice.items()},
        "args": _args_record(args),
    }
    (RESULTS / "cross_ancestry_dev.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["chosen"]))
    return report


def test_phase(args, model) -> None:
    dev = json.loads((RESULTS / "cross_ancestry_dev.json").read_text())
    names = methods_to_run(args.methods)
    for m in names:  # a method with one setting has nothing to choose
        if m not in dev["chosen"] and len(METHOD_SETTINGS[m].candidates) == 1:
            dev["chosen"][m] = METHOD_SETTINGS[m].candidates[0]
    missing = [m for m in names if m not in dev["chosen"]]
    if missing:
        raise SystemExit(f"no dev choice for {missing}: run --phase dev first")
    plan = [(m, 0, dev["chosen"][m]) for m in names]
    earlier = _earlier_rows(args, names)
    started = time.perf_counter()
    frames = []
    for seed in args.seeds:
        cohort = build_cohort(seed, args, model)
        for train, test in DIRECTIONS:
            frames.append(
                run_simulation(
                    cohort, seed, train, test, plan=plan, splits=SPLITS, args=args, model=model
                )
            )
    wall = time.perf_counter() - started
    rows = pd.concat(frames, ignore_index=True)
    if earlier is not None:
        rows = pd.concat([earlier, rows[earlier.columns]], ignore_index=True)
        wall += json.loads((RESULTS / "cross_ancestry.json").read_text())["wall_s"]
    summary, per_seed = summarise(rows)
    report = {
        "case": {
            "simulation": f"msprime via stdpopsim HomSap {DEMOGRAPHY}, {args.n_people} AFR + "
            f"{args.n_people} EUR, 1 Mb contig, uniform recombination 1e-8, the model's "
            "mutation rate (2.36e-8), binary mutations on real chr20:1,000,001-2,000,000",
            "genes": "30 GENCODE v19 genes, windows of width bp centred on the TSS; genes "
            "without a causal variant left out",
            "expression": "1-3 causal variants per gene, MAF >= 0.05 and heritability h2 in "
            "the training population, effects shared",
            "width": args.width,
            "h2": args.h2,
            "n_people_per_population": args.n_people,
            "seeds": args.seeds,
            "folds_within": N_FOLDS,
        }
        | counts(rows),
        "dev": {"seed": dev["dev_seed"], "chosen": dev["chosen"]},
        "summary": summary.to_dict(orient="records"),
        "per_seed": per_seed.to_dict(orient="records"),
        "fit_seconds": {m: round(t, 1) for m, t in FIT_SECONDS.items()},
        "wall_s": round(wall, 1),
        "args": _args_record(args),
    }
    (RESULTS / "cross_ancestry.json").write_text(json.dumps(report, indent=2) + "\n")
    columns = [
        "seed",
        "train",
        "test",
        "split",
        "scored_in",
        "method",
        "gene",
        "gene_name",
        "n_causal",
        "h2_scored",
        "r",
        "oracle_r",
        "n_train",
        "n_test",
    ]
    rows[columns].round(4).to_csv(RESULTS / "cross_ancestry.csv", index=False)
    (RESULTS / "cross_ancestry.md").write_text(markdown(report, summary))
    print(markdown(report, summary))


def _earlier_rows(args, names: list[str]) -> pd.DataFrame | None:
    """With ``--add``: the committed rows of the methods not run now, for the same case."""
    if not args.add:
        return None
    report = json.loads((RESULTS / "cross_ancestry.json").read_text())
    same = ("n_people", "width", "h2", "seeds", "dev_seed")
    changed = [k for k in same if report["args"][k] != vars(args)[k]]
    if changed:
        raise SystemExit(f"--add needs the committed run's {changed}")
    for m, seconds in report["fit_seconds"].items():
        if m not in names:
            FIT_SECONDS[m] = seconds
    rows = pd.read_csv(RESULTS / "cross_ancestry.csv")
    return rows[~rows["method"].isin(names)]


def report_phase() -> None:
    """Summarise the per-gene rows of ``results/cross_ancestry.csv`` again."""
    report = json.loads((RESULTS / "cross_ancestry.json").read_text())
    rows = pd.read_csv(RESULTS / "cross_ancestry.csv")
    summary, per_seed = summarise(rows)
    report["case"] |= counts(rows)
    report["summary"] = summary.to_dict(orient="records")
    report["per_seed"] = per_seed.to_dict(orient="records")
    (RESULTS / "cross_ancestry.json").write_text(json.dumps(report, indent=2) + "\n")
    (RESULTS / "cross_ancestry.md").write_text(markdown(report, summary))
    print(markdown(report, summary))


def counts(rows: pd.DataFrame) -> dict[str, Any]:
    """Heritable genes and causal variants per direction, and the realised heritability
    (genetic share of expression variance) in each population, mean over genes and seeds."""
    genes = rows.drop_duplicates(["seed", "train", "gene"])
    out: dict[str, Any] = {"genes_per_simulation": {}, "causal_variants": {}, "realised_h2": {}}
    for (train, test), part in genes.groupby(["train", "test"]):
        direction = f"{train}->{test}"
        sizes = part.groupby("seed")["gene"].size()
        out["genes_per_simulation"][direction] = [int(sizes.min()), int(sizes.max())]
        out["causal_variants"][direction] = int(part["n_causal"].sum())
        h2 = rows[(rows["train"] == train) & (rows["split"] != "cross")]
        h2 = h2.drop_duplicates(["seed", "gene", "split"]).groupby("scored_in")["h2_scored"]
        out["realised_h2"][direction] = {k: round(float(v), 3) for k, v in h2.mean().items()}
    return out


def summarise(rows: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per direction and method: each split's mean r over genes, mean ± sd over seeds."""
    wide = rows.pivot_table(
        index=["seed", "train", "test", "method", "gene"], columns="split", values=["r", "oracle_r"]
    )
    wide.columns = [f"{v}_{s}" for v, s in wide.columns]
    wide["gap"] = wide["r_cross"] - wide["r_within_test"]
    per_seed = wide.groupby(["train", "test", "method", "seed"]).agg(
        genes=("r_cross", "size"), **{c: (c, "mean") for c in wide.columns}
    )
    table = per_seed.groupby(["train", "test", "method"]).agg(
        genes=("genes", "sum"),
        **{f"{k}_mean": (k, "mean") for k in SCORES},
        **{f"{k}_sd": (k, "std") for k in SCORES},
    )
    return table.reset_index().round(4), per_seed.reset_index().round(4)


def markdown(report: dict, summary: pd.DataFrame) -> str:
    case = report["case"]
    lines = [
        "# Cross-ancestry expression prediction (simulated)",
        "",
        f"{case['simulation']}; {case['genes'].replace('width', str(case['width']))}; "
        f"{case['expression']} (h2 = {case['h2']}). Seeds {case['seeds']} (dev seed "
        f"{report['dev']['seed']}, settings chosen there: {json.dumps(report['dev']['chosen'])}). "
        "Mean over genes of each seed, then mean ± sd over seeds; `genes` counts gene × seed.",
        "",
        *[
            f"- {d}: {lo}–{hi} heritable genes per seed, {case['causal_variants'][d]} causal "
            f"variants in all; realised h2 (mean over genes) "
            + ", ".join(f"{p} {v}" for p, v in case["realised_h2"][d].items())
            for d, (lo, hi) in case["genes_per_simulation"].items()
        ],
        "",
        "| train → test | method | genes | within train | cross | within test | "
        "cross − within test | oracle test | oracle train |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in summary.itertuples():
        cells = [_pm(row, k) for k in SCORES]
        lines.append(
            f"| {row.train} → {row.test} | {row.method} | {row.genes} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        f"Command: `OMP_NUM_THREADS=1 python benchmarks/cross_ancestry.py`; test phase "
        f"{report['wall_s']} s on one CPU thread. Means over seeds of the per-seed gene means, "
        "from the per-gene rows of `cross_ancestry.csv` (`--phase report`).",
        "",
    ]
    return "\n".join(lines)


def _pm(row, key: str) -> str:
    return f"{getattr(row, key + '_mean'):.3f} ± {getattr(row, key + '_sd'):.3f}"


def _args_record(args) -> dict[str, Any]:
    return dict(vars(args))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--phase",
        choices=("dev", "test", "all", "report"),
        default="all",
        help="report: summarise results/cross_ancestry.csv again, fitting nothing",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[11, 12, 13])
    parser.add_argument("--dev-seed", type=int, default=1)
    parser.add_argument("--n-people", type=int, default=500, help="per population")
    parser.add_argument("--width", type=int, default=2048)
    parser.add_argument("--h2", type=float, default=0.3)
    parser.add_argument("--methods", nargs="+", help="default: every configured method")
    parser.add_argument(
        "--add",
        action="store_true",
        help="test phase: keep the committed rows of the methods not in --methods (same case)",
    )
    args = parser.parse_args()
    if args.phase == "report":
        report_phase()
        return
    import torch

    torch.set_num_threads(1)
    RESULTS.mkdir(exist_ok=True)
    model = pretrained_model(args)
    phase = vars(args).pop("phase")
    if phase in ("dev", "all"):
        dev_phase(args, model)
    if phase in ("test", "all"):
        test_phase(args, model)


if __name__ == "__main__":
    main()
