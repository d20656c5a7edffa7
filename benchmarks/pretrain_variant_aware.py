"""Does pretraining with human variation help? Same compute, with and without variants.

Two models of the default architecture are pretrained for the same number of steps
(same batch size and sequence length) on a region of a phased cohort (by default the
shipped chr20 example, GRCh37, 1000 Genomes EUR):

* ``reference``: the reference sequence of the training region only;
* ``variants``: the same reference plus UKBioBERT's variant-centred windows and the real
  haplotypes of the training people, with more masking at variant positions.

Both are scored on the haplotypes of held-out people in a held-out region, cut in
512-base tiles, each distinct tile of a 512-bp stretch of the genome once. Every tile
gets one fixed mask, the same for every model: 15 % of its bases drawn at random (seeded
by the tile's index) plus every base that differs from the reference, each replaced by
``[MASK]``; each masked A/C/G/T base is scored by ``-log2 p(true base)``. Bits per base
are reported overall (the random 15 %) and at variant positions, with 95 % confidence
intervals from a bootstrap over the 512-bp blocks of the genome (all tiles of a block
resampled together, as they share their variant sites); so is the paired difference
between the models, with the smallest difference the evaluation would detect (80 %
power, two-sided 5 %) and how many variant bases detecting 0.01 bits/base would need.
Next to them: a context-count baseline (the centre base given ±``h`` bases, counted on
the training region).

A downstream readout: the same semi-synthetic expression of the 30 example genes in all
503 people (``gl.datasets.simulate_expression``, seed 0) predicted from each model's
embeddings (``gl.tl.embed``, ``gl.tl.fit_expression(method="ridge")``, 5 folds), per-gene
Pearson r, next to PrediXcan and the oracle.

Writes ``results/pretrain_variant_aware.{json,md}`` (``--out`` gives another stem, e.g.
for other seeds); ``--summarise STEM ...`` pools finished seeds into mean, sd and a
t-interval over seeds (``results/pretrain_variant_aware_summary.{json,md}``).

    python benchmarks/pretrain_variant_aware.py --steps 400 --seed 0
    python benchmarks/pretrain_variant_aware.py --summarise \
        benchmarks/results/pretrain_variant_aware_seed{0,1,2}

The larger run for a GPU machine takes a whole chromosome of the user's own files, e.g.
1000 Genomes chr20 with GRCh37 (``--vcf``, ``--fasta``, ``--train-region``,
``--eval-region``, ``--genes`` for the readout) and ``--device cuda --steps 20000
--batch-size 64``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from scipy import stats
from transformers import AutoModelForMaskedLM

import genlm_sc as gl
from genlm_sc._devices import resolve_device
from genlm_sc.io import FastaReference, VariantFile
from genlm_sc.models import load_tokenizer
from genlm_sc.pp import PretrainingCorpus
from genlm_sc.pp.corpus import parse_region
from genlm_sc.pp.examples import tile_sequences

TRAIN_REGION = "20:1000001-1500000"
EVAL_REGION = "20:1500001-2000000"
RESULTS = Path(__file__).parent / "results"
TILE = 512
WINDOW = 4096
MODELS = ("reference", "variants")


def context_count_bits(train: list[np.ndarray], held_out: list[np.ndarray], h: int = 3) -> float:
    """Bits per base of a ±h context-count model (add-½ smoothing) on held-out sequence."""
    lut = np.full(256, 4, dtype=np.int64)
    lut[np.frombuffer(b"ACGT", np.uint8)] = np.arange(4)

    def contexts(codes: np.ndarray):
        a = lut[codes]
        n = len(a) - 2 * h
        columns = [a[i : i + n] for i in range(2 * h + 1)]
        ok = np.all([c < 4 for c in columns], axis=0)
        index = np.zeros(n, dtype=np.int64)
        for j, c in enumerate(columns):
            if j != h:
                index = index * 4 + np.minimum(c, 3)
        return index[ok], columns[h][ok]

    counts = np.full((4 ** (2 * h), 4), 0.5)
    for codes in train:
        index, centre = contexts(codes)
        np.add.at(counts, (index, centre), 1)
    probabilities = counts / counts.sum(1, keepdims=True)
    bits, n = 0.0, 0
    for codes in held_out:
        index, centre = contexts(codes)
        bits -= np.log2(probabilities[index, centre]).sum()
        n += len(index)
    return bits / n


def held_out_tiles(vcf, fasta, region: str, people: list[str], seed: int):
    """Distinct haplotype tiles of ``people`` in ``region``, each with its genome block.

    Returns the held-out corpus and the distinct 512-base tiles of each 512-bp stretch of
    the reference (``sequence``, ``variant`` mask, ``block``: the stretch's index).
    """
    with FastaReference(fasta) as reference:
        chrom, start, end = parse_region(region, lengths=reference.lengths)
    corpus, window_left = PretrainingCorpus(), []
    for left in range(start, end - WINDOW + 1, WINDOW):
        region = f"{chrom}:{left + 1}-{left + WINDOW}"
        corpus.add_haplotypes(vcf, fasta=fasta, regions=[region], samples=people,
                              window=WINDOW, random_state=seed)  # fmt: skip
        window_left += [left] * corpus.sources[-1]["n_sequences"]
    tiles, seen = [], set()
    for piece in tile_sequences(corpus, length=TILE):
        # the k-th tile of every haplotype of a window covers about the same bases
        block = (window_left[piece["source"]] - start + piece["start"]) // TILE
        if (block, piece["sequence"]) not in seen:
            seen.add((block, piece["sequence"]))
            tiles.append({**piece, "block": block})
    return corpus, tiles


def evaluation_masks(tiles: list[dict], *, rate: float = 0.15) -> list[np.ndarray]:
    """One fixed mask per tile: ``rate`` of its bases at random plus every variant base."""
    masks = []
    for index, tile in enumerate(tiles):
        rng = np.random.default_rng([20240601, index])
        mask = rng.random(len(tile["sequence"])) < rate
        if tile["variant"] is not None:
            mask |= tile["variant"]
        masks.append(mask)
    return masks


@torch.inference_mode()
def score_tiles(model_dir: Path, tiles: list[dict], masks: list[np.ndarray], *, device: str,
                batch_size: int = 64) -> list[np.ndarray]:  # fmt: skip
    """Bits of every masked A/C/G/T base (NaN elsewhere) under a single-base-token model."""
    tokenizer = load_tokenizer(model_dir)
    model = AutoModelForMaskedLM.from_pretrained(model_dir).to(device).eval()
    base_id = {b: tokenizer.convert_tokens_to_ids(b) for b in "ACGT"}
    out = []
    for first in range(0, len(tiles), batch_size):
        chunk = tiles[first : first + batch_size]
        encoded = tokenizer([t["sequence"] for t in chunk], padding=True,
                            return_offsets_mapping=True, return_tensors="np")  # fmt: skip
        ids = encoded["input_ids"].astype(np.int64)
        offsets = encoded["offset_mapping"]
        rows, columns, bases = [], [], []
        for i, tile in enumerate(chunk):
            span = offsets[i]
            token_of = np.flatnonzero(span[:, 1] - span[:, 0] == 1)
            if len(token_of) != len(tile["sequence"]):
                raise ValueError(f"{model_dir}: scoring needs one token per base")
            masked = np.flatnonzero(masks[first + i])
            rows.append(np.full(len(masked), i))
            columns.append(token_of[masked])
            bases.append(masked)
        rows, columns = np.concatenate(rows), np.concatenate(columns)
        truth = ids[rows, columns].copy()
        ids[rows, columns] = tokenizer.mask_token_id
        logits = model(
            input_ids=torch.from_numpy(ids).to(device),
            attention_mask=torch.from_numpy(encoded["attention_mask"]).to(device),
        ).logits.float()
        logp = torch.log_softmax(logits[torch.from_numpy(rows), torch.from_numpy(columns)], -1)
        bits = (-logp[torch.arange(len(truth)), torch.from_numpy(truth)] / np.log(2)).cpu().numpy()
        scoreable = np.isin(truth, list(base_id.values()))
        for i in range(len(chunk)):
            values = np.full(len(chunk[i]["sequence"]), np.nan)
            here = rows == i
            values[bases[i]] = np.where(scoreable[here], bits[here], np.nan)
            out.append(values)
    return out


def block_sums(tiles, masks, bits, *, variants: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per genome block: summed bits and counted bases (variant bases, or the others)."""
    n_blocks = max(t["block"] for t in tiles) + 1
    total, count = np.zeros(n_blocks), np.zeros(n_blocks)
    for tile, mask, values in zip(tiles, masks, bits, strict=True):
        variant = np.zeros(len(mask), bool) if tile["variant"] is None else tile["variant"]
        keep = mask & np.isfinite(values) & (variant if variants else ~variant)
        total[tile["block"]] += values[keep].sum()
        count[tile["block"]] += keep.sum()
    return total, count


def bootstrap(total: np.ndarray, count: np.ndarray, *, n: int = 2000, seed: int = 0) -> dict:
    """Mean (sum of bits / bases) and a percentile 95 % interval over resampled blocks.

    ``total`` may have a second axis (models); the statistic is then computed per model and
    the difference of the last minus the first is reported as well.
    """
    used = count > 0
    total, count = total[used], count[used]
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(count), size=(n, len(count)))
    means = total[picks].sum(1) / count[picks].sum(1)[:, None] if total.ndim == 2 else None
    if total.ndim == 1:
        draws = total[picks].sum(1) / count[picks].sum(1)
        return {"mean": float(total.sum() / count.sum()), "ci95": _interval(draws),
                "bases": int(count.sum()), "blocks": len(count)}  # fmt: skip
    point = total.sum(0) / count.sum()
    difference = means[:, -1] - means[:, 0]
    se = float(difference.std(ddof=1))
    detectable = (1.96 + 0.8416) * se
    return {"difference": float(point[-1] - point[0]), "ci95": _interval(difference),
            "se": se, "detectable_80pct_power": float(detectable),
            "bases_to_detect_0.01": int(np.ceil(count.sum() * (detectable / 0.01) ** 2)),
            "bases": int(count.sum()), "blocks": len(count)}  # fmt: skip


def _interval(draws: np.ndarray) -> list[float]:
    return [float(np.quantile(draws, 0.025)), float(np.quantile(draws, 0.975))]


def pretrain_pair(args, train_people: list[str]) -> dict[str, Path]:
    """The reference-only and the variant-aware model, same steps, batch and length."""
    reference = PretrainingCorpus().add_fasta(args.fasta, regions=[args.train_region])
    with_variants = PretrainingCorpus().add_fasta(args.fasta, regions=[args.train_region])
    with_variants.add_variant_windows(
        args.vcf, fasta=args.fasta, regions=[args.train_region], width=512,
        random_state=args.seed,
    )  # fmt: skip
    with_variants.add_haplotypes(
        args.vcf, fasta=args.fasta, regions=[args.train_region], samples=train_people,
        window=WINDOW, random_state=args.seed,
    )  # fmt: skip
    folders = {}
    for name, corpus, boost in (
        ("reference", reference, None),
        ("variants", with_variants, args.variant_mlm_probability),
    ):
        folders[name] = gl.tl.pretrain(
            corpus, eval_corpus=args.held_out, output_dir=args.work / name,
            max_steps=args.steps, batch_size=args.batch_size,
            eval_steps=max(args.steps // 4, 1), variant_mlm_probability=boost,
            random_state=args.seed, genome_build=args.genome_build, device=args.device,
            progress=False,
        )  # fmt: skip
    return folders


def readout(folders: dict[str, Path], args) -> dict:
    """Semi-synthetic expression of the readout genes from each model's embeddings."""
    if args.genes is None:
        cohort = gl.datasets.example_cohort(width=args.readout_width)
    else:
        panel = gl.pp.gene_windows(args.genes, fasta=args.fasta, width=args.readout_width)
        cohort = gl.pp.personal_sequences(args.vcf, fasta=args.fasta, genes=panel,
                                          unphased="random")  # fmt: skip
    gl.datasets.simulate_expression(cohort, n_causal=(1, 5), h2=(0.1, 0.5), random_state=0)
    gl.tl.fit_expression(cohort, method="predixcan")
    for name, folder in folders.items():
        gl.tl.embed(cohort, model=folder, key_added=f"X_{name}", device=args.device,
                    progress=False)  # fmt: skip
        gl.tl.fit_expression(cohort, method="ridge", use_rep=f"X_{name}", key_added=name)
    table = gl.get.expression_results(cohort)
    per_gene = table.pivot_table(index="gene", columns="method", values="r")
    oracle = table.groupby("gene")["oracle_r"].first()
    return {"genes": len(per_gene), "width": args.readout_width,
            "mean_r": {k: float(v) for k, v in per_gene.mean().items()},
            "mean_oracle_r": float(oracle.mean()),
            "per_gene_r": per_gene.round(5).to_dict()}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--held-out-people", type=int, default=200)
    parser.add_argument("--variant-mlm-probability", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--vcf", type=Path, help="phased VCF (default: the shipped example)")
    parser.add_argument("--fasta", type=Path, help="its reference (default: the example's)")
    parser.add_argument("--genes", type=Path, help="gene table of the readout (default: example)")
    parser.add_argument("--genome-build", default="GRCh37")
    parser.add_argument("--train-region", default=TRAIN_REGION)
    parser.add_argument("--eval-region", default=EVAL_REGION)
    parser.add_argument("--readout-width", type=int, default=512)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=RESULTS / "pretrain_variant_aware",
                        help="results stem: writes STEM.json and STEM.md")  # fmt: skip
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "work" / "pretrain")
    parser.add_argument("--summarise", type=Path, nargs="+", help="results stems to pool")
    args = parser.parse_args()
    if args.summarise:
        summarise(args.summarise, RESULTS / "pretrain_variant_aware_summary")
        return
    example = gl.datasets.chr20_example()
    args.vcf, args.fasta = args.vcf or example.vcf, args.fasta or example.fasta
    device = resolve_device(args.device)
    with VariantFile(args.vcf) as reader:
        people = list(reader.samples)
    order = np.random.default_rng(args.seed).permutation(len(people))
    held_people = sorted(people[i] for i in order[: args.held_out_people])
    train_people = sorted(people[i] for i in order[args.held_out_people :])
    started = time.perf_counter()
    args.held_out, tiles = held_out_tiles(
        args.vcf, args.fasta, args.eval_region, held_people, args.seed
    )
    masks = evaluation_masks(tiles)
    folders = pretrain_pair(args, train_people)
    trained = time.perf_counter()
    bits = {name: score_tiles(folder, tiles, masks, device=device)
            for name, folder in folders.items()}  # fmt: skip
    scored = time.perf_counter()
    results = {
        "seed": args.seed, "train_region": args.train_region, "eval_region": args.eval_region,
        "held_out_people": len(held_people), "train_people": len(train_people),
        "steps": args.steps, "batch_size": args.batch_size, "tokens_per_step":
        args.batch_size * 512, "held_out_tiles": len(tiles),
        "held_out_tiles_with_variants": int(sum(t["variant"] is not None for t in tiles)),
        "pretraining_s": round(trained - started), "scoring_s": round(scored - trained),
        "models": {name: gl.models.pretraining_record(folder)["metrics"]
                   for name, folder in folders.items()},
    }  # fmt: skip
    reference = PretrainingCorpus().add_fasta(args.fasta, regions=[args.train_region])
    held_reference = PretrainingCorpus().add_fasta(args.fasta, regions=[args.eval_region])
    results["context_count_bits_per_base"] = {
        f"±{h}": context_count_bits(reference.sequences, held_reference.sequences, h)
        for h in (1, 2, 3)
    }
    for where, variants in (("overall", False), ("at_variants", True)):
        sums = [block_sums(tiles, masks, bits[name], variants=variants) for name in MODELS]
        results[where] = {name: bootstrap(total, count)
                          for name, (total, count) in zip(MODELS, sums, strict=True)}  # fmt: skip
        paired = np.stack([total for total, _ in sums], axis=1)
        results[where]["variants_minus_reference"] = bootstrap(paired, sums[0][1])
    results["readout"] = readout(folders, args)
    results["readout_s"] = round(time.perf_counter() - scored)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1))
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    """One seed: bits/base with 95 % intervals, the paired difference and the readout."""
    rows = [
        f"Seed {results['seed']}: {results['steps']} steps × {results['batch_size']} × 512 "
        f"bases per model; {results['train_people']} training people, "
        f"{results['held_out_people']} held out; {results['held_out_tiles']:,} distinct "
        f"held-out 512-bp tiles ({results['held_out_tiles_with_variants']:,} with variants).",
        "",
        "| model | bits/base (95 % CI) | at variants: bits/base (95 % CI) | readout mean r |",
        "|---|---|---|---|",
    ]
    for name in MODELS:
        overall, at = results["overall"][name], results["at_variants"][name]
        rows.append(f"| {name} | {_ci(overall['mean'], overall['ci95'])} | "
                    f"{_ci(at['mean'], at['ci95'], 3)} | "
                    f"{results['readout']['mean_r'][name]:.4f} |")  # fmt: skip
    for where in ("overall", "at_variants"):
        d = results[where]["variants_minus_reference"]
        rows.append(
            f"| variants − reference, {where.replace('_', ' ')} | "
            f"{_ci(d['difference'], d['ci95'])} over {d['bases']:,} bases in {d['blocks']} "
            f"blocks; detectable at 80 % power: {d['detectable_80pct_power']:.4f} (0.01 "
            f"would need about {d['bases_to_detect_0.01']:,} bases) | | |"
        )
    counts = ", ".join(f"{k}: {v:.4f}" for k, v in results["context_count_bits_per_base"].items())
    readout = results["readout"]
    rows += ["", f"Context-count baseline on the held-out reference, bits/base: {counts}.",
             f"Readout ({readout['genes']} genes, {readout['width']}-bp windows): PrediXcan "
             f"mean r {readout['mean_r']['predixcan']:.4f}, oracle "
             f"{readout['mean_oracle_r']:.4f}."]  # fmt: skip
    return "\n".join(rows) + "\n"


def _ci(value: float, interval: list[float], digits: int = 4) -> str:
    return f"{value:.{digits}f} ({interval[0]:.{digits}f} to {interval[1]:.{digits}f})"


def summarise(stems: list[Path], out: Path) -> None:
    """Pool seeds: mean, sd and a 95 % t-interval over seeds of every headline number."""
    runs = [json.loads(stem.with_suffix(".json").read_text()) for stem in stems]
    numbers = {}
    for where in ("overall", "at_variants"):
        for name in MODELS:
            numbers[f"{where}/{name}"] = [r[where][name]["mean"] for r in runs]
        numbers[f"{where}/variants_minus_reference"] = [
            r[where]["variants_minus_reference"]["difference"] for r in runs
        ]
        numbers[f"{where}/detectable_80pct_power"] = [
            r[where]["variants_minus_reference"]["detectable_80pct_power"] for r in runs
        ]
    for name in (*MODELS, "predixcan"):
        numbers[f"readout/{name}"] = [r["readout"]["mean_r"][name] for r in runs]
    numbers["readout/variants_minus_reference"] = [
        np.nanmean(np.subtract(*(list(r["readout"]["per_gene_r"][m].values())
                                 for m in ("variants", "reference"))))
        for r in runs
    ]  # fmt: skip
    numbers["readout/oracle"] = [r["readout"]["mean_oracle_r"] for r in runs]
    table = {}
    for key, values in numbers.items():
        values = np.asarray(values, dtype=float)
        half = stats.t.ppf(0.975, len(values) - 1) * values.std(ddof=1) / np.sqrt(len(values))
        table[key] = {"per_seed": values.round(5).tolist(), "mean": float(values.mean()),
                      "sd": float(values.std(ddof=1)),
                      "ci95": [float(values.mean() - half),
                               float(values.mean() + half)]}  # fmt: skip
    summary = {"seeds": [r["seed"] for r in runs], "stems": [str(s) for s in stems],
               "steps": runs[0]["steps"], "batch_size": runs[0]["batch_size"],
               "numbers": table}  # fmt: skip
    out.with_suffix(".json").write_text(json.dumps(summary, indent=1))
    lines = ["| number | per seed | mean ± sd | 95 % CI over seeds |", "|---|---|---|---|"]
    for key, row in table.items():
        per_seed = ", ".join(f"{v:+.4f}" if "minus" in key else f"{v:.4f}" for v in row["per_seed"])
        lines.append(f"| {key} | {per_seed} | {row['mean']:.4f} ± {row['sd']:.4f} | "
                     f"{row['ci95'][0]:.4f} to {row['ci95'][1]:.4f} |")  # fmt: skip
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
