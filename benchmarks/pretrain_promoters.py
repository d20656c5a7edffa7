"""Pretrain the default model on the shared promoter corpus, plus a random-init twin.

The corpus is ``promoters/pretraining_corpus_hg38.fa.gz`` (36,231 promoter-proximal
sequences, 56 Mbp), without every sequence that contains, or lies in, a sequence of the
GUE tasks that ``gue.py`` reports (all splits, either strand; ``gl.pp.decontaminate``).
The held-out part is every 20th group of sequences sharing 200 bases on either strand
(``PretrainingCorpus.hold_out``): the corpus holds the same TSS at several window sizes,
so holding out single sequences would test on stretches seen in training; the script
checks that no held-out sequence shares 200 bases with a training one. The twin has the
same architecture and tokenizer with untrained weights, for the gene-function clustering
comparison (``gene_function_clustering.py --model pretrained=... --model random-init=...``).

    python benchmarks/pretrain_promoters.py --steps 400
    python benchmarks/pretrain_promoters.py --steps 3000 --name promoter_lm_3000
    python benchmarks/pretrain_promoters.py --split-only   # decontaminate and split, no training

``--contaminated`` keeps the GUE sequences in, as the runs before decontamination did.
The decontamination report (per task, split and label: labelled sequences found in the
corpus, corpus sequences removed) goes to ``results/decontamination_gue.csv``; the corpus
and split totals (sequences and bases removed, groups, held-out sequences, leaks, seconds)
to ``results/pretraining_split.json``, one entry for each of ``decontaminated`` and
``contaminated``, with how many held-out sequences would share 200 bases with training
ones under the split by record that came before (every 20th sequence held out).

Every ``--save-steps`` steps a checkpoint is written under ``<name>/checkpoints``; an
interrupted run resumes from the last one when started again with the same arguments.
The twin always goes to ``work/promoter_lm_random``: it depends only on the architecture
(seed 0), not on ``--steps`` or ``--name``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from gue import TASKS
from transformers import AutoConfig, AutoModelForMaskedLM

import genlm_sc as gl
from genlm_sc.models import load_tokenizer
from genlm_sc.pp import PretrainingCorpus
from genlm_sc.pp.overlaps import shared_kmer_pairs

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"
CORPUS = "pretraining_corpus_hg38.fa.gz"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--name", default="promoter_lm", help="output folder under --work")
    parser.add_argument("--eval-steps", type=int, default=500)
    parser.add_argument("--save-steps", type=int, default=500)
    parser.add_argument("--contaminated", action="store_true", help="keep GUE sequences in")
    parser.add_argument("--split-only", action="store_true", help="stop before training")
    parser.add_argument("--report", type=Path, default=HERE / "results" / "decontamination_gue.csv")
    parser.add_argument("--summary", type=Path, default=HERE / "results" / "pretraining_split.json")
    args = parser.parse_args()
    start = time.perf_counter()
    corpus = PretrainingCorpus().add_fasta(args.data / "promoters" / CORPUS)
    totals = {"corpus_sequences": len(corpus), "corpus_bases": corpus.n_bases}
    if not args.contaminated:
        gue = {task: args.data / "gue" / task for task in TASKS}
        corpus, report = gl.pp.decontaminate(corpus, gue, by=["split", "label"])
        report.to_csv(args.report, index=False)
        removed = corpus.sources[-1]
        print(report.to_string(index=False))
        print(
            f"removed {removed['n_sequences_removed']:,} corpus sequences "
            f"({removed['n_bases_removed']:,} bp); wrote {args.report}"
        )
        totals["removed_sequences"] = removed["n_sequences_removed"]
        totals["removed_bases"] = removed["n_bases_removed"]
        totals["decontaminate_s"] = round(time.perf_counter() - start, 1)
    record_every_20th = np.arange(len(corpus)) % 20 == 19  # the split before groups
    leaks = shared_kmer_pairs(corpus.sequences, 200, left=record_every_20th)
    totals["every_20th_record_held_out"] = int(record_every_20th.sum())
    totals["every_20th_record_sharing_200bp_with_training"] = len(np.unique(leaks[:, 0]))
    train, held = split(corpus)
    totals.update(kept_sequences=len(corpus), kept_bases=corpus.n_bases,
                  groups=held.sources[0]["n_groups"], held_out_sequences=len(held),
                  held_out_bases=held.n_bases, training_sequences=len(train),
                  held_out_sharing_200bp_with_training=0,
                  ready_s=round(time.perf_counter() - start, 1))  # fmt: skip
    print(f"corpus ready in {totals['ready_s']:.0f} s")
    summary = json.loads(args.summary.read_text()) if args.summary.exists() else {}
    summary["contaminated" if args.contaminated else "decontaminated"] = totals
    args.summary.write_text(json.dumps(summary, indent=1))
    if args.split_only:
        return
    out = gl.tl.pretrain(
        train, eval_corpus=held,
        output_dir=args.work / args.name, max_steps=args.steps, batch_size=args.batch_size,
        eval_steps=args.eval_steps, save_steps=args.save_steps, genome_build="GRCh38",
        progress=False,
    )  # fmt: skip
    record = gl.models.pretraining_record(out)
    print(f"pretrained in {time.perf_counter() - start:.0f} s")
    print(json.dumps(record["metrics"], indent=1))
    torch.manual_seed(0)
    twin = AutoModelForMaskedLM.from_config(AutoConfig.from_pretrained(out))
    twin.save_pretrained(args.work / "promoter_lm_random")
    load_tokenizer(out).save_pretrained(args.work / "promoter_lm_random")
    print(f"wrote {out} and its random-init twin {args.work / 'promoter_lm_random'}")


def split(corpus: PretrainingCorpus) -> tuple[PretrainingCorpus, PretrainingCorpus]:
    """Hold out whole overlap groups, and check that nothing held out was seen in training."""
    train, held = corpus.hold_out(every=20, overlap=200)
    both = train.sequences + held.sequences
    leaks = shared_kmer_pairs(both, 200, left=np.arange(len(both)) >= len(train))
    print(
        f"{len(corpus):,} sequences in {held.sources[0]['n_groups']:,} groups sharing 200 bp; "
        f"held out {len(held):,} sequences ({held.n_bases:,} bp), trained on {len(train):,}; "
        f"held-out sequences sharing 200 bp with a training one: {len(np.unique(leaks[:, 0]))}"
    )
    if len(leaks):
        raise RuntimeError("held-out sequences share 200 bp with training sequences")
    return train, held


if __name__ == "__main__":
    main()
