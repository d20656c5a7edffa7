"""Distinct-chunk embedding on the shipped cohort: chunk passes before and after, wall time.

The 503-person example, windows of ``--width`` bases around its 30 genes, the default
genlm_conv model (random weights: speed does not depend on them) with 512-token chunks.
Before, every distinct haplotype ran all of its chunks through the model; now every
distinct chunk (by token ids) runs once. The script counts both for all 30 genes, and
times ``gl.tl.embed`` (the new path) on ``--genes`` of them; the old path's time is the
new path's time per chunk pass times its chunk passes (the model's cost per chunk does not
depend on which chunks are batched together), said so in the output.

It also times what a user would write without genlm_sc: a plain transformers loop over
every person-haplotype (no deduplication), each window tokenized, cut into 512-token
chunks with ``[CLS]``/``[SEP]``, run in batches of 16 and mean-pooled, on the first
``--plain-people`` people of the first timed gene, extrapolated to all people and genes.

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
    parser.add_argument("--plain-people", type=int, default=10,
                        help="people timed with the plain transformers loop")  # fmt: skip
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
    plain = plain_loop(folder, cohort, timed[0], args.plain_people)
    person_haplotypes = 2 * cohort.n_obs * len(per_gene)
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
        "plain_loop": plain,
        "plain_loop_all_genes_extrapolated_s": round(plain["seconds_per_haplotype"]
                                                     * person_haplotypes),
        "plain_loop_vs_after": round(plain["seconds_per_haplotype"] * person_haplotypes
                                     / max(after * per_pass, 1e-9), 1),
        "per_gene": per_gene,
    }  # fmt: skip
    print(json.dumps({k: v for k, v in result.items() if k != "per_gene"}, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    existing = json.loads(args.out.read_text()) if args.out.exists() else {}
    existing[str(args.width)] = result
    args.out.write_text(json.dumps(existing, indent=1))


def plain_loop(folder: Path, cohort, gene: str, n_people: int) -> dict:
    """Seconds per person-haplotype of a plain transformers loop (see the module notes)."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    import genlm_sc as gl

    model = AutoModelForMaskedLM.from_pretrained(folder).base_model.eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    pairs = gl.get.haplotypes(cohort, gene).iloc[:n_people]
    sequences = [s for _, row in pairs.iterrows() for s in (row["haplotype_1"], row["haplotype_2"])]
    room = 512 - 2
    passes = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for sequence in sequences:
            ids = tokenizer(sequence, add_special_tokens=False)["input_ids"]
            pieces = [[tokenizer.cls_token_id, *ids[i : i + room], tokenizer.sep_token_id]
                      for i in range(0, len(ids), room)]  # fmt: skip
            total = torch.zeros(model.config.hidden_size)
            for b in range(0, len(pieces), 16):
                batch = pieces[b : b + 16]
                width = max(len(p) for p in batch)
                input_ids = torch.full((len(batch), width), tokenizer.pad_token_id)
                attention = torch.zeros((len(batch), width), dtype=torch.long)
                for row, piece in enumerate(batch):
                    input_ids[row, : len(piece)] = torch.tensor(piece)
                    attention[row, : len(piece)] = 1
                keep = attention.clone()
                keep[:, 0] = 0  # [CLS]
                keep[torch.arange(len(batch)), attention.sum(1) - 1] = 0  # [SEP]
                out = model(input_ids=input_ids, attention_mask=attention)
                total += (out.last_hidden_state * keep.unsqueeze(-1)).sum((0, 1))
                passes += len(batch)
            _ = total / len(ids)
    seconds = time.perf_counter() - start
    return {"gene": gene, "people": n_people, "person_haplotypes": len(sequences),
            "chunk_passes": passes, "seconds": round(seconds, 1),
            "seconds_per_haplotype": round(seconds / len(sequences), 3),
            "seconds_per_chunk_pass": round(seconds / max(passes, 1), 4)}  # fmt: skip


if __name__ == "__main__":
    main()
