"""Integrated gradients and DeepLIFT-SHAP (captum) on one-hot bases: completeness,
summation to delta, agreement with ISM and gradient × input on a linear model, the
mapping to reference coordinates through an indel, determinism, refusals and plots."""

from __future__ import annotations

import itertools
from collections import Counter
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

import genlm_sc as gl
from genlm_sc._dna import BASES
from genlm_sc.models import build_tokenizer
from genlm_sc.models.heads import HaplotypeRegressor
from genlm_sc.tl.attribution.onehot import (
    OneHotScore,
    deeplift_shap,
    dinucleotide_shuffle,
    integrated_gradients,
)
from genlm_sc.tl.attribution.scorer_loading import load_scorer
from test_attribution import SEQUENCE, checkpoint, cohort_and_model, indel_gene, scorer_for

torch.set_num_threads(1)
__all__ = ["cohort_and_model"]  # the fixture, shared with test_attribution


class TinyEncoder(nn.Module):
    """Embedding → (Conv1d → ReLU → Linear → ReLU) or a linear map: DeepLIFT's rules are
    exact on it (ReLU modules, each used once), and a linear one makes every method exact."""

    def __init__(self, vocab: int, *, relu: bool, hidden: int = 8, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.config = SimpleNamespace(hidden_size=hidden)
        self.embeddings = nn.Embedding(vocab, hidden)
        self.conv = nn.Conv1d(hidden, hidden, 5, padding=2)
        self.out = nn.Linear(hidden, hidden)
        self.relu = relu
        self.act1, self.act2 = nn.ReLU(), nn.ReLU()

    def get_input_embeddings(self) -> nn.Embedding:
        return self.embeddings

    def forward(self, input_ids, attention_mask=None):
        hidden = self.embeddings(input_ids)
        if attention_mask is not None:  # padding never reaches real tokens
            hidden = hidden * attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.relu:
            hidden = self.act1(self.conv(hidden.transpose(1, 2)).transpose(1, 2))
            hidden = self.act2(self.out(hidden))
        else:
            hidden = self.out(self.conv(hidden.transpose(1, 2)).transpose(1, 2))
        return SimpleNamespace(last_hidden_state=hidden)


def tiny_scorer(*, relu: bool, seed: int = 0, max_length: int = 24):
    tokenizer = build_tokenizer("char", model_max_length=128)
    encoder = TinyEncoder(len(tokenizer), relu=relu, seed=seed)
    model = HaplotypeRegressor(encoder, tokenizer, max_length=max_length).double()
    nn.init.normal_(model.head.linear.weight, std=1.0)
    return load_scorer(model, target="expression", device="cpu")


def score_at(score: OneHotScore, bases: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return score(bases).double().numpy()


def baseline_of(score: OneHotScore, baseline: str) -> torch.Tensor:
    x = score.inputs()
    if baseline == "zeros":
        return torch.zeros_like(x)
    return 0.25 * (x.sum(-1, keepdim=True) > 0) * torch.ones_like(x)  # rows off A/C/G/T stay 0


@pytest.mark.parametrize("style", ["conv", "dnabert", "nucleotide_transformer", "bpe_bert"])
@pytest.mark.parametrize("target", ["mlm", "expression"])
def test_integrated_gradients_add_up_to_the_score_difference(tmp_path, style, target):
    # the shipped architectures (GELU, layer norm, attention) are smooth: 50 Gauss-Legendre
    # steps leave < 5e-6 of |f(x) - f(baseline)| (0.01 to 1.1 here), tolerance 1e-3
    scorer = scorer_for(checkpoint(tmp_path / style, style), target)
    sequence = SEQUENCE[:60]
    score = OneHotScore(scorer, sequence)
    assert score_at(score, score.inputs())[0] == pytest.approx(scorer.score([sequence])[0])
    for baseline in ["zeros"] if style == "bpe_bert" else ["zeros", "uniform"]:
        values, delta = integrated_gradients(score, baseline=baseline, n_steps=50)
        difference = (
            score_at(score, score.inputs())[0] - score_at(score, baseline_of(score, baseline))[0]
        )
        assert np.nansum(values) == pytest.approx(difference, abs=1e-3 * max(1, abs(difference)))
        assert delta == pytest.approx(np.nansum(values) - difference, abs=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_completeness_on_a_relu_network(seed):
    # piecewise linear: integrated gradients err by up to 1.1e-3 at 50 steps (seeds 0-3,
    # |f(x) - f(baseline)| 0.02 to 0.36), tolerance 5e-3; DeepLIFT's rescale rule is
    # exact here (sums within 1e-16 of f(x) - mean f(baselines))
    score = OneHotScore(tiny_scorer(relu=True, seed=seed), SEQUENCE[:60])
    fx = score_at(score, score.inputs())[0]
    for baseline in ("zeros", "uniform"):
        values, _ = integrated_gradients(score, baseline=baseline, n_steps=50)
        assert np.nansum(values) == pytest.approx(
            fx - score_at(score, baseline_of(score, baseline))[0], abs=5e-3
        )
    values, delta = deeplift_shap(score, n_baselines=7, random_state=seed, batch_size=9)
    from genlm_sc.tl.attribution.onehot import _references

    mean_baseline = score_at(score, _references(score, "shuffle", 7, seed)).mean()
    assert np.nansum(values) == pytest.approx(fx - mean_baseline, abs=1e-9)
    assert abs(delta) < 1e-9


def test_on_a_linear_model_every_method_is_gradient_times_the_input_difference():
    scorer = tiny_scorer(relu=False)
    sequence = SEQUENCE[:60]
    score = OneHotScore(scorer, sequence)
    gradient = scorer.base_gradients(sequence)  # constant: the model is linear in the bases
    x = score.inputs()[0].numpy()
    for baseline in ("zeros", "uniform"):
        values, _ = integrated_gradients(score, baseline=baseline, n_steps=8)
        expected = gradient * (x - baseline_of(score, baseline)[0].numpy())
        np.testing.assert_allclose(values, expected, atol=1e-10)
    from genlm_sc.tl.attribution.onehot import _references

    values, _ = deeplift_shap(score, n_baselines=5, baseline="random")
    mean = _references(score, "random", 5, 0).mean(0).numpy()
    np.testing.assert_allclose(values, gradient * (x - mean), atol=1e-10)
    # against ISM: the uniform baseline's position total is 3/4 of (minus) the mean
    # change of the three substitutions, so signs and ranks agree (ties aside) exactly
    ism = scorer.saturation_mutagenesis(sequence)
    own = np.array([BASES.index(c) for c in sequence])
    mean_change = (ism.sum(1) - ism[np.arange(len(own)), own]) / 3
    totals, _ = integrated_gradients(score, baseline="uniform", n_steps=8)
    np.testing.assert_allclose(totals.sum(1), -0.75 * mean_change, atol=1e-10)
    assert (np.sign(totals.sum(1)) == np.sign(-mean_change)).all()


def test_dinucleotide_shuffles_keep_dinucleotides_and_are_seeded():
    sequence = SEQUENCE.replace("N", "")
    rng = np.random.default_rng(3)
    shuffles = [dinucleotide_shuffle(sequence, rng=rng) for _ in range(5)]
    pairs = Counter(itertools.pairwise(sequence))
    for shuffled in shuffles:
        assert Counter(itertools.pairwise(shuffled)) == pairs
        assert shuffled[0] == sequence[0] and shuffled[-1] == sequence[-1]
    assert len(set(shuffles)) == 5 and sequence not in shuffles
    again = np.random.default_rng(3)
    assert [dinucleotide_shuffle(sequence, rng=again) for _ in range(5)] == shuffles


def test_deeplift_shap_is_deterministic_with_a_seed():
    score = OneHotScore(tiny_scorer(relu=True), SEQUENCE[:60])
    first, _ = deeplift_shap(score, n_baselines=4, random_state=5)
    again, _ = deeplift_shap(score, n_baselines=4, random_state=5, batch_size=3)  # other groups
    other, _ = deeplift_shap(score, n_baselines=4, random_state=6)
    np.testing.assert_allclose(first, again, atol=1e-12)
    assert not np.allclose(first, other)


def test_attribute_stores_captum_methods_mapped_through_indels(cohort_and_model):
    cohort, folder, _ = cohort_and_model
    gene, row = indel_gene(cohort)
    table = gl.get.unique_haplotypes(cohort, gene)
    index = int(table.index[row])
    samples = list(cohort.obs_names[:40])
    gl.tl.attribute(cohort, gene=gene, model=folder, target="mlm", samples=samples, device="cpu",
                    method="integrated_gradients", baseline="uniform", n_steps=20)  # fmt: skip
    result = gl.get.attribution(cohort, gene, key="gl_integrated_gradients_mlm")
    assert result.attrs["method"] == "integrated_gradients"
    assert result.attrs["baseline"] == "uniform" and result.attrs["n_steps"] == 20
    assert np.abs(result["convergence_delta"].values).max() < 1e-3
    label = f"haplotype_{index}"
    if label not in result["sequence"].values:
        pytest.skip("the indel haplotype is not among the first 40 people")
    sequence = table.loc[index, "sequence"]
    coords = gl.get.reference_positions(cohort, gene).values[row, : len(sequence)]
    score = OneHotScore(load_scorer(folder, target="mlm", device="cpu"), sequence)
    direct, _ = integrated_gradients(score, baseline="uniform", n_steps=20)
    column = {p: j for j, p in enumerate(result["position"].values)}
    kept = coords >= 0
    columns = [column[p] for p in coords[kept]]
    mapped = result["attribution"].sel(sequence=label).values
    np.testing.assert_allclose(mapped[columns], direct[kept], atol=1e-5, equal_nan=True)
    deleted = np.setdiff1d(np.arange(result.sizes["position"]), columns)
    assert np.isnan(mapped[deleted]).all()

    gl.tl.attribute(cohort, gene=gene, model=folder, target="mlm", method="deeplift_shap",
                    n_baselines=3, random_state=1, device="cpu")  # fmt: skip
    shap = gl.get.attribution(cohort, gene, key="gl_deeplift_shap_mlm")
    assert shap.attrs["baseline"] == "shuffle" and shap.attrs["random_state"] == 1
    assert np.isfinite(shap["convergence_delta"].values).all()


def test_refusals(tmp_path):
    panel = gl.pp.sequence_panel({"a": SEQUENCE[:40]})
    gpn = checkpoint(tmp_path / "g", "gpn")
    with pytest.raises(ValueError, match=r"no token embedding matrix.*method='ism'"):
        gl.tl.attribute(panel, gene="a", model=gpn, target="mlm", method="integrated_gradients")
    bpe = checkpoint(tmp_path / "b", "bpe_bert")
    with pytest.raises(ValueError, match="single-base or k-mer"):
        gl.tl.attribute(panel, gene="a", model=bpe, target="mlm", method="deeplift_shap")
    with pytest.raises(ValueError, match="baseline= applies"):
        gl.tl.attribute(panel, gene="a", model=bpe, target="mlm", baseline="zeros")
    with pytest.raises(ValueError, match="baseline must be one of"):
        gl.tl.attribute(panel, gene="a", model=bpe, target="mlm",
                        method="integrated_gradients", baseline="shuffle")  # fmt: skip


def test_plots_draw_captum_attributions(cohort_and_model, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cohort, folder, _ = cohort_and_model
    gene = cohort.var_names[3]
    gl.tl.attribute(cohort, gene=gene, model=folder, target="mlm", device="cpu",
                    method="integrated_gradients", baseline="uniform", key_added="ig")  # fmt: skip
    result = gl.get.attribution(cohort, gene, key="ig")
    center = int(result["position"].values[100])
    ax = gl.pl.attribution(cohort, gene=gene, key="ig", center=center, flank=15)
    assert 20 <= len(ax.patches) <= 31
    assert ax.get_ylabel() == "integrated gradients\n(uniform baseline, mlm)"
    ax.figure.savefig(tmp_path / "ig.png", dpi=110, bbox_inches="tight")
    ax = gl.pl.ism(result, center=center, flank=15)
    assert ax.images[0].get_array().shape == (4, 31)
    assert "integrated gradients" in ax.get_title()
    ax.figure.savefig(tmp_path / "ig_heatmap.png", dpi=110, bbox_inches="tight")
    plt.close("all")


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A sequence classifier of three classes on a tiny checkpoint, its head at random."""
    from genlm_sc.models.heads import SequenceClassifier

    loaded = gl.models.load_encoder(
        checkpoint(tmp_path_factory.mktemp("clf") / "conv", "conv"), device="cpu",
        precision="fp32",
    )  # fmt: skip
    model = SequenceClassifier(loaded.model, loaded.tokenizer, max_length=24,
                               classes=["a", "b", "c"], dropout=0.0).eval()  # fmt: skip
    torch.manual_seed(0)
    nn.init.normal_(model.head.linear.weight, std=1.0)
    return model


def test_a_classifier_scores_the_log_probability_of_its_label(classifier):
    from test_attribution import brute_force_ism

    sequence = SEQUENCE[:60]
    expected = np.log(classifier.predict_proba([sequence]))[0]
    for i, label in enumerate(["a", "b", "c"]):
        scorer = load_scorer(classifier, target="classification", label=label, device="cpu")
        assert scorer.score([sequence])[0] == pytest.approx(expected[i], abs=1e-5)
    scorer = load_scorer(classifier, target="classification", device="cpu")
    assert scorer.label == "c"  # the last class by default
    expected_ism = brute_force_ism(scorer, sequence)  # float32 encoder: rounding-level
    np.testing.assert_allclose(scorer.saturation_mutagenesis(sequence), expected_ism,
                               atol=1e-5 * max(np.nanmax(np.abs(expected_ism)), 1))  # fmt: skip
    score = OneHotScore(scorer, sequence)
    values, _ = integrated_gradients(score, baseline="zeros", n_steps=50)
    difference = (
        score_at(score, score.inputs())[0] - score_at(score, baseline_of(score, "zeros"))[0]
    )
    assert np.nansum(values) == pytest.approx(difference, abs=1e-3 * max(1, abs(difference)))
    with pytest.raises(ValueError, match="not a class"):
        load_scorer(classifier, target="classification", label="z", device="cpu")
    with pytest.raises(ValueError, match="label= applies"):
        load_scorer(classifier, target="mlm", label="a", device="cpu")


def test_attribute_explains_a_classifier_on_a_sequence_panel(classifier):
    import pandas as pd

    table = pd.DataFrame({"sequence": [SEQUENCE[:40], SEQUENCE[40:80]]}, index=["s0", "s1"])
    panel = gl.pp.sequence_panel(table)
    for method in ("ism", "integrated_gradients"):
        gl.tl.attribute(panel, gene="s1", model=classifier, method=method,
                        target="classification", label="b", device="cpu")  # fmt: skip
        ds = gl.get.attribution(panel, "s1", key=f"gl_{method}_classification")
        assert ds.attrs["label"] == "b" and ds.attrs["target"] == "classification"
        scorer = load_scorer(classifier, target="classification", label="b", device="cpu")
        assert float(ds["score"][0]) == pytest.approx(scorer.score([SEQUENCE[40:80]])[0])
        assert np.isfinite(ds["attribution"].values).any()
