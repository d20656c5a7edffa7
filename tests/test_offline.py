"""Nothing is downloaded and no checkpoint code runs unless asked: every entry point that
loads a model or tokenizer, given a hub-style name, fails at once with our error and never
opens a network connection."""

from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch

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


CONFIGURATION = """
from transformers import PretrainedConfig


class TinyDnaConfig(PretrainedConfig):
    model_type = "tiny_dna"

    def __init__(self, vocab_size=10, hidden_size=8, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.hidden_size = hidden_size
        self.num_hidden_layers = 1
"""
MODELING = """
import torch
from transformers import PreTrainedModel
from transformers.modeling_outputs import BaseModelOutput

from .configuration_tiny import TinyDnaConfig


class TinyDnaModel(PreTrainedModel):
    config_class = TinyDnaConfig
    base_model_prefix = "tiny"

    def __init__(self, config):
        super().__init__(config)
        self.table = torch.nn.Embedding(config.vocab_size, config.hidden_size)
        self.post_init()

    def forward(self, input_ids, attention_mask=None, output_hidden_states=False, **kwargs):
        states = torch.tanh(self.table(input_ids))
        hidden = (states, states) if output_hidden_states else None
        return BaseModelOutput(last_hidden_state=states, hidden_states=hidden)
"""


def test_checkpoint_code_runs_when_the_user_asks(tmp_path, no_network):
    import importlib.util
    import sys

    from genlm_sc.models import build_tokenizer

    folder = tmp_path / "custom"
    folder.mkdir()
    (folder / "configuration_tiny.py").write_text(CONFIGURATION)
    (folder / "modeling_tiny.py").write_text(MODELING)
    sys.path.insert(0, str(tmp_path))  # import the package the folder is, to save weights
    (folder / "__init__.py").write_text("")
    try:
        spec = importlib.util.find_spec("custom.modeling_tiny")
        modeling = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(modeling)
    finally:
        sys.path.remove(str(tmp_path))
    (folder / "__init__.py").unlink()
    tokenizer = build_tokenizer("char")
    network = modeling.TinyDnaModel(modeling.TinyDnaConfig(vocab_size=len(tokenizer)))
    network.config.auto_map = {"AutoConfig": "configuration_tiny.TinyDnaConfig",
                               "AutoModel": "modeling_tiny.TinyDnaModel"}  # fmt: skip
    network.save_pretrained(folder)
    tokenizer.save_pretrained(folder)

    panel = gl.pp.sequence_panel({"a": "ACGTTGCA", "b": "GGGCCCAT"})
    with pytest.raises(CheckpointError, match="trust_remote_code=True"):
        gl.tl.embed(panel, model=folder)
    gl.tl.embed(panel, model=folder, trust_remote_code=True, device="cpu", progress=False)
    table = torch.tanh(network.table.weight).detach().numpy()
    for row, sequence in enumerate(["ACGTTGCA", "GGGCCCAT"]):
        ids = tokenizer(sequence, add_special_tokens=False)["input_ids"]
        np.testing.assert_allclose(panel.obsm["X_gl"][row], table[ids].mean(0), rtol=1e-5)
