"""Pretrain the default model on the shared promoter corpus, plus a random-init twin.

The corpus is ``promoters/pretraining_corpus_hg38.fa.gz`` (36,231 promoter-proximal
sequences, 56 Mbp; every 20th sequence held out). The twin has the same architecture and
tokenizer with untrained weights, for the gene-function clustering comparison
(``gene_function_clustering.py --model pretrained=... --model random-init=...``).

    python benchmarks/pretrain_promoters.py --steps 400
    python benchmarks/pretrain_promoters.py --steps 3000 --name promoter_lm_3000

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

import torch
from transformers import AutoConfig, AutoModelForMaskedLM

import genlm_sc as gl
from genlm_sc.models import load_tokenizer

HERE = Path(__file__).resolve().parent
SHARED = HERE.parents[1] / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data", type=Path, default=SHARED)
    parser.add_argument("--work", type=Path, default=HERE / "work")
    parser.add_argument("--name", default="promoter_lm", help="output folder under --work")
    parser.add_argument("--eval-steps", type=int, default=500)
    parser.add_argument("--save-steps", type=int, default=500)
    args = parser.parse_args()
    start = time.perf_counter()
    out = gl.tl.pretrain(
        args.data / "promoters" / "pretraining_corpus_hg38.fa.gz",
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


if __name__ == "__main__":
    main()
