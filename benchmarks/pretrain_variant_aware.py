"""Does pretraining with human variation help? Same compute, with and without variants.

Two models of the default architecture are pretrained for the same number of steps on the
shipped chr20 example (GRCh37, 1000 Genomes EUR):

* ``reference``: the reference sequence of the training region only;
* ``variants``: the same reference plus UKBioBERT's variant-centred windows and the real
  haplotypes of the training people, with more masking at variant positions.

Both are evaluated on the haplotypes of held-out people in a held-out region (masked-token
accuracy, perplexity and bits per base, overall and at variant positions), next to a
context-count baseline (the centre base given ±``h`` bases, counted on the training region).
Writes ``results/pretrain_variant_aware.{json,md}`` (``--out`` gives another stem, e.g.
for other seeds).

    python benchmarks/pretrain_variant_aware.py --steps 400 --batch-size 16
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import genlm_sc as gl
from genlm_sc.io import VariantFile
from genlm_sc.pp import PretrainingCorpus

TRAIN_REGION = "20:1000001-1800000"
EVAL_REGION = "20:1800001-2000000"
RESULTS = Path(__file__).parent / "results"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--held-out-people", type=int, default=100)
    parser.add_argument("--variant-mlm-probability", type=float, default=0.5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "pretrain_variant_aware",
                        help="results stem: writes STEM.json and STEM.md")  # fmt: skip
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "work" / "pretrain")
    args = parser.parse_args()
    example = gl.datasets.chr20_example()
    with VariantFile(example.vcf) as reader:
        people = list(reader.samples)
    order = np.random.default_rng(args.seed).permutation(len(people))
    held_people = sorted(people[i] for i in order[: args.held_out_people])
    train_people = sorted(people[i] for i in order[args.held_out_people :])

    reference = PretrainingCorpus().add_fasta(example.fasta, regions=[TRAIN_REGION])
    with_variants = PretrainingCorpus().add_fasta(example.fasta, regions=[TRAIN_REGION])
    with_variants.add_variant_windows(
        example.vcf, fasta=example.fasta, regions=[TRAIN_REGION], width=512, random_state=args.seed
    )
    with_variants.add_haplotypes(
        example.vcf, fasta=example.fasta, regions=[TRAIN_REGION], samples=train_people,
        window=4096, random_state=args.seed,
    )  # fmt: skip
    held_out = PretrainingCorpus().add_haplotypes(
        example.vcf, fasta=example.fasta, regions=[EVAL_REGION], samples=held_people,
        window=4096, random_state=args.seed,
    )  # fmt: skip
    held_reference = PretrainingCorpus().add_fasta(example.fasta, regions=[EVAL_REGION])

    results = {
        "train_region": TRAIN_REGION,
        "eval_region": EVAL_REGION,
        "held_out_people": len(held_people),
        "train_people": len(train_people),
        "steps": args.steps,
        "batch_size": args.batch_size,
        "context_count_bits_per_base": {
            f"±{h}": context_count_bits(reference.sequences, held_reference.sequences, h)
            for h in (1, 2, 3)
        },
        "context_count_bits_per_base_haplotypes": {
            f"±{h}": context_count_bits(reference.sequences, held_out.sequences, h)
            for h in (1, 2, 3)
        },
        "models": {},
    }
    for name, corpus, boost in (
        ("reference", reference, None),
        ("variants", with_variants, args.variant_mlm_probability),
    ):
        start = time.perf_counter()
        out = gl.tl.pretrain(
            corpus, eval_corpus=held_out, output_dir=args.work / name, max_steps=args.steps,
            batch_size=args.batch_size, eval_steps=max(args.steps // 4, 1),
            variant_mlm_probability=boost, random_state=args.seed, genome_build="GRCh37",
            progress=False, resume=False,
        )  # fmt: skip
        metrics = json.loads((out / "genlm_pretraining.json").read_text())["metrics"]
        metrics["wall_s"] = time.perf_counter() - start
        results["models"][name] = {k: v for k, v in metrics.items() if "per_second" not in k}
        print(name, json.dumps(results["models"][name], indent=1), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    results["seed"] = args.seed
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=2))
    args.out.with_suffix(".md").write_text(markdown(results))
    print(markdown(results))


def markdown(results: dict) -> str:
    rows = [
        "| model | held-out haplotypes: accuracy | perplexity | bits/base | at variants: "
        "accuracy | perplexity | bits/base | wall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, m in results["models"].items():
        rows.append(
            f"| {name} | {m['eval_heldout_accuracy']:.4f} | {m['eval_heldout_perplexity']:.4f} | "
            f"{m['eval_heldout_bits_per_base']:.4f} | {m['eval_variants_accuracy']:.4f} | "
            f"{m['eval_variants_perplexity']:.3f} | {m['eval_variants_bits_per_base']:.3f} | "
            f"{m['wall_s'] / 60:.1f} min |"
        )
    counts = ", ".join(
        f"{k}: {v:.4f} (perplexity {2**v:.4f})"
        for k, v in results["context_count_bits_per_base"].items()
    )
    on_haplotypes = ", ".join(
        f"{k}: {v:.4f}" for k, v in results["context_count_bits_per_base_haplotypes"].items()
    )
    rows.append("")
    rows.append(f"Context-count baseline on the held-out reference, bits/base: {counts}.")
    rows.append(f"The same on the held-out people's distinct haplotypes: {on_haplotypes}.")
    rows.append(
        f"{results['steps']} steps × {results['batch_size']} × 512 bases each; "
        f"{results['train_people']} training people, {results['held_out_people']} held out."
    )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    main()
