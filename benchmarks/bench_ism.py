"""In-silico mutagenesis: ``gl.tl.attribute`` vs tangermeme, and masked vs one-pass LLR.

Same model, same sequences, in one run:

* **ours**: :meth:`ChunkScorer.saturation_mutagenesis` (what ``gl.tl.attribute(method="ism")``
  runs per distinct haplotype): a mutant re-runs only the chunks whose tokens it changes.
* **tangermeme** ``saturation_mutagenesis`` with ``raw_outputs=True``, ``fast=False`` (a
  forward pass per mutant) and ``fast=True`` (fastISM: layers recomputed only where an
  edit reaches), through a wrapper that feeds the one-hot sequence to the same network
  (embedding = one-hot × embedding matrix, the same chunks with [CLS]/[SEP], the same
  pooling and head), checked to give the same scores.

Model: a fine-tuned-style expression regressor (``HaplotypeRegressor``) on the default
architecture (``--model``: a checkpoint from ``gl.tl.pretrain``; default: a randomly
initialised default-size ``genlm_conv``, speed does not depend on the weights).
Sequences: reference windows of the shipped chr20 example. Also: the forward work a
cohort needs (distinct haplotypes and distinct chunks vs people × 2, on the 503-person
example) and masked vs one-pass log-likelihood ratios over every position of a window.

Writes ``results/bench_ism.json`` (``--out`` to name another file).

    python benchmarks/bench_ism.py --length 1020 --sequences 1
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import genlm_sc as gl
from genlm_sc._dna import BASES
from genlm_sc.models import GenlmConvConfig, GenlmConvForMaskedLM, build_tokenizer, load_encoder
from genlm_sc.tl.attribution.scorers import ExpressionScorer, LikelihoodScorer
from genlm_sc.tl.expression.finetune import FinetuneOptions, build_regressor

RESULTS = Path(__file__).parent / "results"


def default_model(folder: Path, *, hidden: int = 128, blocks: int = 8) -> Path:
    """A randomly initialised model (default size: hidden 128, 8 dilated conv blocks)."""
    if not (folder / "config.json").exists():
        torch.manual_seed(0)
        tokenizer = build_tokenizer("char", model_max_length=512)
        config = GenlmConvConfig(
            vocab_size=len(tokenizer), hidden_size=hidden, num_conv_layers=blocks
        )
        GenlmConvForMaskedLM(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


class OneHotRegressor(nn.Module):
    """The regressor as a one-hot model ``(N, 4, L) -> (N, 1)`` for tangermeme: bases go
    through the embedding matrix, chunks of ``room`` bases get [CLS]/[SEP], token states are
    mean-pooled over all chunks and the homozygous head is applied (``ExpressionScorer``)."""

    def __init__(self, scorer: ExpressionScorer, length: int):
        super().__init__()
        model = scorer.model
        self.encoder, self.head = model.encoder, model.head
        self.y_mean, self.y_std = model.y_mean, model.y_std
        tokenizer = scorer.tokenizer
        weight = self.encoder.get_input_embeddings().weight.detach()
        ids = [tokenizer.convert_tokens_to_ids(b) for b in BASES]
        self.register_buffer("bases", weight[ids])  # (4, H)
        self.register_buffer("cls", weight[tokenizer.cls_token_id])
        self.register_buffer("sep", weight[tokenizer.sep_token_id])
        room = scorer.chunker.max_length - 2
        if length % room:
            raise ValueError(f"use a length that is a multiple of {room}")
        self.n_chunks, self.room = length // room, room

    def forward(self, X: torch.Tensor) -> torch.Tensor:
        n = X.shape[0]
        embedded = X.transpose(1, 2).to(self.bases.dtype) @ self.bases  # (N, L, H)
        chunks = embedded.reshape(n * self.n_chunks, self.room, -1)
        cls = self.cls.expand(chunks.shape[0], 1, -1)
        sep = self.sep.expand(chunks.shape[0], 1, -1)
        states = self.encoder(inputs_embeds=torch.cat([cls, chunks, sep], 1)).last_hidden_state
        pooled = states[:, 1:-1].reshape(n, self.n_chunks * self.room, -1).mean(1)
        features = torch.cat([pooled, pooled], 1)
        z = self.head.linear((features - self.head.mean) / self.head.scale)
        return self.y_mean + self.y_std * z


def one_hot(sequence: str) -> torch.Tensor:
    codes = np.array([BASES.index(c) for c in sequence])
    return torch.nn.functional.one_hot(torch.as_tensor(codes), 4).T.float()


def reference_windows(n: int, length: int) -> list[str]:
    from genlm_sc.io import FastaReference

    example = gl.datasets.chr20_example()
    out, start = [], 1_000_000
    with FastaReference(example.fasta) as reference:
        while len(out) < n:
            text = reference.fetch("20", start, start + length).tobytes().decode().upper()
            start += length
            if set(text) <= set(BASES):
                out.append(text)
    return out


def time_ours(scorer: ExpressionScorer, sequences: list[str], batch_size: int):
    scorer._cache.clear()
    start = time.perf_counter()
    results = [scorer.saturation_mutagenesis(s, batch_size=batch_size) for s in sequences]
    return time.perf_counter() - start, results


def time_tangermeme(wrapper, sequences: list[str], batch_size: int, fast: bool):
    from tangermeme.saturation_mutagenesis import saturation_mutagenesis

    X = torch.stack([one_hot(s) for s in sequences])
    start = time.perf_counter()
    raw = saturation_mutagenesis(
        wrapper, X, batch_size=batch_size, raw_outputs=True, fast=fast, device="cpu"
    )
    elapsed = time.perf_counter() - start
    y0, y_hat = raw  # (N, 1) and (N, 4, L, 1)
    return elapsed, (y_hat[..., 0].double() - y0[:, None, None, 0].double())


def cohort_work(width: int) -> dict:
    """Forward work of ISM for every person's haplotypes of each example gene."""
    cohort = gl.datasets.example_cohort(width=width)
    ds = gl.get.haplotype_store(cohort)
    distinct = ds["gene_n_haplotypes"].values
    people = cohort.n_obs
    return {
        "width": width,
        "genes": int(cohort.n_vars),
        "person_haplotypes_per_gene": 2 * people,
        "distinct_haplotypes_per_gene_mean": float(distinct.mean()),
        "distinct_haplotypes_per_gene_max": int(distinct.max()),
        "saving": float(2 * people / distinct.mean()),
    }


def chunk_sharing(scorer, sequences: list[str]) -> dict:
    """Distinct mutant chunks of a gene's distinct haplotypes vs computed per haplotype."""
    keys, per_sequence = set(), 0
    for sequence in sequences:
        chunks = scorer.chunker.chunk_ids(sequence)
        seen = {np.asarray(c, np.int32).tobytes() for c in chunks}
        for _, base, changed in scorer._mutants(sequence, chunks):
            for _, ids in (changed or []) if base is not None else []:
                seen.add(np.asarray(ids, np.int32).tobytes())
        per_sequence += len(seen)
        keys |= seen
    return {"chunks_if_separate": per_sequence, "distinct_chunks": len(keys),
            "chunk_saving": per_sequence / max(len(keys), 1)}  # fmt: skip


def llr_timing(model_dir: Path, length: int) -> dict:
    from genlm_sc.tl.attribution.scorer_loading import load_scorer

    scorer = load_scorer(model_dir, target="mlm", device="cpu")
    assert isinstance(scorer, LikelihoodScorer)
    sequence = reference_windows(1, length)[0]
    start = time.perf_counter()
    one_pass = scorer.one_pass_llr(sequence)
    t_one = time.perf_counter() - start
    start = time.perf_counter()
    masked = scorer.masked_llr(sequence, np.arange(length))
    t_masked = time.perf_counter() - start
    alternatives = ~np.isclose(one_pass, 0)
    r = np.corrcoef(one_pass[alternatives], masked[alternatives])[0, 1]
    return {
        "length": length, "one_pass_s": t_one, "masked_s": t_masked,
        "masked_over_one_pass": t_masked / t_one, "pearson_r_masked_vs_one_pass": r,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="a gl.tl.pretrain folder")
    parser.add_argument("--length", type=int, default=1020)
    parser.add_argument("--sequences", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-fast", action="store_true", help="skip tangermeme fast=True")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS / "bench_ism.json")
    parser.add_argument("--llr-length", type=int, default=510, help="window of the LLR timing")
    parser.add_argument("--hidden", type=int, default=128, help="random model: hidden size")
    parser.add_argument("--blocks", type=int, default=8, help="random model: conv blocks")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    RESULTS.mkdir(exist_ok=True)
    model_dir = args.model or default_model(
        Path(__file__).parent / "work" / f"ism_model_{args.hidden}x{args.blocks}",
        hidden=args.hidden, blocks=args.blocks,
    )  # fmt: skip
    pretrained = load_encoder(model_dir, device="cpu", precision="fp32")
    options = FinetuneOptions.parse({"model": model_dir, "strategy": "prune", "device": "cpu"})
    regressor = build_regressor(pretrained, options, y_mean=0.0, y_std=1.0).eval()
    scorer = ExpressionScorer(regressor, device="cpu")
    sequences = reference_windows(args.sequences, args.length)
    wrapper = OneHotRegressor(scorer, args.length).eval()
    with torch.inference_mode():
        check = wrapper(torch.stack([one_hot(s) for s in sequences])).ravel().double().numpy()
    np.testing.assert_allclose(check, scorer.score(sequences), rtol=1e-4, atol=1e-5)

    report = {"model": str(model_dir), "length": args.length, "sequences": args.sequences,
              "threads": args.threads, "repeats": args.repeats}  # fmt: skip
    timings: dict[str, list[float]] = {"ours": [], "tangermeme": [], "tangermeme_fast": []}
    for _ in range(args.repeats):  # interleaved, so both see the same machine load
        t_ours, ours = time_ours(scorer, sequences, args.batch_size)
        timings["ours"].append(t_ours)
        print(f"ours: {t_ours:.1f} s", flush=True)
        for fast in [False] if args.skip_fast else [False, True]:
            name = "tangermeme_fast" if fast else "tangermeme"
            try:
                elapsed, deltas = time_tangermeme(wrapper, sequences, args.batch_size, fast)
            except Exception as error:  # fastISM may not trace every model
                report[f"{name}_error"] = f"{type(error).__name__}: {error}"[:300]
                continue
            timings[name].append(elapsed)
            ours_deltas = np.stack([o.T for o in ours])  # (N, 4, L)
            difference = float(np.abs(deltas.numpy() - ours_deltas).max())
            report[f"max_abs_difference_vs_{name}"] = difference
            print(f"{name}: {elapsed:.1f} s", flush=True)
    positions = args.length * args.sequences
    for name, values in timings.items():
        if values:
            report[f"{name}_s"] = float(np.median(values))
            report[f"{name}_positions_per_s"] = positions / float(np.median(values))
            if name != "ours":
                report[f"speedup_vs_{name}"] = float(np.median(values) / np.median(timings["ours"]))

    report["cohort"] = cohort_work(args.length)
    cohort = gl.datasets.example_cohort(width=args.length)
    ds = gl.get.haplotype_store(cohort)
    gene = cohort.var_names[int(np.argmax(ds["gene_n_haplotypes"].values))]
    haplotypes = gl.get.unique_haplotypes(cohort, gene)["sequence"].tolist()
    report["cohort"]["chunks"] = {"gene": gene, **chunk_sharing(scorer, haplotypes)}
    report["llr"] = llr_timing(model_dir, args.llr_length)
    print(json.dumps(report, indent=2, default=float))
    args.out.write_text(json.dumps(report, indent=2, default=float))


if __name__ == "__main__":
    main()
