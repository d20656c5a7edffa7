"""Nothing is downloaded and no checkpoint code runs unless asked: every entry point that
loads a model or tokenizer, given a hub-style name, fails at once with our error and never
opens a network connection."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest

import genlm_sc as gl
from genlm_sc.models import load_encoder, load_tokenizer
from genlm_sc.models.loading import CheckpointError
from test_embed import conv_checkpoint

HUB_NAME = "zhihan1996/DNABERT-2-117M"


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"a network connection was opened: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def entry_points(panel, cohort, tmp_path):
    """Every call that loads a model or tokenizer by path, with a hub name instead."""
    return {
        "load_encoder": lambda: load_encoder(HUB_NAME),
        "load_tokenizer": lambda: load_tokenizer(HUB_NAME),
        "embed": lambda: gl.tl.embed(panel, model=HUB_NAME),
        "pretrain tokenizer=": lambda: gl.tl.pretrain(
            panel_fasta(panel, tmp_path), output_dir=tmp_path / "a", tokenizer=HUB_NAME
        ),
        "pretrain model=": lambda: gl.tl.pretrain(
            panel_fasta(panel, tmp_path), output_dir=tmp_path / "b", model=HUB_NAME
        ),
        "attribute mlm": lambda: gl.tl.attribute(panel, gene="s0", model=HUB_NAME, target="mlm"),
        "attribute expression": lambda: gl.tl.attribute(panel, gene="s0", model=HUB_NAME),
        "variant_effects": lambda: gl.tl.variant_effects(
            cohort, gene=cohort.var_names[0], model=HUB_NAME
        ),
        "fit_classifier": lambda: gl.tl.fit_classifier(panel, model=HUB_NAME, label_key="label"),
        "predict": lambda: gl.tl.predict(HUB_NAME, ["ACGT"]),
        "predict_classifier": lambda: gl.tl.predict_classifier(HUB_NAME, ["ACGT"]),
        "fit_expression finetune": lambda: gl.tl.fit_expression(
            cohort, method="finetune", finetune_options={"model": HUB_NAME}
        ),
    }


def panel_fasta(panel, tmp_path):
    fasta = tmp_path / "corpus.fa"
    fasta.write_text("".join(f">{n}\n{s}\n" for n, s in panel.obs["sequence"].items()))
    return fasta


@pytest.fixture(scope="module")
def inputs():
    generator = np.random.default_rng(0)
    sequences = {f"s{i}": "".join(generator.choice(list("ACGT"), 60)) for i in range(20)}
    panel = gl.pp.sequence_panel(sequences)
    panel.obs["label"] = np.arange(20) % 2
    cohort = gl.datasets.example_cohort(width=64)
    cohort.X = np.zeros(cohort.shape, dtype=np.float32)
    return panel, cohort


@pytest.mark.parametrize(
    "name",
    ["load_encoder", "load_tokenizer", "embed", "pretrain tokenizer=", "pretrain model=",
     "attribute mlm", "attribute expression", "variant_effects", "fit_classifier", "predict",
     "predict_classifier", "fit_expression finetune"],
)  # fmt: skip
def test_a_hub_name_fails_at_once_without_the_network(inputs, tmp_path, no_network, name):
    panel, cohort = inputs
    with pytest.raises(CheckpointError, match="downloads nothing"):
        entry_points(panel, cohort, tmp_path)[name]()


def test_checkpoint_code_runs_only_when_asked(tmp_path, no_network):
    folder = conv_checkpoint(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    config["model_type"] = "someone_elses_model"
    config["auto_map"] = {"AutoModel": "modeling_theirs.TheirModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_theirs.py").write_text("raise SystemExit('checkpoint code ran')\n")
    with pytest.raises(CheckpointError, match=r"AutoModel -> modeling_theirs\.TheirModel"):
        load_encoder(folder)
    with pytest.raises(CheckpointError, match="trust_remote_code=True"):
        gl.tl.embed(gl.pp.sequence_panel({"a": "ACGT"}), model=folder)
