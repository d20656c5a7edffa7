"""VCF → haplotypes → embeddings at the paper's GTEx scale, end to end, on this machine.

670 simulated people (msprime over the real 1 Mb of chr20, ``simulate_cohort.py``) × 41
windows of 49,152 bp spread over the 1 Mb (overlapping, as ``bench_haplotypes.py`` spreads
its windows) → ``gl.pp.personal_sequences`` into a store on disk → ``gl.tl.embed`` with
the default genlm_conv architecture, or ``--architecture bert_small`` (BERT, 4 layers ×
256, overlapping 6-mers), random weights, 512-token chunks, fp32. Records wall time and
peak memory of each step, distinct haplotypes, chunks and chunk passes, in
``results/gtex_scale.json`` (one entry per architecture).

    python benchmarks/gtex_scale.py --architecture default
    python benchmarks/gtex_scale.py --device cuda --vcf cohort.vcf.gz   # on a GPU machine

With ``--device cuda`` the precision is ``auto`` (bf16 where the GPU computes it), and the
time spent inside the model's forward passes (``model_s``, synchronised) is recorded
beside the wall time of the whole embedding step. ``--vcf`` reuses a cohort simulated
earlier (``simulate_cohort.py``), for a machine without msprime.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=670)
    parser.add_argument("--windows", type=int, default=41)
    parser.add_argument("--width", type=int, default=49152)
    parser.add_argument("--architecture", choices=["default", "bert_small"], default="default")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vcf", type=Path, help="a simulated cohort to reuse")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "gtex_scale.json")
    args = parser.parse_args(argv)
    import torch
    from bench_haplotypes import window_annotation
    from simulate_cohort import SimulationParams, simulate_cohort

    import genlm_sc as gl
    from genlm_sc.models import (
        GenlmConvConfig,
        GenlmConvForMaskedLM,
        build_tokenizer,
        load_encoder,
    )

    on_cpu = args.device == "cpu"
    if on_cpu:
        torch.set_num_threads(2)
    result: dict = {"people": args.people, "windows": args.windows, "width": args.width,
                     "architecture": args.architecture, "device": args.device}  # fmt: skip
    if not on_cpu:
        result["device_name"] = torch.cuda.get_device_name()
    start = time.perf_counter()
    if args.vcf is None:
        vcf = simulate_cohort(SimulationParams(n_people=args.people), verbose=False)
        result["simulate_s"] = round(time.perf_counter() - start, 1)
    else:
        vcf = args.vcf
    example = gl.datasets.chr20_example()
    work = Path(tempfile.mkdtemp())
    try:
        start = time.perf_counter()
        panel = gl.pp.gene_windows(window_annotation(args.windows, args.width),
                                   fasta=example.fasta, width=args.width)  # fmt: skip
        cohort = gl.pp.personal_sequences(vcf, fasta=example.fasta, genes=panel,
                                          store=work / "cohort.zarr", progress=False)  # fmt: skip
        result["haplotypes_s"] = round(time.perf_counter() - start, 1)
        result["haplotypes_peak_mib"] = round(peak_mib())
        ds = gl.get.haplotype_store(cohort)
        result["distinct_haplotypes"] = int(ds.sizes["haplotype"])
        model = work / "default_model"
        torch.manual_seed(0)
        if args.architecture == "default":
            tokenizer = build_tokenizer("char", model_max_length=512)
            config = GenlmConvConfig(vocab_size=len(tokenizer), hidden_size=128,
                                     num_conv_layers=8)  # fmt: skip
            GenlmConvForMaskedLM(config).save_pretrained(model)
        else:
            from transformers import BertConfig, BertForMaskedLM

            tokenizer = build_tokenizer("kmer", k=6, model_max_length=512)
            config = BertConfig(vocab_size=len(tokenizer), hidden_size=256, num_hidden_layers=4,
                                num_attention_heads=4, intermediate_size=1024,
                                max_position_embeddings=512)  # fmt: skip
            BertForMaskedLM(config).save_pretrained(model)
        tokenizer.save_pretrained(model)
        start = time.perf_counter()
        encoder = load_encoder(model, device=args.device,
                               precision="fp32" if on_cpu else "auto")  # fmt: skip
        result["precision"] = encoder.precision
        in_model = time_forward_passes(encoder.model, synchronise=not on_cpu)
        gl.tl.embed(cohort, model=encoder, progress=False)
        result["embed_s"] = round(time.perf_counter() - start, 1)
        result["model_s"] = round(in_model[0], 2)
        result["peak_mib"] = round(peak_mib())
        record = cohort.uns["gl"]["embeddings"]["X_gl"]
        result["chunks"] = record["n_chunks"]
        result["chunk_passes"] = record["n_forward_chunks"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    steps = ("simulate_s", "haplotypes_s", "embed_s")
    result["total_s"] = round(sum(result.get(k, 0) for k in steps), 1)
    print(json.dumps(result, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    earlier = json.loads(args.out.read_text()) if args.out.exists() else {}
    if "people" in earlier:  # the file held a single run of the default architecture
        earlier = {"default": {**earlier, "architecture": "default"}}
    earlier[args.architecture if on_cpu else f"{args.architecture}_{args.device}"] = result
    args.out.write_text(json.dumps(earlier, indent=1))


def time_forward_passes(model, *, synchronise: bool) -> list[float]:
    """Wrap ``model.forward`` to add its seconds (device synchronised) to the returned list."""
    import torch

    spent = [0.0]
    forward = model.forward

    def timed(*args, **kwargs):
        if synchronise:
            torch.cuda.synchronize()
        start = time.perf_counter()
        out = forward(*args, **kwargs)
        if synchronise:
            torch.cuda.synchronize()
        spent[0] += time.perf_counter() - start
        return out

    model.forward = timed
    return spent


if __name__ == "__main__":
    main()
