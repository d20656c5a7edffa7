"""Per-gene predictability (silhouette, cis-h²) and gene-level expression prediction."""

from __future__ import annotations

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from scipy import stats

import genlm_sc as gl
from genlm_sc.tl.expression.predictability import best_silhouette, cis_heritability
from test_embed import conv_checkpoint

plt.switch_backend("Agg")

N_EMBEDDED = 3  # example genes embedded, to keep the module fast


def simulate_dosages(h2: float, *, n: int = 500, m: int = 40, seed: int = 0):
    """Dosages of ``m`` variants and a phenotype with heritability ``h2`` on them."""
    rng = np.random.default_rng(seed)
    frequency = rng.uniform(0.05, 0.5, m)
    dosages = rng.binomial(2, frequency, size=(n, m)).astype(np.float64)
    z = (dosages - dosages.mean(0)) / dosages.std(0)
    effects = rng.normal(0, np.sqrt(h2 / m), m)
    return dosages, z @ effects + rng.normal(0, np.sqrt(1 - h2), n)


@pytest.mark.parametrize("h2", [0.0, 0.4])
def test_haseman_elston_recovers_a_planted_h2(h2):
    estimates = [cis_heritability(*simulate_dosages(h2, seed=seed)) for seed in range(8)]
    assert abs(np.mean(estimates) - h2) < 0.06
    assert np.std(estimates) < 0.12


def test_haseman_elston_equals_the_regression_over_all_pairs():
    dosages, y = simulate_dosages(0.3, n=60, m=7, seed=3)
    dosages[:, 0] = 1.0  # monomorphic: dropped
    y[[4, 9]] = np.nan  # missing: left out
    known = np.isfinite(y)
    x, phenotype = dosages[known][:, 1:], y[known]
    z = (x - x.mean(0)) / x.std(0)
    grm = z @ z.T / z.shape[1]
    phenotype = (phenotype - phenotype.mean()) / phenotype.std()
    i, j = np.triu_indices(phenotype.size, k=1)
    slope = np.polyfit(grm[i, j], phenotype[i] * phenotype[j], 1)[0]
    assert cis_heritability(dosages, y, min_maf=0) == pytest.approx(slope, rel=1e-9)
    assert np.isnan(cis_heritability(np.ones((10, 3)), np.arange(10.0)))


def test_rare_variants_are_left_out_of_the_relationship_matrix():
    dosages, y = simulate_dosages(0.4, m=2, seed=5)
    singletons = np.zeros((y.size, 2))
    singletons[[0, 1], [0, 1]] = 1
    with_rare = np.hstack([dosages, singletons])
    assert cis_heritability(with_rare, y) == pytest.approx(cis_heritability(dosages, y))
    assert cis_heritability(with_rare, y, min_maf=0) > 1.5 * cis_heritability(dosages, y)


def test_silhouette_is_high_for_planted_clusters_and_low_for_noise():
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 5, size=(4, 8))
    clustered = centres[rng.integers(0, 4, 300)] + rng.normal(0, 0.5, size=(300, 8))
    score, k = best_silhouette(clustered, n_clusters=(2, 3, 4, 5), random_state=0)
    assert score > 0.7 and k == 4
    noise, _ = best_silhouette(rng.normal(size=(300, 8)), n_clusters=(2, 3, 4, 5), random_state=0)
    assert noise < 0.3
    assert np.isnan(best_silhouette(np.ones((20, 3)), n_clusters=(2, 3))[0])


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """Simulated expression; three genes embedded by a tiny untrained model, ridge-fitted."""
    cohort = gl.datasets.example_cohort(width=256)
    gl.datasets.simulate_expression(cohort, n_causal=(1, 5), h2=(0.1, 0.5), random_state=0)
    genes = list(cohort.var_names[:N_EMBEDDED])
    model = conv_checkpoint(tmp_path_factory.mktemp("model"))
    gl.tl.embed(cohort, model=model, device="cpu", genes=genes, progress=False)
    gl.tl.fit_expression(cohort, method="ridge", genes=genes)
    return cohort, genes


def test_predictability_writes_per_gene_properties(cohort):
    cohort, genes = cohort
    gl.tl.predictability(cohort, method_key="ridge", genes=genes, n_clusters=(2, 3))
    table = gl.get.predictability(cohort)
    assert list(table.index) == genes
    assert table["silhouette"].between(-1, 1).all()
    assert table["silhouette_k"].isin([2, 3]).all()
    np.testing.assert_array_equal(table["n_haplotypes"], cohort.var.loc[genes, "n_haplotypes"])
    np.testing.assert_allclose(table["r"], cohort.var.loc[genes, "gl_ridge_r"])
    np.testing.assert_allclose(cohort.var.loc[genes, "gl_cis_h2"], table["cis_h2"])
    assert cohort.var.drop(index=genes)["gl_silhouette"].isna().all()
    correlations = cohort.uns["gl_predictability"]["correlations"]
    rho = correlations.set_index(["x", "y"])["spearman"]
    expected = stats.spearmanr(table["silhouette"], table["r"]).statistic
    assert rho[("silhouette", "r")] == pytest.approx(expected)
    assert ("cis_h2", "r") in rho.index
    assert cohort.uns["gl_predictability"]["params"]["r_column"] == "gl_ridge_r"
    assert isinstance(gl.pl.predictability(cohort), Axes)
    assert isinstance(gl.pl.predictability(cohort, x="gl_cis_h2"), Axes)
    plt.close("all")


def test_cis_h2_tracks_the_simulated_h2(cohort):
    cohort, _ = cohort
    genes = [g for g in cohort.var_names if cohort.var.loc[g, "n_haplotypes"] > 1]
    h2 = np.array([cis_heritability(*_dosages_and_expression(cohort, g)) for g in genes])
    planted = cohort.var.loc[genes, "sim_h2"].to_numpy()
    known = np.isfinite(h2)  # genes with a common cis variant
    assert known.sum() >= 8
    assert stats.spearmanr(h2[known], planted[known]).statistic > 0.8
    assert np.abs(h2[known] - planted[known]).mean() < 0.1


def _dosages_and_expression(cohort: ad.AnnData, gene: str):
    from genlm_sc.tl.expression.features import dosage_source, expression_values

    x, _ = dosage_source(cohort, window=1_000_000)(gene)
    return x, expression_values(cohort, gene)


def test_predictability_refuses_an_unknown_fit_and_a_bad_grid(cohort):
    cohort, genes = cohort
    with pytest.raises(KeyError, match="gl_nothing_r"):
        gl.tl.predictability(cohort, method_key="nothing", genes=genes)
    with pytest.raises(ValueError, match="at least 2"):
        gl.tl.predictability(cohort, n_clusters=(1, 2), genes=genes)


# --- gene level ---------------------------------------------------------------------------


def gc_panel(n: int = 600, length: int = 200, seed: int = 0) -> ad.AnnData:
    """Random sequences of varying GC content on 10 chromosomes; expression follows GC."""
    rng = np.random.default_rng(seed)
    gc = rng.uniform(0.3, 0.7, n)
    sequences = [
        "".join(rng.choice(list("ACGT"), length, p=[(1 - p) / 2, p / 2, p / 2, (1 - p) / 2]))
        for p in gc
    ]
    table = pd.DataFrame(
        {
            "sequence": sequences,
            "chrom": rng.choice([str(c) for c in range(1, 11)], n),
            "expression": 10 * gc + rng.normal(0, 0.3, n),
        },
        index=[f"gene{i}" for i in range(n)],
    )
    table.loc[table.index[:20], "expression"] = np.nan
    panel = gl.pp.sequence_panel(table)
    gl.tl.kmer_profile(panel, k=(1, 2))
    panel.obsm["X_random"] = rng.normal(size=(n, 20))
    return panel


@pytest.fixture(scope="module")
def gene_panel():
    panel = gc_panel()
    gl.tl.fit_gene_expression(panel, target="expression", use_rep="X_kmer", key_added="kmer")
    gl.tl.fit_gene_expression(panel, target="expression", use_rep="X_random", key_added="rand")
    return panel


def test_gene_level_prediction_finds_gc_content_and_not_noise(gene_panel):
    results = gene_panel.uns["gl_gene_expression"]["results"].set_index("key")
    assert results.loc["kmer", "r"] > 0.8
    assert abs(results.loc["rand", "r"]) < 0.2
    assert results.loc["kmer", "n_genes"] == 580
    assert results.loc["kmer", "n_features"] == 4 + 16
    assert results.loc["kmer", "representation"] == "X_kmer"
    assert results.loc["kmer", "target"] == "expression"
    predicted = gene_panel.obs["gl_pred_kmer"]
    assert predicted.iloc[:20].isna().all() and predicted.iloc[20:].notna().all()


def test_gene_level_folds_hold_out_whole_chromosomes(gene_panel):
    folds = gene_panel.obs["gl_fold_kmer"]
    assert (folds.iloc[:20] == -1).all()
    used = gene_panel.obs[folds >= 0]
    assert (used.groupby("chrom", observed=True)["gl_fold_kmer"].nunique() == 1).all()
    assert sorted(folds[folds >= 0].unique()) == [0, 1, 2, 3, 4]


def test_gene_level_concatenates_reps_and_fits_several_targets():
    panel = gc_panel(n=300, seed=1)
    panel.obs["shuffled"] = np.random.default_rng(0).permutation(panel.obs["expression"])
    gl.tl.fit_gene_expression(
        panel,
        target=["expression", "shuffled"],
        use_rep="X_kmer",
        extra_reps=["X_random"],
        method="elastic_net",
    )
    table = gl.get.gene_expression_results(panel)
    assert list(table["key"]) == ["X_kmer+X_random_expression", "X_kmer+X_random_shuffled"]
    assert (table["n_features"] == 4 + 16 + 20).all()
    assert table.loc[0, "r"] > 0.7
    assert table.loc[1, "r"] < 0.3
    assert "gl_pred_X_kmer+X_random_shuffled" in panel.obs
    with pytest.raises(ValueError, match="folds"):
        gl.tl.fit_gene_expression(panel, target="expression", use_rep="X_kmer", n_folds=20)
    with pytest.raises(KeyError, match="X_missing"):
        gl.tl.fit_gene_expression(panel, target="expression", use_rep="X_missing")


def test_predictability_plot_from_plain_columns():
    var = pd.DataFrame(
        {"gl_silhouette": [0.2, 0.5, 0.9, np.nan], "gl_x_r": [0.1, 0.3, 0.2, 0.5]},
        index=[f"g{i}" for i in range(4)],
    )
    adata = ad.AnnData(var=var)
    assert isinstance(gl.pl.predictability(adata, y="gl_x_r"), Axes)
    with pytest.raises(KeyError, match="method_key"):
        gl.pl.predictability(adata)
    plt.close("all")


def test_gene_level_targets_with_the_same_folds_fit_together_as_if_alone(gene_panel):
    """Targets sharing folds go through one multi-output ridge; results equal one-by-one fits."""
    panel = gene_panel.copy()
    panel.obs["noisy"] = panel.obs["expression"] + np.random.default_rng(3).normal(
        scale=2.0, size=panel.n_obs
    )
    panel.obs["gappy"] = panel.obs["expression"].where(np.arange(panel.n_obs) % 4 > 0)
    gl.tl.fit_gene_expression(
        panel, target=["expression", "noisy", "gappy"], use_rep="X_kmer", key_added="both"
    )
    together = gl.get.gene_expression_results(panel).set_index("key")
    for name in ("expression", "noisy", "gappy"):
        gl.tl.fit_gene_expression(panel, target=name, use_rep="X_kmer", key_added=f"alone_{name}")
        alone = gl.get.gene_expression_results(panel).set_index("key")
        np.testing.assert_allclose(
            panel.obs[f"gl_pred_both_{name}"], panel.obs[f"gl_pred_alone_{name}"], rtol=1e-9
        )
        assert together.loc[f"both_{name}", "r"] == pytest.approx(alone.loc[f"alone_{name}", "r"])
    assert together.loc["both_gappy", "n_genes"] < together.loc["both_noisy", "n_genes"]


def test_heritability_outside_0_1_is_flagged(cohort):
    cohort, genes = cohort
    few = cohort[:8].copy()  # unbiased estimates of 8 people stray outside [0, 1]
    with pytest.warns(UserWarning, match=r"outside \[0, 1\] for 2 gene"):
        gl.tl.predictability(few, genes=genes, n_clusters=(2,))
    table = gl.get.predictability(few)
    outside = (table["cis_h2"] < 0) | (table["cis_h2"] > 1)
    assert outside.sum() == 2 and (table["cis_h2_outside_0_1"] == outside).all()
