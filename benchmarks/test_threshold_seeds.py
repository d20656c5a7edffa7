"""Trained results of the test suite over seeds: where each test's threshold sits.

A threshold on a trained result must sit at or below mean − 3 SD of that result over at
least five seeds, so that the suite passes on any machine (CPUs round differently, and
training amplifies it). This script reruns the trainings of the tests with other seeds and
writes ``results/test_threshold_seeds.csv``:

- ``test_pretrain.py::test_pretrain_learns_saves_and_resumes``: held-out masked accuracy
  (threshold > 0.9) and bits per base (< 1.5) of a tiny model on a period-7 sequence;
- ``test_classifier.py::test_fine_tuning_learns_a_planted_motif``: test MCC (> 0.85) of full
  and LoRA fine-tuning on the planted-motif task (the pretrained model of the fixture,
  seed 0, fine-tuned with each seed).

``benchmarks/finetune_seeds.py`` does the same for expression fine-tuning.

    python benchmarks/test_threshold_seeds.py --seeds 0 1 2 3 4 5 6 7
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent / "tests"))


def pretrain_case(seed: int, root: Path, precision: str) -> dict:
    import genlm_sc as gl
    from genlm_sc.pp import PretrainingCorpus
    from test_pretrain import TINY

    motif = "".join(np.random.default_rng(0).choice(list("ACGT"), 7))
    train, held = PretrainingCorpus(), PretrainingCorpus()
    train._add(np.frombuffer((motif * 400).encode(), np.uint8), None, 1.0)
    held._add(np.frombuffer((motif * 40).encode(), np.uint8), None, 1.0)
    out = gl.tl.pretrain(
        train, eval_corpus=held, output_dir=root / f"m{seed}{precision}", model=TINY,
        sequence_length=64, max_steps=40, batch_size=8, learning_rate=5e-3, warmup_steps=5,
        eval_steps=20, device="cpu", progress=False, random_state=seed, precision=precision,
    )  # fmt: skip
    metrics = json.loads((out / "genlm_pretraining.json").read_text())["metrics"]
    return {"accuracy": metrics["eval_heldout_accuracy"],
            "bits_per_base": metrics["eval_heldout_bits_per_base"]}  # fmt: skip


def classifier_case(seed: int, root: Path, pretrained: Path, precision: str) -> dict:
    from genlm_sc.tl.classification.classifier import fit_classifier
    from test_classifier import motif_panel

    out = {}
    for method, learning_rate in (("full", 3e-3), ("lora", 2e-2)):
        panel = motif_panel()
        fit_classifier(
            panel, model=pretrained, method=method, learning_rate=learning_rate, epochs=10,
            batch_size=16, eval_steps=25, patience=None, device="cpu", progress=False,
            random_state=seed, precision=precision,
        )  # fmt: skip
        out[f"mcc_{method}"] = panel.uns["gl_classifier"]["test"]["mcc"]
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5, 6, 7])
    parser.add_argument("--precision", nargs="+", default=["fp32"])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "test_threshold_seeds.csv")
    args = parser.parse_args(argv)
    import torch

    import genlm_sc as gl
    from test_classifier import motif_table

    torch.set_num_threads(1)
    rows = []
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        train = motif_table().query("split == 'train'")["sequence"].tolist()
        fasta = root / "corpus.fa"
        fasta.write_text(
            "".join(f">r{r}\n{''.join(train[r * 10 : r * 10 + 10])}\n" for r in range(40))
        )
        pretrained = gl.tl.pretrain(
            fasta, output_dir=root / "lm", sequence_length=100, max_steps=200, batch_size=16,
            warmup_steps=10, eval_steps=1000, device="cpu", progress=False, resume=False,
            model={"hidden_size": 16, "num_conv_layers": 2, "dilation_cycle": [1, 2]},
            precision="fp32",
        )  # fmt: skip
        for precision in args.precision:
            for seed in args.seeds:
                row = {"precision": precision, "seed": seed,
                       **pretrain_case(seed, root, precision),
                       **classifier_case(seed, root, pretrained, precision)}  # fmt: skip
                print(row, flush=True)
                rows.append(row)
    table = pd.DataFrame(rows)
    summary = table.drop(columns="seed").groupby("precision").agg(["mean", "std", "min"])
    print(summary.T.round(4))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)


if __name__ == "__main__":
    main()
