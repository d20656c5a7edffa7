"""Published checkpoint layouts embed as their models' own recipes do; a model that would
load half-initialised, or a tokenizer that turns DNA into unknown tokens, is an error
naming the checkpoint, never a warning."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from transformers import (
    AutoTokenizer,
    EsmForMaskedLM,
)

import genlm_sc as gl
from genlm_sc.models import load_encoder
from genlm_sc.models.loading import CheckpointError
from published_layouts import dnabert_layout, gpn_layout, nt_v1_layout, own_recipe
from test_embed import third_party_checkpoint


def test_weights_missing_an_encoder_parameter_are_refused(tmp_path):
    folder, _, _ = third_party_checkpoint(tmp_path / "m", "dnabert")
    weights = torch.load(folder / "pytorch_model.bin", weights_only=True)
    # as a DNABERT-2 checkpoint read by a stock BERT: ALiBi, no position embeddings
    name = next(k for k in weights if k.endswith("embeddings.position_embeddings.weight"))
    del weights[name]
    torch.save(weights, folder / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=r"half-initialised: 1 parameter.*position_embed"):
        load_encoder(folder)
    with pytest.raises(CheckpointError, match="half-initialised"):
        gl.tl.attribute(gl.pp.sequence_panel({"a": "ACGT" * 10}), gene="a", model=folder,
                        target="mlm")  # fmt: skip


def test_a_pooler_the_embedding_never_uses_may_be_absent(tmp_path):
    folder, _, _ = third_party_checkpoint(tmp_path / "m", "dnabert")  # a BertForMaskedLM:
    weights = torch.load(folder / "pytorch_model.bin", weights_only=True)
    assert not any("pooler" in k for k in weights)  # no pooler
    assert load_encoder(folder, device="cpu").hidden_size == 16


@pytest.mark.parametrize("k", [3, 6])
def test_dnabert_layout_embeds_as_dnabert_does(tmp_path, k):
    folder = dnabert_layout(tmp_path / f"dnabert{k}", k)
    sequences = {"a": "ACGTTGCAAGCTTCGACCGGTTAACATGCGTAAC", "b": "TTTTACGTACGNACGTGGGCCA"}
    panel = gl.pp.sequence_panel(sequences)
    gl.tl.embed(panel, model=folder, device="cpu", precision="fp32", progress=False)
    for i, sequence in enumerate(sequences.values()):
        expected = own_recipe(folder, sequence, k=k)
        got = panel.obsm["X_gl"][i]
        cosine = got @ expected / np.linalg.norm(got) / np.linalg.norm(expected)
        assert cosine > 0.999999, cosine
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


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
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        (folder / name).unlink()
    with pytest.raises(CheckpointError, match=r"no tokenizer in .*tokenizer\.save_pretrained"):
        load_encoder(folder)


def test_a_tokenizer_that_does_not_match_the_weights_is_refused(tmp_path):
    folder = dnabert_layout(tmp_path / "dnabert3", 3)
    small, _, _ = third_party_checkpoint(tmp_path / "other", "dnabert")  # 3-mers: 69 tokens
    other = dnabert_layout(tmp_path / "dnabert4", 4)  # 261 token ids
    for name in ("config.json", "pytorch_model.bin"):
        (other / name).write_bytes((folder / name).read_bytes())  # a 3-mer model's weights
    with pytest.raises(CheckpointError, match=r"ids up to 260.*embeds only 69 tokens"):
        load_encoder(other)
    assert load_encoder(small, device="cpu").hidden_size == 16


def test_gpn_loads_through_its_package_in_a_process_that_never_imported_it(tmp_path):
    folder = gpn_layout(tmp_path / "gpn")
    sequence = "ACGTTGCAAGCTTCGACCGGTTAACATGCGTAACGGT"
    expected = own_recipe(folder, sequence)
    script = (
        "import sys, numpy as np; from genlm_sc.models import load_encoder; "
        f"e = load_encoder({str(folder)!r}, device='cpu', precision='fp32'); "
        f"np.save(sys.argv[1], e.embed([{sequence!r}])[0]); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'gpn')[:1])"
    )
    out = tmp_path / "v.npy"
    done = subprocess.run([sys.executable, "-c", script, str(out)], capture_output=True,
                          text=True, check=True)  # fmt: skip
    assert "['gpn']" in done.stdout  # imported by the loader, not by the script
    np.testing.assert_allclose(np.load(out), expected, rtol=1e-4, atol=1e-5)


def test_gpn_batches_never_pad_a_model_that_ignores_the_attention_mask(tmp_path):
    encoder = load_encoder(gpn_layout(tmp_path / "gpn"), device="cpu", precision="fp32")
    assert encoder.chunker.equal_lengths  # its convolutions would read the padding
    sequences = ["ACGTTGCAAGCTTCGACCGGTTAACATGCG", "ACGTTGCAAGCT", "TTGACCA" * 9]
    together = encoder.embed(sequences, batch_size=3)
    alone = np.stack([encoder.embed([s])[0] for s in sequences])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="ignores the attention mask"):
        encoder.chunker.pad([[3, 4, 5], [3, 4]])


def test_a_checkpoint_of_a_package_that_is_not_installed_says_which_to_install(
    tmp_path, monkeypatch
):
    from genlm_sc.models import loading

    monkeypatch.setitem(loading.PACKAGE_ARCHITECTURES, "NoSuchNet", ("no_such_dna_lm", "NSN"))
    folder = gpn_layout(tmp_path / "gpn")
    settings = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**settings, "model_type": "NoSuchNet"}))
    with pytest.raises(CheckpointError, match=r"NSN checkpoint .*pip install no_such_dna_lm"):
        load_encoder(folder)


def test_gpn_embeds_an_empty_sequence_as_zeros_and_series_by_position(tmp_path):
    import pandas as pd

    encoder = load_encoder(gpn_layout(tmp_path / "gpn"), device="cpu", precision="fp32")
    got = encoder.embed(["ACGTNNACGT", "", "ACG"])  # no special tokens: "" has no chunk
    assert (got[1] == 0).all() and np.isfinite(got).all()
    series = pd.Series(["ACGTACGTAC", "TTTTTTGGGGGGCCCC"], index=[1, 0])
    np.testing.assert_array_equal(encoder.embed(series), encoder.embed(list(series)))
