"""Published checkpoint layouts embed as their models' own recipes do; a model that would
load half-initialised, or a tokenizer that turns DNA into unknown tokens, is an error
naming the checkpoint, never a warning."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import (
    AutoTokenizer,
    BertConfig,
    BertForMaskedLM,
    BertTokenizerFast,
    EsmConfig,
    EsmForMaskedLM,
)

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


def dnabert_layout(folder, k: int = 3, *, drop: int = 0):
    """DNABERT's published files (``jerryji1993/DNABERT``, ``bert-config-k``): a WordPiece
    vocab.txt of [PAD] [UNK] [CLS] [SEP] [MASK] and every k-mer in
    ``itertools.product("ATCG", repeat=k)`` order, read by BERT's tokenizer (which expects
    the k-mers cut and separated by spaces). ``drop`` leaves out the last k-mers."""
    folder.mkdir(parents=True)
    kmers = ["".join(p) for p in itertools.product("ATCG", repeat=k)]
    kmers = kmers[: len(kmers) - drop]
    (folder / "vocab.txt").write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                                 *kmers]) + "\n")  # fmt: skip
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"do_lower_case": False, "model_max_length": 512})
    )
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
         "cls_token": "[CLS]", "mask_token": "[MASK]"}))  # fmt: skip
    torch.manual_seed(0)
    config = BertConfig(vocab_size=len(kmers) + 5, hidden_size=16, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=32,
                        architectures=["BertForMaskedLM"])  # fmt: skip
    BertForMaskedLM(config).save_pretrained(folder)
    return folder


def dnabert_recipe(folder, sequence: str, k: int) -> np.ndarray:
    """DNABERT's own recipe: the sequence as space-separated overlapping k-mers through the
    checkpoint's BERT tokenizer, the mean of the last states over non-special tokens."""
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    text = " ".join(sequence[i : i + k] for i in range(len(sequence) - k + 1))
    encoded = tokenizer(text, return_tensors="pt", return_special_tokens_mask=True)
    keep = encoded.pop("special_tokens_mask")[0] == 0
    model = BertForMaskedLM.from_pretrained(folder).eval()
    with torch.inference_mode():
        states = model.bert(**encoded).last_hidden_state[0]
    return states[keep].mean(0).numpy()


@pytest.mark.parametrize("k", [3, 6])
def test_dnabert_layout_embeds_as_dnabert_does(tmp_path, k):
    folder = dnabert_layout(tmp_path / f"dnabert{k}", k)
    sequences = {"a": "ACGTTGCAAGCTTCGACCGGTTAACATGCGTAAC", "b": "TTTTACGTACGNACGTGGGCCA"}
    panel = gl.pp.sequence_panel(sequences)
    gl.tl.embed(panel, model=folder, device="cpu", precision="fp32", progress=False)
    for i, sequence in enumerate(sequences.values()):
        expected = dnabert_recipe(folder, sequence, k)
        got = panel.obsm["X_gl"][i]
        cosine = got @ expected / np.linalg.norm(got) / np.linalg.norm(expected)
        assert cosine > 0.999999, cosine
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def nt_v1_layout(folder):
    """Nucleotide Transformer v1's published files: an ESM masked LM (absolute positions),
    vocab.txt of <unk> <pad> <mask> <cls> <eos> <bos>, the 4,096 6-mers and A T C G N,
    read by ``EsmTokenizer``."""
    folder.mkdir(parents=True)
    kmers = ["".join(p) for p in itertools.product("ATCG", repeat=6)]
    vocab = ["<unk>", "<pad>", "<mask>", "<cls>", "<eos>", "<bos>", *kmers, "A", "T", "C", "G",
             "N"]  # fmt: skip
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    (folder / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "EsmTokenizer", "model_max_length": 1000})
    )
    (folder / "special_tokens_map.json").write_text(json.dumps(
        {"unk_token": "<unk>", "pad_token": "<pad>", "mask_token": "<mask>",
         "cls_token": "<cls>", "eos_token": "<eos>", "bos_token": "<bos>"}))  # fmt: skip
    torch.manual_seed(0)
    config = EsmConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=2,
                       num_attention_heads=2, intermediate_size=32, max_position_embeddings=1002,
                       position_embedding_type="absolute", pad_token_id=1, mask_token_id=2,
                       token_dropout=False, emb_layer_norm_before=False,
                       architectures=["EsmForMaskedLM"])  # fmt: skip
    EsmForMaskedLM(config).save_pretrained(folder)
    return folder


def test_nucleotide_transformer_v1_layout_embeds_as_its_own_tokenizer_does(tmp_path):
    folder = nt_v1_layout(tmp_path / "nt")
    sequence = "ACGTTGCAAGCTTCGACCGGTTAACATGCGTAACN"
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoded = tokenizer(sequence, return_tensors="pt", return_special_tokens_mask=True)
    keep = encoded.pop("special_tokens_mask")[0] == 0
    model = EsmForMaskedLM.from_pretrained(folder).eval()
    with torch.inference_mode():
        expected = model.esm(**encoded).last_hidden_state[0][keep].mean(0).numpy()
    encoder = load_encoder(folder, device="cpu", precision="fp32")
    assert (encoder.chunker.head, encoder.chunker.tail) == ([3], [4])  # <cls> ... <eos>
    np.testing.assert_allclose(encoder.embed([sequence])[0], expected, rtol=1e-4, atol=1e-6)


def test_a_tokenizer_that_reads_dna_as_unknown_tokens_is_refused(tmp_path):
    folder = dnabert_layout(tmp_path / "dnabert3", drop=4)  # k-mers missing: not DNABERT's
    with pytest.raises(CheckpointError, match=r"turns 100% of an ACGT sequence into .*\[UNK\]"):
        load_encoder(folder)
    with pytest.raises(CheckpointError, match="unknown token"):
        gl.tl.embed(gl.pp.sequence_panel({"a": "ACGTACGT"}), model=folder)


def test_a_model_folder_without_its_tokenizer_is_refused(tmp_path):
    folder, _, _ = third_party_checkpoint(tmp_path / "m", "dnabert")
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink(missing_ok=True)
    with pytest.raises(CheckpointError, match=r"no tokenizer in .*tokenizer\.save_pretrained"):
        load_encoder(folder)


def test_a_tokenizer_that_does_not_match_the_weights_is_refused(tmp_path):
    folder = dnabert_layout(tmp_path / "dnabert3", 3)
    small, _, _ = third_party_checkpoint(tmp_path / "other", "dnabert")  # 3-mers: 69 tokens
    other = dnabert_layout(tmp_path / "dnabert4", 4)  # 261 token ids
    for name in ("config.json", "model.safetensors"):
        (other / name).write_bytes((folder / name).read_bytes())  # a 3-mer model's weights
    with pytest.raises(CheckpointError, match=r"ids up to 260.*embeds only 69 tokens"):
        load_encoder(other)
    assert load_encoder(small, device="cpu").hidden_size == 16
