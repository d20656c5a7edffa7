"""Multi-task (LOGO) pretraining: corpus labels, CpG islands, auxiliary heads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForMaskedLM

import genlm_sc as gl
from conftest import pretrain_killed_at
from genlm_sc.models import build_tokenizer, load_tokenizer
from genlm_sc.models.loading import CheckpointError
from genlm_sc.models.multitask import (
    HEADS_FILE,
    AuxiliaryTarget,
    MultiTaskMaskedLM,
    token_classes,
)
from genlm_sc.pp import PretrainingCorpus
from genlm_sc.pp.examples import CropDataset, tile_sequences

TINY = {"hidden_size": 16, "num_conv_layers": 2, "dilation_cycle": [1, 2]}


def codes(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8)


def brute_force_cpg(sequence: str, length: int, gc: float, ratio: float) -> np.ndarray:
    """The rule written out window by window."""
    out = np.zeros(len(sequence), dtype=bool)
    for start in range(len(sequence) - length + 1):
        window = sequence[start : start + length]
        c, g, cpg = window.count("C"), window.count("G"), window.count("CG")
        if c and g and (c + g) / length >= gc and cpg * length / (c * g) >= ratio:
            out[start : start + length] = True
    return out


def test_cpg_islands_follow_the_published_rule():
    rng = np.random.default_rng(0)
    for trial in range(20):
        parts = [
            "".join(rng.choice(list("ACGT"), int(rng.integers(50, 400)), p=p))
            for p in ([0.3, 0.2, 0.2, 0.3], [0.1, 0.4, 0.4, 0.1], [0.35, 0.15, 0.15, 0.35])
        ]
        sequence = "".join(rng.permutation(parts)) + "CG" * int(rng.integers(0, 60))
        for length, gc, ratio in ((200, 0.5, 0.6), (50, 0.55, 0.65)):
            expected = brute_force_cpg(sequence, length, gc, ratio)
            got = gl.pp.cpg_islands(sequence, min_length=length, min_gc=gc,
                                    min_observed_expected=ratio)  # fmt: skip
            np.testing.assert_array_equal(got, expected, err_msg=f"trial {trial}, {length}")
    assert gl.pp.cpg_islands("CG" * 150).all()
    assert not gl.pp.cpg_islands("G" * 150 + "C" * 150).any()  # GC-rich without a CpG
    assert not gl.pp.cpg_islands("CG" * 50).any()  # shorter than 200
    assert gl.pp.cpg_islands(codes("cg" * 150)).all()  # lower case (soft-masked) counts


def test_labels_travel_with_the_sequences(tmp_path):
    rng = np.random.default_rng(1)
    records = {f"r{i}": "".join(rng.choice(list("ACGT"), 300)) for i in range(40)}
    fasta = tmp_path / "seqs.fa"
    fasta.write_text("".join(f">{k}\n{v}\n" for k, v in records.items()))
    corpus = PretrainingCorpus().add_fasta(fasta, labels={"region": 1})
    corpus.add_fasta(fasta, labels={"region": 0})  # the same sequences again, labelled 0
    corpus.label_bases("is_g", lambda c: (c == ord("G")).astype(int))
    assert corpus.label_kinds() == {"region": "sequence", "is_g": "base"}
    assert [labels["region"] for labels in corpus.labels] == [1] * 40 + [0] * 40
    assert corpus.sources[0]["labels"] == {"region": 1}

    def consistent(part: PretrainingCorpus) -> None:
        for sequence, labels in zip(part.sequences, part.labels, strict=True):
            np.testing.assert_array_equal(labels["is_g"], sequence == ord("G"))
            assert labels["region"] in (0, 1)

    train, held = corpus.hold_out(every=5, overlap=100)  # groups: each record with its copy
    consistent(train), consistent(held)
    few_train, few_held = corpus.subset(range(3)).hold_out(every=20)  # last tenth of each
    consistent(few_train), consistent(few_held)
    assert len(few_held.labels[0]["is_g"]) == 30
    clean, _ = gl.pp.decontaminate(corpus, {"set": [records["r3"]]})
    assert len(clean) == 78
    consistent(clean)
    for item in [CropDataset(corpus, length=64, n_examples=50)[i] for i in range(50)]:
        np.testing.assert_array_equal(item["labels"]["is_g"], codes(item["sequence"]) == ord("G"))
    for tile in tile_sequences(corpus, length=128):
        np.testing.assert_array_equal(tile["labels"]["is_g"], codes(tile["sequence"]) == ord("G"))

    with pytest.raises(ValueError, match="class number from 0"):
        PretrainingCorpus().add_fasta(fasta, labels={"region": "promoter"})
    with pytest.raises(ValueError, match="one class per base"):
        corpus.label_bases("bad", lambda c: c[:-1])
    corpus.labels[0]["is_g"] = 1
    with pytest.raises(ValueError, match="per-sequence on some sequences"):
        corpus.label_kinds()


def test_token_labels_are_the_class_of_each_token_centre_base():
    sequence = "ACGTACGTACGTA"
    classes = np.arange(len(sequence)) % 7
    example = {"sequence": sequence, "labels": {"mark": classes, "kind": 1}}
    targets = [AuxiliaryTarget("mark", "base", 7), AuxiliaryTarget("kind", "sequence", 2)]
    for kind, k, centres in (
        ("char", None, list(range(13))),
        ("kmer", 3, [1 + i for i in range(11)]),  # overlapping 3-mers: their middle base
        ("nt_kmer", 3, [1, 4, 7, 10, 12]),  # non-overlapping 3-mers, then a single base
    ):
        tokenizer = build_tokenizer(kind, **({"k": k} if k else {}))
        encoded = tokenizer([sequence, "ACG"], padding=True, return_offsets_mapping=True,
                            return_special_tokens_mask=True, return_tensors="np")  # fmt: skip
        out = token_classes([example, {"sequence": "ACG"}], encoded["offset_mapping"],
                            encoded["special_tokens_mask"].astype(bool), targets)  # fmt: skip
        marks = out["aux_mark"].numpy()
        assert marks[0, 0] == -100 and marks[0, len(centres) + 1] == -100  # [CLS], [SEP]
        assert marks[0, 1 : len(centres) + 1].tolist() == classes[centres].tolist(), kind
        assert (marks[1] == -100).all()  # an example without the label is not scored
        assert out["aux_kind"].tolist() == [1, -100]
    with pytest.raises(ValueError, match="n_classes"):
        token_classes([example], encoded["offset_mapping"][:1],
                      encoded["special_tokens_mask"][:1].astype(bool),
                      [AuxiliaryTarget("mark", "base", 3)])  # fmt: skip


def two_region_corpus(seed: int = 0) -> tuple[PretrainingCorpus, PretrainingCorpus]:
    """Region 1: uniform random sequence with a CpG island; region 0: AT-rich sequence."""
    rng = np.random.default_rng(seed)

    def sequence(region: int) -> np.ndarray:
        composition = [0.25] * 4 if region else [0.35, 0.15, 0.15, 0.35]
        background = "".join(rng.choice(list("ACGT"), 600, p=composition))
        if region:
            island = "".join(rng.choice(["CG", "GC", "CA", "TG"], 150, p=[0.4, 0.3, 0.15, 0.15]))
            at = int(rng.integers(0, 300))
            background = background[:at] + island + background[at + 300 :]
        return codes(background)

    parts = []
    for n in (60, 8):
        corpus = PretrainingCorpus()
        for i in range(n):
            corpus._add(sequence(i % 2), None, 1.0, {"region": i % 2})
        parts.append(corpus.label_bases("cpg", gl.pp.cpg_islands))
    return parts[0], parts[1]


SETTINGS = {"model": TINY, "sequence_length": 200, "max_steps": 100, "batch_size": 8,
            "learning_rate": 1e-2, "warmup_steps": 5, "eval_steps": 50, "device": "cpu",
            "progress": False, "precision": "fp32"}  # fmt: skip


def test_multitask_pretraining_learns_the_targets_and_saves_the_heads(tmp_path):
    train, held = two_region_corpus()
    out = gl.tl.pretrain(train, eval_corpus=held, output_dir=tmp_path / "m",
                         auxiliary={"region": 1.0, "cpg": 0.5}, **SETTINGS)  # fmt: skip
    record = gl.models.pretraining_record(out)
    assert record["auxiliary"] == [
        {"name": "region", "level": "sequence", "n_classes": 2, "weight": 1.0},
        {"name": "cpg", "level": "base", "n_classes": 2, "weight": 0.5},
    ]
    metrics = record["metrics"]
    # over seeds 0-3: region 0.92-1.0, CpG 0.83-0.87 (majority class 0.50-0.53), 1.84-1.91
    # bits/base
    assert metrics["eval_heldout_region_accuracy"] >= 0.8
    assert metrics["eval_heldout_cpg_accuracy"] >= 0.75
    # bits from the masked-LM part of the loss, under the name a plain run uses
    assert metrics["eval_heldout_bits_per_base"] < 1.97
    mlm_bits = metrics["eval_heldout_mlm_loss"] / np.log(2)
    assert metrics["eval_heldout_bits_per_base"] == pytest.approx(mlm_bits)

    # the masked LM loads on its own, every weight present, the heads left aside
    mlm = AutoModelForMaskedLM.from_pretrained(out)
    assert not any("heads" in name for name in mlm.state_dict())
    panel = gl.pp.sequence_panel({"a": "ACGT" * 50, "b": "CG" * 100})
    gl.tl.embed(panel, model=out, device="cpu")
    assert panel.obsm["X_gl"].shape == (2, TINY["hidden_size"])

    model = MultiTaskMaskedLM.from_pretrained(out)
    tokenizer = load_tokenizer(out)
    island = "CG" * 60 + "GC" * 40
    predicted = model.predict(["AT" * 100, island], tokenizer)
    assert predicted["region"][1][1] > predicted["region"][0][1]
    assert predicted["cpg"][1].shape == (200, 2)
    assert predicted["cpg"][1][:, 1].mean() > predicted["cpg"][0][:, 1].mean()
    again = MultiTaskMaskedLM.from_pretrained(model.save_pretrained(tmp_path / "copy"))
    for name, value in model.state_dict().items():
        torch.testing.assert_close(again.state_dict()[name], value, rtol=0, atol=0)

    from safetensors.torch import load_file, save_file

    heads = load_file(out / HEADS_FILE)
    heads.pop("cpg.bias")
    save_file(heads, out / HEADS_FILE)
    with pytest.raises(CheckpointError, match=r"missing or mismatched weights \['cpg.bias'\]"):
        MultiTaskMaskedLM.from_pretrained(out)
    with pytest.raises(CheckpointError, match="holds no auxiliary heads"):
        MultiTaskMaskedLM.from_pretrained(_plain(tmp_path))
    with pytest.raises(ValueError, match="'promoter' is not a label of the training corpus"):
        gl.tl.pretrain(train, eval_corpus=held, output_dir=tmp_path / "x",
                       auxiliary={"promoter": 1.0}, **SETTINGS)  # fmt: skip


def _plain(tmp_path):
    """A masked LM pretrained without targets."""
    train, held = two_region_corpus()
    return gl.tl.pretrain(train, eval_corpus=held, output_dir=tmp_path / "plain",
                          **{**SETTINGS, "max_steps": 2, "eval_steps": 2})  # fmt: skip


def test_resumed_multitask_pretraining_equals_the_uninterrupted_run(tmp_path, monkeypatch):
    train, held = two_region_corpus(seed=1)
    settings = {
        **SETTINGS,
        "eval_corpus": held,
        "auxiliary": {"region": 1.0, "cpg": 0.5},
        "max_steps": 30,
        "eval_steps": 10,
    }
    whole = gl.tl.pretrain(train, output_dir=tmp_path / "whole", **settings)
    pretrain_killed_at(15, train, tmp_path / "killed", settings, monkeypatch)
    resumed = gl.tl.pretrain(train, output_dir=tmp_path / "killed", **settings)
    record = json.loads((resumed / "genlm_pretraining.json").read_text())
    assert record["resumed_from"].endswith("checkpoint-10")
    a = MultiTaskMaskedLM.from_pretrained(whole).state_dict()
    b = MultiTaskMaskedLM.from_pretrained(resumed).state_dict()
    assert any(name.startswith("heads.") for name in a)
    for name, value in a.items():
        torch.testing.assert_close(b[name], value, rtol=1e-6, atol=1e-7, msg=name)
