"""Labelled sequences and sequence-level fine-tuning: reader, full and LoRA, early stopping."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

import genlm_sc as gl
from conftest import SHARED, needs_shared
from genlm_sc.io.errors import InputFileError
from genlm_sc.io.labelled import read_labelled_sequences
from genlm_sc.models.heads import SequenceClassifier
from genlm_sc.pp import sequence_panel
from genlm_sc.tl.classification.classifier import (
    classification_metrics,
    fit_classifier,
    predict_classifier,
)
from test_embed import third_party_checkpoint

torch.set_num_threads(1)
MOTIF = "TATAAA"
GUE = SHARED / "gue"


def motif_table(n: int = 600, length: int = 40, seed: int = 0) -> pd.DataFrame:
    """Random sequences, label 1 where ``MOTIF`` was planted (every other one), split
    400/100/100 into train/dev/test."""
    rng = np.random.default_rng(seed)
    sequences, labels = [], []
    for i in range(n):
        bases = list(rng.choice(list("ACGT"), length))
        label = i % 2
        if label:
            at = int(rng.integers(0, length - len(MOTIF)))
            bases[at : at + len(MOTIF)] = MOTIF
        sequences.append("".join(bases))
        labels.append(label)
    n_train, n_dev = int(n * 2 / 3), n // 6
    split = ["train"] * n_train + ["dev"] * n_dev + ["test"] * (n - n_train - n_dev)
    return pd.DataFrame({"sequence": sequences, "label": labels, "split": split})


def motif_panel(**kwargs):
    table = motif_table(**kwargs)
    table.index = [f"s{i}" for i in range(len(table))]
    return gl.pp.sequence_panel(table)


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    """A tiny genlm_conv model pretrained (masked LM, 200 steps) on the training sequences."""
    root = tmp_path_factory.mktemp("classifier")
    train = motif_table().query("split == 'train'")["sequence"].tolist()
    fasta = root / "corpus.fa"
    fasta.write_text("".join(f">r{r}\n{''.join(train[r * 10 : r * 10 + 10])}\n" for r in range(40)))
    return gl.tl.pretrain(
        fasta, output_dir=root / "lm", sequence_length=100, max_steps=200, batch_size=16,
        warmup_steps=10, eval_steps=1000, device="cpu", progress=False, resume=False,
        model={"hidden_size": 16, "num_conv_layers": 2, "dilation_cycle": [1, 2]},
        precision="fp32",
    )  # fmt: skip


@pytest.fixture(scope="module")
def fitted(pretrained, tmp_path_factory):
    """The motif task fitted with full fine-tuning and with LoRA, models saved."""
    out = tmp_path_factory.mktemp("fitted")
    panels = {}
    for method, learning_rate in (("full", 3e-3), ("lora", 2e-2)):
        panel = motif_panel()
        fit_classifier(
            panel, model=pretrained, method=method, learning_rate=learning_rate, epochs=10,
            batch_size=16, eval_steps=25, patience=None, device="cpu", progress=False,
            output_dir=out / method, precision="fp32",
        )  # fmt: skip
        panels[method] = panel
    return panels, out


# --- reading ----------------------------------------------------------------------------


def test_reader_round_trips_plain_and_gzipped_csv(tmp_path, pretrained):
    table = motif_table(n=60)
    table.loc[0, "sequence"] = "acgtRYacgt"  # lower case and IUPAC codes
    table["score"] = np.arange(60) / 10  # extra columns are kept
    folder = tmp_path / "task"
    folder.mkdir()
    for split in ("train", "dev", "test"):
        part = table[table["split"] == split].drop(columns="split")
        if split == "dev":
            with gzip.open(folder / "dev.csv.gz", "wt") as handle:
                part.to_csv(handle, index=False)
        else:
            part.to_csv(folder / f"{split}.csv", index=False)

    panel = sequence_panel(read_labelled_sequences(folder))
    assert panel.n_obs == 60 and panel.uns["gl"]["kind"] == "sequence_panel"
    assert list(panel.obs["split"].cat.categories) == ["train", "dev", "test"]
    assert (panel.obs["split"].astype(str).to_numpy() == table["split"].to_numpy()).all()
    assert panel.obs_names[0] == "train_0" and panel.obs_names[40] == "dev_0"
    assert panel.obs["sequence"].iloc[0] == "ACGTNNACGT"
    np.testing.assert_array_equal(panel.obs["sequence"].iloc[1:], table["sequence"].iloc[1:])
    np.testing.assert_array_equal(panel.obs["label"], table["label"])
    assert panel.obs["label"].dtype == np.int64
    np.testing.assert_allclose(panel.obs["score"], table["score"])
    np.testing.assert_array_equal(panel.obs["length"], table["sequence"].str.len())
    # the existing sequence tools take it as it is
    gl.tl.kmer_profile(panel, k=2)
    assert panel.obsm["X_kmer"].shape == (60, 16)
    gl.tl.embed(panel, model=pretrained, device="cpu", progress=False)
    assert panel.obsm["X_gl"].shape == (60, 16) and np.isfinite(panel.obsm["X_gl"]).all()

    one = sequence_panel(read_labelled_sequences(folder / "dev.csv.gz"))
    assert one.n_obs == 10 and "split" not in one.obs.columns
    np.testing.assert_array_equal(one.obs["label"], table.loc[table["split"] == "dev", "label"])


def test_reader_names_what_is_wrong(tmp_path):
    (tmp_path / "train.csv").write_text("sequence,label\nACGT,1\n")
    with pytest.raises(InputFileError, match=r"no dev\.csv"):
        read_labelled_sequences(tmp_path)
    assert sequence_panel(read_labelled_sequences(tmp_path, splits=["train"])).n_obs == 1
    (tmp_path / "bad.csv").write_text("seq,label\nACGT,1\n")
    with pytest.raises(InputFileError, match="no column 'sequence'"):
        read_labelled_sequences(tmp_path / "bad.csv")
    (tmp_path / "gap.csv").write_text("sequence,label\nACGT,1\nACGT,\n")
    with pytest.raises(InputFileError, match="line 3"):
        read_labelled_sequences(tmp_path / "gap.csv")


# --- fine-tuning ------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["full", "lora"])
def test_fine_tuning_learns_a_planted_motif(fitted, method):
    panels, _ = fitted
    record = panels[method].uns["gl_classifier"]
    # at most mean - 3 SD of the test MCC over 8 seeds in fp32 (full 0.970 ± 0.028,
    # LoRA 0.939 ± 0.033): benchmarks/results/test_threshold_seeds.csv
    assert record["test"]["mcc"] > {"full": 0.85, "lora": 0.8}[method], record["test"]
    assert record["test"]["n"] == 100 and record["n_train"] == 400 and record["n_dev"] == 100
    assert record["stop_reason"] == "max_steps" and record["steps"] == 10 * 400 // 16
    history = record["history"]
    assert list(history["step"]) == list(range(25, 251, 25))
    assert record["dev"]["best_mcc"] == pytest.approx(history["mcc"].max())
    assert record["dev"]["best_step"] in set(history["step"])
    assert list(record["classes"]) == [0, 1]


def test_lora_trains_only_adapters_and_head(fitted):
    panels, out = fitted
    full, lora = panels["full"].uns["gl_classifier"], panels["lora"].uns["gl_classifier"]
    assert full["n_trainable_parameters"] == full["n_parameters"]
    assert lora["n_parameters"] == full["n_parameters"]  # adapters merged after training
    # rank-8 adapters on ffn.0 (16 -> 32) and ffn.2 (32 -> 16) of 2 blocks, and the head
    adapters = 2 * (8 * (16 + 32) + 8 * (32 + 16))
    assert lora["n_trainable_parameters"] == adapters + 16 * 2 + 2
    saved = SequenceClassifier.from_pretrained(out / "lora", device="cpu")
    assert not any("lora_" in name for name, _ in saved.named_parameters())


def test_metrics_equal_sklearn_on_the_stored_predictions(fitted):
    panels, _ = fitted
    for panel in panels.values():
        obs = panel.obs
        test = (obs["split"] == "test").to_numpy()
        predicted = obs["gl_classifier_pred"]
        assert predicted[~test].isna().all() and predicted[test].notna().all()
        truth, guess = obs.loc[test, "label"].to_numpy(), predicted[test].astype(int).to_numpy()
        record = panel.uns["gl_classifier"]["test"]
        assert record["mcc"] == pytest.approx(matthews_corrcoef(truth, guess))
        assert record["f1_macro"] == pytest.approx(f1_score(truth, guess, average="macro"))
        assert record["accuracy"] == pytest.approx(accuracy_score(truth, guess))
        probabilities = obs[["gl_classifier_prob_0", "gl_classifier_prob_1"]].to_numpy()
        assert np.isnan(probabilities[~test]).all()
        np.testing.assert_allclose(probabilities[test].sum(1), 1.0, atol=1e-9)
        np.testing.assert_array_equal(probabilities[test].argmax(1), guess)


def test_predicting_after_reload_equals_predicting_in_memory(fitted):
    panels, out = fitted
    for method, panel in panels.items():
        test = panel[(panel.obs["split"] == "test").to_numpy()]
        stored = test.obs[["gl_classifier_prob_0", "gl_classifier_prob_1"]].to_numpy()
        reloaded = predict_classifier(out / method, test, proba=True, device="cpu")
        np.testing.assert_allclose(reloaded, stored, rtol=1e-5, atol=1e-6)
        model = SequenceClassifier.from_pretrained(out / method, device="cpu")
        labels = predict_classifier(model, test.obs["sequence"].tolist(), batch_size=7)
        np.testing.assert_array_equal(labels, test.obs["gl_classifier_pred"].astype(int))
        assert predict_classifier(model, "ACGT" * 5 + MOTIF + "ACGT" * 5).shape == (1,)


def test_early_stopping_stops_after_patience_evaluations_without_improvement(pretrained):
    panel = motif_panel()
    fit_classifier(
        panel, model=pretrained, learning_rate=0.0, max_steps=500, batch_size=16,
        eval_steps=5, patience=2, best_metric="loss", device="cpu", progress=False,
    )  # fmt: skip
    record = panel.uns["gl_classifier"]
    # nothing learns at learning rate 0: the first evaluation stays the best
    assert record["stop_reason"] == "early_stopping"
    assert record["steps"] == 5 * (1 + 2) and record["dev"]["best_step"] == 5
    assert list(record["history"]["step"]) == [5, 10, 15]


def test_time_budget_stops_after_one_more_evaluation(pretrained):
    panel = motif_panel()
    fit_classifier(
        panel, model=pretrained, max_steps=500, batch_size=16, eval_steps=100,
        time_budget=0.0, device="cpu", progress=False, key_added="quick",
    )  # fmt: skip
    record = panel.uns["quick"]
    assert record["stop_reason"] == "time_budget" and record["steps"] == 1
    assert list(record["history"]["step"]) == [1]
    assert {"quick_pred", "quick_prob_0", "quick_prob_1"} <= set(panel.obs.columns)


def test_string_labels_bert_lora_and_a_drawn_split(tmp_path):
    table = motif_table(n=120)
    table["label"] = np.where(table["label"] == 1, "motif", "background")
    panel = gl.pp.sequence_panel(table.drop(columns="split"))
    folder, _, _ = third_party_checkpoint(tmp_path / "bert", "dnabert")
    out = fit_classifier(
        panel, model=folder, method="lora", max_steps=4, batch_size=8, device="cpu",
        progress=False, output_dir=tmp_path / "fitted", copy=True,
    )  # fmt: skip
    assert "split" not in panel.obs.columns and "gl_classifier" not in panel.uns
    split = out.obs["split"].astype(str)
    assert split.value_counts().to_dict() == {"train": 96, "dev": 12, "test": 12}
    for name in ("train", "dev", "test"):  # stratified
        assert (out.obs.loc[split == name, "label"] == "motif").mean() == 0.5
    record = out.uns["gl_classifier"]
    assert list(record["classes"]) == ["background", "motif"]
    assert record["n_trainable_parameters"] < record["n_parameters"] / 5
    assert set(out.obs["gl_classifier_pred"].dropna()) <= {"background", "motif"}
    test = (split == "test").to_numpy()
    again = predict_classifier(tmp_path / "fitted", out[test], device="cpu")
    np.testing.assert_array_equal(again, out.obs["gl_classifier_pred"][test].astype(str))


def test_fit_classifier_checks_its_input(pretrained):
    panel = motif_panel(n=60)
    with pytest.raises(ValueError, match="method"):
        fit_classifier(panel, model=pretrained, method="prune")
    with pytest.raises(KeyError, match="nope"):
        fit_classifier(panel, model=pretrained, label_key="nope")
    panel.obs["split"] = "test"
    with pytest.raises(ValueError, match="no rows"):
        fit_classifier(panel, model=pretrained)


def test_classification_metrics_match_sklearn():
    truth = np.array([0, 0, 1, 1, 2, 2, 2])
    guess = np.array([0, 1, 1, 1, 2, 0, 2])
    scores = classification_metrics(truth, guess)
    assert scores["mcc"] == pytest.approx(matthews_corrcoef(truth, guess))
    assert scores["f1_macro"] == pytest.approx(f1_score(truth, guess, average="macro"))
    assert scores["accuracy"] == pytest.approx(5 / 7) and scores["n"] == 7


# --- the real GUE files -----------------------------------------------------------------


@pytest.mark.shared_data
@needs_shared
@pytest.mark.parametrize(
    ("task", "counts", "length"),
    [("tf/0", (32378, 1000, 1000), 101), ("prom/prom_300_tata", (4904, 613, 613), 300)],
)
def test_gue_task_folders_read_with_aligned_labels(task, counts, length):
    panel = sequence_panel(read_labelled_sequences(GUE / task))
    assert tuple(panel.obs["split"].value_counts()[["train", "dev", "test"]]) == counts
    assert set(panel.obs["label"]) == {0, 1}
    assert panel.obs["length"].max() == length
    assert panel.obs["sequence"].str.fullmatch("[ACGTN]+").all()
    # labels belong to their sequences: a k-mer probe beats chance on held-out rows
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    split = panel.obs["split"].to_numpy()
    rows = np.concatenate([
        rng.choice(np.flatnonzero(split == "train"), 2000, replace=False),
        np.flatnonzero(split == "test"),
    ])  # fmt: skip
    small = panel[np.sort(rows)].copy()
    gl.tl.kmer_profile(small, k=(3, 4))
    x, y = small.obsm["X_kmer"], small.obs["label"].to_numpy()
    train = (small.obs["split"] == "train").to_numpy()
    probe = make_pipeline(StandardScaler(), LogisticRegression(C=0.01, max_iter=1000))
    probe.fit(x[train], y[train])
    assert matthews_corrcoef(y[~train], probe.predict(x[~train])) > 0.2


def test_a_model_given_in_memory_is_left_as_it_was():
    torch.manual_seed(0)
    tokenizer = gl.models.build_tokenizer("char", model_max_length=64)
    config = gl.models.GenlmConvConfig(
        vocab_size=len(tokenizer), hidden_size=16, num_conv_layers=2, dilation_cycle=[1, 2]
    )
    network = gl.models.GenlmConvForMaskedLM(config)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    panel = motif_panel(n=60)
    fit_classifier(
        panel, model=(network, tokenizer), learning_rate=1e-2, max_steps=3, batch_size=8,
        device="cpu", progress=False,
    )  # fmt: skip
    assert panel.uns["gl_classifier"]["steps"] == 3
    for key, value in network.state_dict().items():
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_an_interrupted_fit_resumes_as_if_never_stopped(pretrained, tmp_path, monkeypatch):
    from transformers import Trainer

    settings = {"model": pretrained, "method": "full", "learning_rate": 3e-3, "epochs": 2,
                "batch_size": 16, "eval_steps": 10, "patience": None, "device": "cpu",
                "progress": False, "precision": "fp32"}  # fmt: skip
    whole = motif_panel()
    fit_classifier(whole, output_dir=tmp_path / "whole", **settings)

    class Killed(Exception):
        pass

    real_step = Trainer.training_step

    def killed_at_step_25(self, *args, **kwargs):
        if self.state.global_step == 25:
            raise Killed
        return real_step(self, *args, **kwargs)

    monkeypatch.setattr(Trainer, "training_step", killed_at_step_25)
    with pytest.raises(Killed):
        fit_classifier(motif_panel(), output_dir=tmp_path / "killed", **settings)
    monkeypatch.setattr(Trainer, "training_step", real_step)
    with pytest.raises(ValueError, match=r"learning_rate: 0\.003 -> 0\.004"):
        fit_classifier(motif_panel(), output_dir=tmp_path / "killed",
                       **{**settings, "learning_rate": 4e-3})  # fmt: skip
    resumed = motif_panel()
    fit_classifier(resumed, output_dir=tmp_path / "killed", **settings)
    assert resumed.uns["gl_classifier"]["resumed_from"].endswith("checkpoint-20")
    columns = ["gl_classifier_prob_0", "gl_classifier_prob_1"]
    np.testing.assert_allclose(resumed.obs[columns], whole.obs[columns], rtol=1e-5, atol=1e-6)
    assert not (tmp_path / "killed" / "checkpoints").exists()  # removed once the model is saved


def test_a_classifier_head_saved_as_a_sequential_still_loads(pretrained, tmp_path):
    from genlm_sc.models import load_encoder

    loaded = load_encoder(pretrained, device="cpu", precision="fp32")
    classifier = SequenceClassifier(loaded.model, loaded.tokenizer, max_length=64, classes=[0, 1])
    classifier.save_pretrained(tmp_path / "saved")
    head = torch.load(tmp_path / "saved" / "classification_head.pt", weights_only=True)
    old = {"0.mean": head["mean"] + 1, "0.scale": head["scale"] * 2,
           "2.weight": head["linear.weight"] + 3, "2.bias": head["linear.bias"]}  # fmt: skip
    torch.save(old, tmp_path / "saved" / "classification_head.pt")  # the 0.1.0 layout
    model = SequenceClassifier.from_pretrained(tmp_path / "saved", device="cpu")
    torch.testing.assert_close(model.head.mean, old["0.mean"])
    torch.testing.assert_close(model.head.linear.weight, old["2.weight"])
