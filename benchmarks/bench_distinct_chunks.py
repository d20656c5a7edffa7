"""Distinct-chunk embedding on the shipped cohort: chunk passes before and after, wall time.

The 503-person example, windows of ``--width`` bases around its 30 genes, the default
genlm_conv model (random weights: speed does not depend on them) with 512-token chunks.
Before, every distinct haplotype ran all of its chunks through the model; now every
distinct chunk (by token ids) runs once. The script counts both for all 30 genes, and
times ``gl.tl.embed`` (the new path) on ``--genes`` of them; the old path's time is the
new path's time per chunk pass times its chunk passes (the model's cost per chunk does not
depend on which chunks are batched together), said so in the output.

    python benchmarks/bench_distinct_chunks.py --width 49152 --genes 3
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=49152)
    parser.add_argument("--genes", type=int, default=3, help="genes timed end to end")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "distinct_chunks.json")
    args = parser.parse_args(argv)
    import tempfile

    import torch

    import genlm_sc as gl
    from genlm_sc.models import GenlmConvConfig, GenlmConvForMaskedLM, build_tokenizer, load_encoder

    torch.manual_seed(0)
    start = time.perf_counter()
    cohort = gl.datasets.example_cohort(width=args.width)
    build_seconds = time.perf_counter() - start
    folder = Path(tempfile.mkdtemp()) / "default_model"
    tokenizer = build_tokenizer("char", model_max_length=512)
    config = GenlmConvConfig(vocab_size=len(tokenizer), hidden_size=128, num_conv_layers=8)
    GenlmConvForMaskedLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    encoder = load_encoder(folder, device="cpu", precision="fp32", max_length=512)

    per_gene = []
    for gene in cohort.var_names:
        table = gl.get.unique_haplotypes(cohort, gene)
        keys = set()
        passes = 0
        for sequence in table["sequence"]:
            for chunk in encoder.chunk_ids(sequence):
                keys.add(np.asarray(chunk, dtype=np.int64).tobytes())
                passes += 1
        per_gene.append({"gene": gene, "distinct_haplotypes": len(table),
                         "chunk_passes_before": passes, "distinct_chunks": len(keys)})  # fmt: skip
        print(per_gene[-1], flush=True)
    before = sum(g["chunk_passes_before"] for g in per_gene)
    after = sum(g["distinct_chunks"] for g in per_gene)

    timed = sorted(per_gene, key=lambda g: g["distinct_haplotypes"])
    timed = [g["gene"] for g in timed[len(timed) // 2 : len(timed) // 2 + args.genes]]
    start = time.perf_counter()
    gl.tl.embed(cohort, model=encoder, genes=timed, batch_size=16, progress=False)
    seconds = time.perf_counter() - start
    record = cohort.uns["gl"]["embeddings"]["X_gl"]
    per_pass = seconds / max(record["n_forward_chunks"], 1)
    result = {
        "width": args.width, "genes": len(per_gene), "people": cohort.n_obs,
        "build_seconds": round(build_seconds, 1),
        "distinct_haplotypes": int(sum(g["distinct_haplotypes"] for g in per_gene)),
        "chunk_passes_before": before, "distinct_chunks_after": after,
        "ratio": round(before / after, 1),
        "timed_genes": timed, "timed_chunk_passes": record["n_forward_chunks"],
        "timed_chunks": record["n_chunks"], "timed_seconds": round(seconds, 1),
        "seconds_per_chunk_pass": round(per_pass, 4),
        "all_genes_before_extrapolated_s": round(before * per_pass),
        "all_genes_after_extrapolated_s": round(after * per_pass),
        "per_gene": per_gene,
    }  # fmt: skip
    print(json.dumps({k: v for k, v in result.items() if k != "per_gene"}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(args.out.read_text()) if args.out.exists() else {}
    existing[str(args.width)] = result
    args.out.write_text(json.dumps(existing, indent=1))


if __name__ == "__main__":
    main()
