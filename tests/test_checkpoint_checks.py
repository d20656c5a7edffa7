"""A model that would load half-initialised, or a tokenizer that turns DNA into unknown
tokens, is an error naming the checkpoint, never a warning."""

from __future__ import annotations

import itertools
import json

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertForMaskedLM

import genlm_sc as gl
from genlm_sc.models import load_encoder
from genlm_sc.models.loading import CheckpointError
from test_embed import third_party_checkpoint


def test_weights_missing_an_encoder_parameter_are_refused(tmp_path):
    folder, _, _ = third_party_checkpoint(tmp_path / "m", "dnabert")
    weights = load_file(folder / "model.safetensors")
    # as a DNABERT-2 checkpoint read by a stock BERT: ALiBi, no position embeddings
    name = next(k for k in weights if k.endswith("embeddings.position_embeddings.weight"))
    del weights[name]
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(CheckpointError, match=r"half-initialised: 1 parameter.*position_embed"):
        load_encoder(folder)
    with pytest.raises(CheckpointError, match="half-initialised"):
        gl.tl.attribute(gl.pp.sequence_panel({"a": "ACGT" * 10}), gene="a", model=folder,
                        target="mlm")  # fmt: skip


def test_a_pooler_the_embedding_never_uses_may_be_absent(tmp_path):
    folder, _, _ = third_party_checkpoint(tmp_path / "m", "dnabert")  # a BertForMaskedLM:
    assert not any("pooler" in k for k in load_file(folder / "model.safetensors"))  # no pooler
    assert load_encoder(folder, device="cpu").hidden_size == 16


def dnabert_layout(folder, k: int = 3):
    """DNABERT's published files: a WordPiece vocab.txt of [PAD] [UNK] [CLS] [SEP] [MASK]
    and every k-mer over ATCG, read by BERT's tokenizer (no k-mer cutting)."""
    folder.mkdir(parents=True)
    kmers = ["".join(p) for p in itertools.product("ATCG", repeat=k)]
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                                 *kmers]) + "\n")  # fmt: skip
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": False, "model_max_length": 512})
    )
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
         "cls_token": "[CLS]", "mask_token": "[MASK]"}))  # fmt: skip
    torch.manual_seed(0)
    config = BertConfig(vocab_size=4**k + 5, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32,
                        architectures=["BertForMaskedLM"])  # fmt: skip
    BertForMaskedLM(config).save_pretrained(folder)
    return folder


def test_a_tokenizer_that_reads_dna_as_unknown_tokens_is_refused(tmp_path):
    folder = dnabert_layout(tmp_path / "dnabert3")
    with pytest.raises(CheckpointError, match=r"turns 100% of an ACGT sequence into .*\[UNK\]"):
        load_encoder(folder)
    with pytest.raises(CheckpointError, match="unknown token"):
        gl.tl.embed(gl.pp.sequence_panel({"a": "ACGTACGT"}), model=folder)
