"""Tiny training runs of every Trainer-based tool, for ``tests/test_distributed.py``.

Run as ``python distributed_training.py OUT BATCH`` (one process) or under
``torchrun --nproc_per_node 2 --standalone distributed_training.py OUT BATCH`` (``BATCH``
per process): a masked-LM pretraining, a multi-task pretraining, expression fine-tuning and
classification, each writing its model under ``OUT``. One process with batch ``2 B`` and two
with ``B`` see the same global batches and must end with the same weights.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

import genlm_sc as gl
from genlm_sc._distributed import barrier
from genlm_sc.models import GenlmConvConfig, GenlmConvForMaskedLM, build_tokenizer
from genlm_sc.pp import PretrainingCorpus

TINY = {"hidden_size": 16, "num_conv_layers": 2, "dilation_cycle": [1, 2], "dropout": 0.0}
COMMON = {"device": "cpu", "progress": False, "precision": "fp32"}


def corpora(*, labelled: bool) -> tuple[PretrainingCorpus, PretrainingCorpus]:
    """Random sequences of several lengths (so batches hold different numbers of masked
    tokens per process), optionally with a per-sequence and a per-base label."""
    rng = np.random.default_rng(0)
    train, held = PretrainingCorpus(), PretrainingCorpus()
    for i, length in enumerate([300, 40, 250, 55, 280, 35]):
        codes = np.frombuffer("".join(rng.choice(list("ACGT"), length)).encode(), np.uint8)
        train._add(codes, None, 1.0, {"odd": i % 2} if labelled else None)
    codes = np.frombuffer("".join(rng.choice(list("ACGT"), 200)).encode(), np.uint8)
    held._add(codes, None, 1.0, {"odd": 0} if labelled else None)
    if labelled:
        for corpus in (train, held):
            corpus.label_bases("is_g", lambda c: (c == ord("G")).astype(int))
    return train, held


def pretraining(out: Path, batch: int, *, labelled: bool) -> None:
    train, held = corpora(labelled=labelled)
    gl.tl.pretrain(
        train, eval_corpus=held, output_dir=out, model=TINY, sequence_length=64, max_steps=6,
        batch_size=batch, learning_rate=5e-3, warmup_steps=2, eval_steps=3,
        auxiliary={"odd": 1.0, "is_g": 0.5} if labelled else None, **COMMON,
    )  # fmt: skip


def encoder(folder: Path) -> Path:
    """A tiny untrained genlm_conv masked LM with a char tokenizer (the same in every
    process: fixed seed)."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer("char", model_max_length=128)
    config = GenlmConvConfig(vocab_size=len(tokenizer), **TINY)
    if int(os.environ.get("RANK", "0")) == 0:
        GenlmConvForMaskedLM(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
    return folder


def finetuning(out: Path, batch: int, model: Path) -> None:
    from genlm_sc.tl.expression.finetune import FinetuneOptions, build_regressor, train_regressor

    rng = np.random.default_rng(0)
    pairs = [tuple("".join(rng.choice(list("ACGT"), 24)) for _ in range(2)) for _ in range(32)]
    target = np.array([sum(h[5] == "T" for h in pair) for pair in pairs], dtype=float)
    target = (target - target.mean()) / target.std()
    # 24 training people: two epochs of 3 global batches of 8; validation on the other 8
    options = FinetuneOptions.parse({
        "model": model, "epochs": 2, "batch_size": batch, "learning_rate": 1e-2,
        "validation_fraction": 0.25, "strategy": "prune", "patience": None, **COMMON,
    })  # fmt: skip
    pretrained = gl.models.load_encoder(model, device="cpu", precision="fp32")
    # in float64: the comparison then measures the data-parallel logic, not float32 rounding
    # magnified by the standardised head (tests/test_distributed.py)
    regressor = build_regressor(pretrained, options, y_mean=0.0, y_std=1.0).double()
    fitted = train_regressor(regressor, pairs, target, options)
    fitted.standardise_inputs(pairs, batch_size=16)
    predicted = gl.tl.predict(fitted, pairs)
    if int(os.environ.get("RANK", "0")) == 0:
        fitted.save_pretrained(out)
        (out / "predictions.json").write_text(json.dumps(predicted.tolist()))


def expression_fit(out: Path, batch: int, model: Path) -> None:
    """``gl.tl.fit_expression(method="finetune")`` end to end on 32 example people, 2 outer
    folds: 16 training people per fold, two global batches of 8."""
    example = gl.datasets.chr20_example()
    panel = gl.datasets.example_gene_panel(width=64)[:2].copy()
    cohort = gl.pp.personal_sequences(
        example.vcf, fasta=example.fasta, genes=panel, unphased="random", progress=False,
        samples=gl.io.open_genotypes(example.vcf).samples[:32],
    )  # fmt: skip
    gl.datasets.simulate_expression(cohort, n_causal=1, h2=0.8, random_state=0)
    gene = cohort.var_names[0]
    options = {"model": model, "strategy": "prune", "epochs": 2, "batch_size": batch,
               "learning_rate": 1e-3, "validation_fraction": 0.0, "patience": None,
               "output_dir": out, **COMMON}  # fmt: skip
    gl.tl.fit_expression(cohort, method="finetune", genes=[gene], n_folds=2,
                         finetune_options=options)  # fmt: skip
    if int(os.environ.get("RANK", "0")) == 0:
        predicted = cohort.layers["gl_pred_finetune"][:, cohort.var_names.get_loc(gene)]
        (out / "predictions.json").write_text(json.dumps(predicted.tolist()))


def classification(out: Path, batch: int, model: Path) -> None:
    rng = np.random.default_rng(1)
    sequences = ["".join(rng.choice(list("ACGT"), 30)) for _ in range(48)]
    labels = [int("TA" in s[:10]) for s in sequences]
    split = ["train"] * 32 + ["dev"] * 8 + ["test"] * 8  # 32 = 4 global batches of 8
    table = pd.DataFrame({"sequence": sequences, "label": labels, "split": split})
    table.index = [f"s{i}" for i in range(len(table))]
    panel = gl.pp.sequence_panel(table)
    gl.tl.fit_classifier(
        panel, model=model, learning_rate=5e-3, epochs=2, batch_size=batch, eval_steps=4,
        patience=None, dropout=0.0, output_dir=out, **COMMON,
    )  # fmt: skip
    if int(os.environ.get("RANK", "0")) == 0:  # a user's script writes its AnnData once
        probabilities = panel.obs.filter(like="_prob_").to_numpy(dtype=float)
        (out / "test_probabilities.json").write_text(json.dumps(probabilities.tolist()))


def main() -> None:
    out, batch = Path(sys.argv[1]), int(sys.argv[2])
    torch.set_num_threads(1)
    pretraining(out / "pretrain", batch, labelled=False)
    pretraining(out / "multitask", batch, labelled=True)
    model = encoder(out / "encoder")
    barrier()  # the encoder is written before anyone reads it
    finetuning(out / "finetune", batch, model)
    expression_fit(out / "fit_expression", batch, model)
    classification(out / "classifier", batch, model)


if __name__ == "__main__":
    main()
