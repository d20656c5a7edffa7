"""Attributions: ISM against brute force, gradients against finite differences, the
mapping of haplotype bases to reference coordinates, and storage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import genlm_sc as gl
from genlm_sc._dna import BASES
from genlm_sc.tl.attribution.scorer_loading import load_scorer
from test_embed import conv_checkpoint, third_party_checkpoint
from test_finetune import regressor

torch.set_num_threads(1)
RNG = np.random.default_rng(0)
SEQUENCE = "".join(RNG.choice(list(BASES), 70)) + "N" + "".join(RNG.choice(list(BASES), 25))
STYLES = ["conv", "dnabert", "nucleotide_transformer", "bpe_bert", "gpn"]


def checkpoint(folder, style):
    return conv_checkpoint(folder) if style == "conv" else third_party_checkpoint(folder, style)[0]


def scorer_for(folder, target, *, max_length=24):
    model = folder if target == "mlm" else regressor(folder, strategy="prune").eval()
    scorer = load_scorer(model, target=target, device="cpu")
    scorer.chunker.max_length = max_length  # several chunks per sequence
    return scorer


def brute_force_ism(scorer, sequence):
    """One full scoring per mutant, on a scorer without cache."""
    scorer._cache.clear()
    out = np.full((len(sequence), 4), np.nan)
    mutants, where = [], []
    for i, letter in enumerate(sequence):
        if letter not in BASES:
            continue
        out[i] = 0.0
        for b, other in enumerate(BASES):
            if other != letter:
                mutants.append(sequence[:i] + other + sequence[i + 1 :])
                where.append((i, b))
    scores = scorer.score([*mutants, sequence])
    for (i, b), value in zip(where, scores[:-1], strict=True):
        out[i, b] = value - scores[-1]
    return out


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("target", ["mlm", "expression"])
def test_ism_equals_one_forward_pass_per_mutant(tmp_path, style, target):
    scorer = scorer_for(checkpoint(tmp_path / style, style), target)
    ism = scorer.saturation_mutagenesis(SEQUENCE, batch_size=7)
    expected = brute_force_ism(scorer, SEQUENCE)
    np.testing.assert_array_equal(np.isnan(ism), np.isnan(expected))
    assert np.isnan(ism[SEQUENCE.index("N")]).all()
    scale = np.nanmax(np.abs(expected))
    assert scale > 0
    np.testing.assert_allclose(ism, expected, atol=1e-5 * max(scale, 1), equal_nan=True)
    own = [BASES.index(c) for c in SEQUENCE if c in BASES]
    assert (ism[[i for i, c in enumerate(SEQUENCE) if c in BASES], own] == 0).all()


def test_ism_runs_only_the_chunks_a_mutant_changes_and_reuses_them(tmp_path):
    scorer = scorer_for(checkpoint(tmp_path / "c", "conv"), "mlm", max_length=26)  # 24 bases
    sequence = SEQUENCE.replace("N", "A")[:72]  # three chunks of 24 bases
    scorer.saturation_mutagenesis(sequence)
    assert scorer.n_chunks_evaluated == 3 + 3 * 72  # own chunks + one chunk per mutant
    variant = sequence[:60] + ("A" if sequence[60] != "A" else "C") + sequence[61:]
    scorer.saturation_mutagenesis(variant)  # differs in the last chunk only
    # its own last chunk and its three edits at position 60 are mutants seen before
    assert scorer.n_chunks_evaluated == 3 + 3 * 72 + 3 * 24 - 3


def onehot_inputs(scorer, sequence):
    ids, _, _ = scorer.chunker.pad(scorer.chunker.chunk_ids(sequence))
    return torch.nn.functional.one_hot(ids, scorer.embeddings.num_embeddings).double()


@pytest.mark.parametrize("style", ["conv", "dnabert", "nucleotide_transformer"])
@pytest.mark.parametrize("target", ["mlm", "expression"])
def test_base_gradients_equal_finite_differences(tmp_path, style, target):
    scorer = scorer_for(checkpoint(tmp_path / style, style), target)
    scorer.network.double()
    sequence = SEQUENCE[:60]
    gradients = scorer.base_gradients(sequence)
    spans, chunk_of, column_of = scorer.token_layout(sequence)
    base = onehot_inputs(scorer, sequence)
    eps = 1e-4
    for i in (0, 11, 22, 23, 24, 45, 59):  # chunk edges included
        own = BASES.index(sequence[i])
        for b in range(4):
            if b == own:
                continue
            step = torch.zeros_like(base)  # move base i from its letter towards letter b
            for t, (start, end) in enumerate(spans):
                if start <= i < end:
                    text = sequence[start:end]
                    mutant = text[: i - start] + BASES[b] + text[i - start + 1 :]
                    step[chunk_of[t], column_of[t], scorer._vocab[text]] -= 1
                    step[chunk_of[t], column_of[t], scorer._vocab[mutant]] += 1
            plus = scorer.score_onehot(sequence, base + eps * step)
            minus = scorer.score_onehot(sequence, base - eps * step)
            derivative = (plus - minus) / (2 * eps)
            expected = gradients[i, b] - gradients[i, own]
            assert derivative == pytest.approx(expected, rel=1e-4, abs=1e-8)


def test_bpe_gradients_are_shared_over_a_tokens_bases(tmp_path):
    scorer = scorer_for(checkpoint(tmp_path / "b", "bpe_bert"), "mlm", max_length=512)
    sequence = SEQUENCE[:40]
    gradients = scorer.base_gradients(sequence)
    own = np.array([BASES.index(c) for c in sequence])
    at_own = gradients[np.arange(40), own]
    assert np.isfinite(at_own).all()
    others = gradients.copy()
    others[np.arange(40), own] = np.nan
    assert np.isnan(others).all()
    spans, _, _ = scorer.token_layout(sequence)
    long = next((s, e) for s, e in spans if e - s > 1)
    assert np.allclose(at_own[long[0] : long[1]], at_own[long[0]])


@pytest.fixture(scope="module")
def cohort_and_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("attr")
    cohort = gl.datasets.example_cohort(width=200)
    return cohort, conv_checkpoint(root / "m"), root


def indel_gene(cohort):
    """A gene with a haplotype carrying an indel (some base without a reference position)."""
    for gene in cohort.var_names:
        positions = gl.get.reference_positions(cohort, gene).values
        lengths = gl.get.unique_haplotypes(cohort, gene)["length"].to_numpy()
        for row, n in enumerate(lengths):
            if n != 200 or (positions[row, :n] < 0).any():
                return gene, row
    pytest.skip("no indel haplotype in the example")


def test_attribute_maps_haplotype_bases_to_the_reference(cohort_and_model):
    cohort, folder, _ = cohort_and_model
    gene, row = indel_gene(cohort)
    table = gl.get.unique_haplotypes(cohort, gene)
    index = int(table.index[row])
    carrier = gl.get.haplotypes(cohort, gene)
    samples = carrier.index[
        (carrier["haplotype_1"] == table.loc[index, "sequence"])
        | (carrier["haplotype_2"] == table.loc[index, "sequence"])
    ][:3].tolist()
    gl.tl.attribute(cohort, gene=gene, model=folder, target="mlm", samples=samples, device="cpu")
    result = gl.get.attribution(cohort, gene, key="gl_ism_mlm")
    reference = gl.get.sequences(cohort[:, [gene]])[gene]
    assert bytes(result["observed"].sel(sequence="reference").values).decode() == reference
    strand = cohort.var.loc[gene, "strand"]
    positions = result["position"].values
    assert (np.diff(positions) == (-1 if strand == "-" else 1)).all()

    label = f"haplotype_{index}"
    sequence = table.loc[index, "sequence"]
    coords = gl.get.reference_positions(cohort, gene).values[row, : len(sequence)]
    direct = load_scorer(folder, target="mlm", device="cpu").saturation_mutagenesis(sequence)
    mapped = result["attribution"].sel(sequence=label).values
    kept = coords >= 0
    column = {p: j for j, p in enumerate(positions)}
    columns = [column[p] for p in coords[kept]]
    np.testing.assert_allclose(mapped[columns], direct[kept], atol=1e-4, equal_nan=True)
    deleted = np.setdiff1d(np.arange(len(positions)), columns)
    assert np.isnan(mapped[deleted]).all()
    assert (result["observed"].sel(sequence=label).values[deleted] == 0).all()
    assert result["carriers"].sel(sequence=label) > 0
    person = result["sample_sequence"].sel(sample=samples[0]).values
    assert label in set(result["sequence"].values[person])

    again = gl.get.attribution(cohort, gene, key="gl_ism_mlm")
    assert again.identical(result)


def test_ism_of_a_region_equals_that_part_of_the_full_ism(cohort_and_model):
    cohort, folder, _ = cohort_and_model
    gene, _ = indel_gene(cohort)
    samples = list(cohort.obs_names[:40])
    gl.tl.attribute(cohort, gene=gene, model=folder, target="mlm", samples=samples,
                           device="cpu", key_added="full")  # fmt: skip
    full = gl.get.attribution(cohort, gene, key="full")
    positions = np.sort(full["position"].values)
    region = (int(positions[50]), int(positions[90]))
    gl.tl.attribute(cohort, gene=gene, model=folder, target="mlm", samples=samples,
                           device="cpu", region=region, key_added="part")  # fmt: skip
    part = gl.get.attribution(cohort, gene, key="part")
    inside = (full["position"] >= region[0]) & (full["position"] < region[1])
    np.testing.assert_allclose(part["attribution"].where(inside, drop=True),
                               full["attribution"].where(inside, drop=True), atol=1e-5)  # fmt: skip
    outside = part["attribution"].where(~inside, drop=True).values
    assert np.isnan(outside).all() and part.attrs["region"] == f"{region[0]}-{region[1]}"


def test_grad_x_input_is_the_gradient_at_the_own_base(cohort_and_model):
    cohort, folder, _ = cohort_and_model
    gene = cohort.var_names[0]
    gl.tl.attribute(
        cohort, gene=gene, model=folder, method="grad_x_input", target="mlm", device="cpu"
    )
    result = gl.get.attribution(cohort, gene, key="gl_grad_x_input_mlm")
    values = result["attribution"].sel(sequence="reference").values
    sequence = gl.get.sequences(cohort[:, [gene]])[gene]
    gradients = load_scorer(folder, target="mlm", device="cpu").base_gradients(sequence)
    own = np.array([BASES.index(c) for c in sequence])
    rows = np.arange(len(own))
    np.testing.assert_allclose(values[rows, own], gradients[rows, own], rtol=1e-5, atol=1e-7)
    assert (np.count_nonzero(values, axis=1) <= 1).all()
    assert gl.get.attribution(cohort, gene, key="gl_grad_x_input_mlm").identical(result)


def test_attributions_travel_with_an_on_disk_store(cohort_and_model):
    cohort, folder, root = cohort_and_model
    gl.write(cohort, root / "cohort.zarr")
    on_disk = gl.read(root / "cohort.zarr")
    gene = on_disk.var_names[1]
    gl.tl.attribute(on_disk, gene=gene, model=folder, target="mlm", device="cpu")
    result = gl.get.attribution(on_disk, gene, key="gl_ism_mlm")
    assert (root / "cohort.zarr" / "results" / "gl_ism_mlm").is_dir()
    gl.write(on_disk, root / "copy.zarr")  # copies the results group too
    copied = gl.read(root / "copy.zarr")
    assert gl.get.attribution(copied, gene, key="gl_ism_mlm").equals(result)
    with pytest.raises(KeyError, match="compute it first"):
        gl.get.attribution(copied, on_disk.var_names[2], key="gl_ism_mlm")


def test_panels_are_attributed_on_their_windows(tmp_path):
    panel = gl.pp.sequence_panel({"a": SEQUENCE[:50], "b": SEQUENCE[:30]})
    gl.tl.attribute(
        panel, gene="b", model=conv_checkpoint(tmp_path / "m"), target="mlm", device="cpu"
    )
    result = gl.get.attribution(panel, "b", key="gl_ism_mlm")
    assert result.sizes["position"] == 30 and list(result["sequence"].values) == ["reference"]
    assert gl.get.attribution(panel, "b", key="gl_ism_mlm").identical(result)
    with pytest.raises(ValueError, match="cohort"):
        gl.tl.attribute(panel, gene="a", model=tmp_path / "m", target="mlm", samples=["x"])
    with pytest.raises(ValueError, match="method"):
        gl.tl.attribute(panel, gene="a", model=tmp_path / "m", target="mlm", method="saliency")


def test_plots_draw_the_stored_attributions(cohort_and_model):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cohort, folder, _ = cohort_and_model
    gene = cohort.var_names[3]
    gl.tl.attribute(cohort, gene=gene, model=folder, target="mlm", device="cpu",
                             key_added="plotted")  # fmt: skip
    result = gl.get.attribution(cohort, gene, key="plotted")
    center = int(result["position"].values[100])
    ax = gl.pl.attribution(cohort, gene=gene, key="plotted", center=center, flank=10)
    assert 15 <= len(ax.patches) <= 4 * 21  # a glyph per base in view with a height
    assert "ISM importance" in ax.get_ylabel()
    ax = gl.pl.ism(result, center=center, flank=10)
    assert ax.images[0].get_array().shape == (4, 21)
    plt.close("all")
    gl.tl.variant_effects(cohort, gene=gene, model=folder, device="cpu")
    table = gl.get.variant_effects(cohort, gene)
    ax = gl.pl.variant_effects(cohort, gene=gene, x="llr_masked", y="llr_one_pass")
    n_points = sum(len(c.get_offsets()) for c in ax.collections)
    assert n_points == int(np.isfinite(table["llr_masked"]).sum())
    with pytest.raises(KeyError, match="no column"):
        gl.pl.variant_effects(table, x="delta_expression")
    plt.close("all")


def test_gradients_of_a_model_without_token_embeddings_are_refused(tmp_path):
    scorer = scorer_for(checkpoint(tmp_path / "g", "gpn"), "mlm")  # one-hot bases, no matrix
    with pytest.raises(ValueError, match=r"no token embedding matrix.*method='ism'"):
        scorer.base_gradients(SEQUENCE[:30])
