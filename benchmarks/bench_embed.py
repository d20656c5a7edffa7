"""Embedding throughput: ``gl.tl.embed`` vs a plain ``transformers`` loop, in one run.

Model: a BERT encoder (4 layers, 256 hidden, 4 heads, SDPA attention) with an overlapping
6-mer tokenizer, 512 tokens per window, random weights (speed does not depend on them).
Sequences: windows of the shipped chr20 reference. The plain loop is what a user would
write: tokenize a batch, ``model(**batch)`` in float32 under ``torch.inference_mode``,
mean over the non-special tokens. ``gl.tl.embed`` runs with ``precision="auto"`` (bf16 on
CPUs with AMX / AVX-512 BF16 and on GPUs, else float32). Also reported: the fraction of
this machine's measured matmul FLOP/s the embedding reaches, and for the 503-person
cohort the forward passes saved by embedding each distinct haplotype once.

Writes ``results/bench_embed.json``.

    python benchmarks/bench_embed.py --sequences 64
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from transformers import BertConfig, BertModel

import genlm_sc as gl
from genlm_sc._devices import resolve_precision
from genlm_sc.io import FastaReference
from genlm_sc.models import SequenceEncoder, build_tokenizer

RESULTS = Path(__file__).parent / "results"


def windows(n: int, length: int) -> list[str]:
    example = gl.datasets.chr20_example()
    with FastaReference(example.fasta) as reference:
        codes = reference.fetch("20", 1_000_000, 1_000_000 + n * length)
    text = codes.tobytes().decode()
    return [text[i * length : (i + 1) * length] for i in range(n)]


def plain_loop(model, tokenizer, sequences: list[str], batch_size: int) -> np.ndarray:
    out = []
    with torch.inference_mode():
        for start in range(0, len(sequences), batch_size):
            batch = tokenizer(
                sequences[start : start + batch_size], padding=True, return_tensors="pt",
                return_special_tokens_mask=True,
            )  # fmt: skip
            keep = (batch.pop("special_tokens_mask") == 0) & (batch["attention_mask"] == 1)
            states = model(**batch).last_hidden_state
            pooled = (states * keep.unsqueeze(-1)).sum(1) / keep.sum(1, keepdim=True)
            out.append(pooled.numpy())
    return np.concatenate(out)


def matmul_flops(dtype: torch.dtype, size: int = 2048, reps: int = 5) -> float:
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    torch.mm(a, b)
    start = time.perf_counter()
    for _ in range(reps):
        torch.mm(a, b)
    return 2 * size**3 * reps / (time.perf_counter() - start)


def model_flops_per_token(config: BertConfig, tokens: int) -> float:
    h, layers = config.hidden_size, config.num_hidden_layers
    linear = 2 * (4 * h * h + 2 * h * config.intermediate_size)
    attention = 2 * 2 * tokens * h
    return layers * (linear + attention)


def cohort_saving() -> dict:
    cohort = gl.datasets.example_cohort(width=4096)
    distinct = int(gl.get.haplotype_store(cohort).sizes["haplotype"])
    person_haplotypes = 2 * cohort.n_obs * cohort.n_vars
    return {
        "people": cohort.n_obs,
        "genes": cohort.n_vars,
        "person_haplotypes": person_haplotypes,
        "forward_sequences": distinct,
        "saving": person_haplotypes / distinct,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sequences", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    tokenizer = build_tokenizer("kmer", k=6, model_max_length=512)
    config = BertConfig(
        vocab_size=len(tokenizer), hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
        intermediate_size=1024, max_position_embeddings=512, attn_implementation="sdpa",
    )  # fmt: skip
    model = BertModel(config).eval()
    sequences = windows(args.sequences, 510 + 5)  # 510 6-mers + [CLS] + [SEP] = 512 tokens
    tokens = args.sequences * 512
    encoder = SequenceEncoder(model, tokenizer, device="cpu", precision="auto")

    timings = {"plain": [], "genlm_sc": []}
    plain_loop(model, tokenizer, sequences[:2], 2)  # warm-up
    encoder.embed(sequences[:2])
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        start = time.perf_counter()
        reference = plain_loop(model, tokenizer, sequences, args.batch_size)
        timings["plain"].append(time.perf_counter() - start)
        start = time.perf_counter()
        ours = encoder.embed(sequences, batch_size=args.batch_size)
        timings["genlm_sc"].append(time.perf_counter() - start)
    cosine = (reference * ours).sum(1) / np.linalg.norm(reference, axis=1)
    cosine /= np.linalg.norm(ours, axis=1)
    plain_rate = tokens / min(timings["plain"])
    ours_rate = tokens / min(timings["genlm_sc"])
    precision = resolve_precision("auto", "cpu")
    peak = matmul_flops(torch.bfloat16 if precision == "bf16" else torch.float32)
    per_token = model_flops_per_token(config, 512)
    result = {
        "model": "BERT 4 layers × 256 hidden, 6-mer tokens, 512 tokens/window",
        "sequences": args.sequences,
        "torch_threads": torch.get_num_threads(),
        "precision_auto": precision,
        "plain_tokens_per_s": plain_rate,
        "genlm_sc_tokens_per_s": ours_rate,
        "speedup": ours_rate / plain_rate,
        "min_cosine_to_float32": float(cosine.min()),
        "matmul_gflops": peak / 1e9,
        "model_gflop_per_token": per_token / 1e9,
        "fraction_of_matmul_peak": ours_rate * per_token / peak,
        "cohort": cohort_saving(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "bench_embed.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
