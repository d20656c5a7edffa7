"""Attention maps per base (gl.tl.attention, gl.get.attention, gl.pl.attention)."""

from __future__ import annotations

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM, BertTokenizerFast

import genlm_sc as gl
from genlm_sc.models import build_tokenizer
from published_layouts import dnabert_layout
from test_embed import conv_checkpoint

SEQUENCE = "ACGTTGCAAGGCTTACGATCGGATCCA"


def tiny_bert(*, layers: int, heads: int, context: int) -> tuple[BertForMaskedLM, object]:
    """A random BERT with genlm_sc's character tokenizer (one token per base)."""
    torch.manual_seed(0)
    tokenizer = build_tokenizer("char", model_max_length=context)
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=16, num_hidden_layers=layers,
                        num_attention_heads=heads, intermediate_size=32,
                        max_position_embeddings=context)  # fmt: skip
    return BertForMaskedLM(config).eval(), tokenizer


def direct_attention(folder, sequence: str, k: int) -> np.ndarray:
    """(layers, heads, tokens, tokens) attention of DNABERT's own recipe: the sequence as
    space-separated overlapping k-mers, the model run with eager attention."""
    tokenizer = BertTokenizerFast.from_pretrained(folder)
    text = " ".join(sequence[i : i + k] for i in range(len(sequence) - k + 1))
    encoded = tokenizer(text, return_tensors="pt", return_token_type_ids=False)
    model = AutoModelForMaskedLM.from_pretrained(folder, attn_implementation="eager").eval()
    with torch.inference_mode():
        found = model(**encoded, output_attentions=True).attentions
    return torch.stack([a[0] for a in found]).numpy()


def spread_by_loops(weights: np.ndarray, n: int, k: int) -> np.ndarray:
    """Base × base attention written out: token t (after [CLS]) covers bases t..t+k-1; a
    query base averages the rows of its tokens, a key token's weight is split over its k
    bases."""
    n_tokens = n - k + 1
    covering = [[t for t in range(n_tokens) if t <= i < t + k] for i in range(n)]
    out = np.zeros((*weights.shape[:2], n, n))
    for i in range(n):
        for j in range(n):
            total = 0.0
            for q in covering[i]:
                for s in covering[j]:
                    total = total + weights[..., 1 + q, 1 + s] / k
            out[..., i, j] = total / len(covering[i])
    return out


def test_kmer_attention_is_spread_over_bases_as_computed_directly(tmp_path):
    folder = dnabert_layout(tmp_path / "dnabert3", k=3)
    panel = gl.pp.sequence_panel({"s": SEQUENCE})
    gl.tl.attention(panel, gene="s", model=folder, device="cpu")
    result = gl.get.attention(panel, "s")
    n = len(SEQUENCE)
    assert result["attention"].shape == (2, 2, n, n)  # 2 layers × 2 heads (TINY)
    direct = direct_attention(folder, SEQUENCE, 3)
    np.testing.assert_allclose(result["attention"].values, spread_by_loops(direct, n, 3),
                               rtol=1e-4, atol=1e-6)  # fmt: skip
    # each query base's attention to bases and to [CLS]/[SEP] sums to one
    total = result["attention"].sum("key") + result["special"]
    np.testing.assert_allclose(total.values, 1.0, atol=1e-5)
    assert bytes(result["observed"].values).decode() == SEQUENCE
    assert not result["variant"].values.any()


def test_character_tokens_give_the_token_attention_itself(tmp_path):
    model, tokenizer = tiny_bert(layers=3, heads=4, context=64)
    panel = gl.pp.sequence_panel({"s": SEQUENCE})
    gl.tl.attention(panel, gene="s", model=(model, tokenizer), layers=[0, 2], device="cpu")
    result = gl.get.attention(panel, "s")
    ids = tokenizer(SEQUENCE, return_tensors="pt")
    model.set_attn_implementation("eager")
    with torch.inference_mode():
        found = model(**ids, output_attentions=True).attentions
    direct = torch.stack([found[0][0], found[2][0]]).numpy()
    assert list(result["layer"].values) == [0, 2]
    np.testing.assert_allclose(result["attention"].values, direct[:, :, 1:-1, 1:-1], atol=1e-6)
    np.testing.assert_allclose(result["special"].values,
                               direct[:, :, 1:-1, [0, -1]].sum(-1), atol=1e-6)  # fmt: skip
    # the caller's model is left with the attention implementation it had
    assert model.config._attn_implementation == "eager"


def test_models_without_attention_and_too_long_regions_are_errors(tmp_path):
    panel = gl.pp.sequence_panel({"s": SEQUENCE, "long": "ACGT" * 40})
    with pytest.raises(ValueError, match="no attention weights"):
        gl.tl.attention(panel, gene="s", model=conv_checkpoint(tmp_path / "conv"), device="cpu")
    pair = tiny_bert(layers=1, heads=2, context=64)
    with pytest.raises(ValueError, match="smaller region"):
        gl.tl.attention(panel, gene="long", model=pair, device="cpu")
    gl.tl.attention(panel, gene="long", model=pair, region=(10, 50), device="cpu")
    result = gl.get.attention(panel, "long")
    assert result.sizes["query"] == 40
    assert result["position"].values.tolist() == list(range(10, 50))


def test_a_haplotype_around_a_variant_is_stored_marked_and_drawn(tmp_path):
    cohort = gl.datasets.example_cohort(width=64)
    store = gl.get.haplotype_store(cohort)
    table = None
    for gene in cohort.var_names:  # a gene with an SNV carried by someone
        table = gl.get.haplotypes(cohort, gene)
        reference = gl.get.sequences(cohort[:, [gene]])[gene]
        differs = [
            (sample, h)
            for sample, row in table.iterrows()
            for h, sequence in enumerate(row)
            if len(sequence) == len(reference) and sequence != reference
        ]
        if differs:
            break
    sample, haplotype = differs[0]
    gl.tl.attention(cohort, gene=gene, model=tiny_bert(layers=1, heads=2, context=128),
                    sample=sample, haplotype=haplotype, device="cpu")  # fmt: skip
    result = gl.get.attention(cohort, gene)
    sequence = table.loc[sample].iloc[haplotype]
    assert bytes(result["observed"].values).decode() == sequence
    expected = np.frombuffer(sequence.encode(), np.uint8) != np.frombuffer(
        reference.encode(), np.uint8
    )
    np.testing.assert_array_equal(result["variant"].values, expected)
    assert result.attrs["sample"] == sample
    g = int(np.flatnonzero(store["gene"].values == gene)[0])
    sites = store["variant_position"].values[store["variant_gene"].values == g]
    assert set(result["position"].values[expected]) <= set(sites)
    centre = int(result["position"].values[np.flatnonzero(expected)[0]])
    matplotlib.use("Agg")
    motifs = pd.DataFrame({"start": [centre - 3], "end": [centre + 3], "motif_name": ["X"]})
    ax = gl.pl.attention(cohort, gene=gene, layer=0, head="mean", motifs=motifs)
    assert ax.get_images() and len(ax.patches) == 1
    assert "layer 0" in ax.get_title()
