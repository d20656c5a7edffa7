"""Expression prediction: PrediXcan on dosages, regressions on embeddings, shared folds."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes
from sklearn.linear_model import LinearRegression

import genlm_sc as gl
from conftest import SHARED, needs_shared, write_fasta, write_vcf
from genlm_sc.tl.expression.features import dosage_source
from genlm_sc.tl.expression.regressions import embedding_model
from test_embed import conv_checkpoint

plt.switch_backend("Agg")

N_GENES = 10  # of the 30 example genes, to keep the module fast
GEUVADIS = SHARED / "expression" / "geuvadis_chr19_ceu"


def fresh(cohort: ad.AnnData) -> ad.AnnData:
    """A copy without folds or fits (the haplotype store and the simulated truth are kept)."""
    copy = cohort.copy()
    copy.obs = copy.obs.drop(columns=["gl_fold"], errors="ignore")
    copy.uns.pop("gl_expression", None)
    for name in set(copy.layers) - {"sim_genetic_value"}:
        del copy.layers[name]
    return copy


@pytest.fixture(scope="module")
def simulated():
    """503 people × 30 genes, expression simulated (h2 0.1–0.5, 1–5 causal variants)."""
    cohort = gl.datasets.example_cohort()
    gl.datasets.simulate_expression(cohort, n_causal=(1, 5), h2=(0.1, 0.5), random_state=0)
    return cohort


@pytest.fixture(scope="module")
def predixcan(simulated):
    """PrediXcan fitted on the first genes of the simulated cohort."""
    cohort = fresh(simulated)
    gl.tl.fit_expression(cohort, method="predixcan", genes=list(cohort.var_names[:N_GENES]))
    table = gl.get.expression_results(cohort)
    return cohort, table


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    """256-bp windows embedded by a tiny untrained model; every method fitted on 3 genes."""
    cohort = gl.datasets.example_cohort(width=256)
    gl.datasets.simulate_expression(cohort, n_causal=(1, 5), h2=(0.1, 0.5), random_state=0)
    genes = list(cohort.var_names[:3])
    model = conv_checkpoint(tmp_path_factory.mktemp("model"))
    gl.tl.embed(cohort, model=model, device="cpu", genes=genes, progress=False)
    folds = {}
    for method, options in [("predixcan", {}), ("elastic_net", {"n_pcs": 8}), ("ridge", {})]:
        gl.tl.fit_expression(cohort, method=method, genes=genes, **options)
        folds[method] = cohort.obs["gl_fold"].to_numpy().copy()
    return cohort, genes, folds


def test_predixcan_comes_close_to_the_oracle_on_simulated_expression(predixcan):
    cohort, table = predixcan
    fitted = cohort.var_names[:N_GENES]
    heritable = cohort.var.loc[fitted, "sim_h2"].to_numpy() >= 0.1
    assert heritable.sum() >= 5
    r = cohort.var.loc[fitted, "gl_predixcan_r"].to_numpy()
    oracle = table["oracle_r"].to_numpy()
    assert np.nanmean(r[heritable]) >= 0.8 * oracle[heritable].mean()
    assert np.all(r[heritable] > 0.2)

    pred = cohort.layers["gl_pred_predixcan"]
    assert pred.shape == cohort.shape
    assert np.isfinite(pred[:, :N_GENES]).all()  # every person is tested once
    assert np.isnan(pred[:, N_GENES:]).all()  # genes not fitted
    assert cohort.var["gl_predixcan_r"].iloc[N_GENES:].isna().all()
    assert list(table["gene"]) == list(fitted)
    assert (table["method"] == "predixcan").all()
    assert (table["n_test"] == cohort.n_obs).all() and (table["n_folds"] == 5).all()
    assert table["n_train"].between(400, 404).all()
    np.testing.assert_allclose(table["r"], r)
    assert (table["n_features"] <= cohort.var.loc[fitted, "n_variants"].to_numpy()).all()


def oracle_of(cohort: ad.AnnData, gene: str, people: np.ndarray, observed=None) -> float:
    """corr(true genetic value, expression) of one gene over ``people``."""
    g = cohort.var_names.get_loc(gene)
    observed = cohort.X[:, g] if observed is None else observed
    return np.corrcoef(cohort.layers["sim_genetic_value"][people, g], observed[people])[0, 1]


def test_oracle_is_the_genetic_value_scored_in_the_same_people(predixcan):
    cohort, table = predixcan
    scored = np.isfinite(cohort.layers["gl_pred_predixcan"])
    for row in table.itertuples():
        people = scored[:, cohort.var_names.get_loc(row.gene)]
        if cohort.var.loc[row.gene, "sim_n_causal"]:
            assert row.oracle_r == pytest.approx(oracle_of(cohort, row.gene, people), abs=1e-6)
        else:
            assert row.oracle_r == 0.0  # nothing heritable to predict
    # out of fold, predictions from genotypes rarely beat the true genetic value
    planted = table["gene"].map(cohort.var["sim_n_causal"]).to_numpy() > 0
    assert (table["oracle_r"] >= table["r"])[planted].mean() >= 0.7


def test_oracle_is_nan_without_a_genetic_value(simulated):
    cohort = fresh(simulated)
    del cohort.layers["sim_genetic_value"]
    gl.tl.fit_expression(cohort, method="predixcan", genes=[cohort.var_names[0]])
    assert np.isnan(gl.get.expression_results(cohort)["oracle_r"]).all()


def test_predixcan_weights_name_the_causal_variants(predixcan):
    cohort, _ = predixcan
    weights = cohort.uns["gl_expression"]["weights"]["predixcan"]
    assert set(weights.columns) == {"gene", "feature", "weight"}
    assert (weights["weight"] != 0).all()
    causal = cohort.uns["gl_simulation"]["causal_variants"]
    causal = causal[causal["gene"].isin(cohort.var_names[:N_GENES])]
    strongest = causal.loc[causal["effect"].abs().groupby(causal["gene"]).idxmax()]
    found = [
        ((weights["gene"] == row.gene) & (weights["feature"] == row.variant_id)).any()
        for row in strongest.itertuples()
    ]
    assert np.mean(found) >= 0.8


def test_every_method_uses_the_same_folds(embedded):
    cohort, genes, folds = embedded
    np.testing.assert_array_equal(folds["predixcan"], folds["elastic_net"])
    np.testing.assert_array_equal(folds["predixcan"], folds["ridge"])
    assert sorted(np.bincount(folds["predixcan"])) == [100, 100, 101, 101, 101]
    assert cohort.uns["gl_expression"]["folds"]["n_folds"] == 5
    with pytest.raises(ValueError, match="same folds"):
        gl.tl.fit_expression(cohort, method="ridge", genes=genes[:1], n_folds=3)

    # folds set by hand are used as given: people in fold -1 are never tested
    custom = fresh(cohort)
    custom.obs["gl_fold"] = np.where(np.arange(custom.n_obs) < 100, -1, folds["ridge"])
    for method in ("predixcan", "ridge"):
        gl.tl.fit_expression(custom, method=method, genes=genes[:1])
        pred = custom.layers[f"gl_pred_{method}"][:, 0]
        assert np.isnan(pred[:100]).all() and np.isfinite(pred[100:]).all()


def test_embedding_methods_write_their_outputs(embedded, tmp_path):
    cohort, genes, _ = embedded
    table = cohort.uns["gl_expression"]["results"]
    assert len(table) == 9
    assert list(pd.unique(table["method"])) == ["predixcan", "elastic_net", "ridge"]
    rows = table.set_index(["method", "gene"])
    assert (rows.loc["elastic_net", "n_features"] == 8).all()  # n_pcs
    assert (rows.loc["ridge", "n_features"] == 32).all()  # 2 haplotypes × 16 dims
    for method in ("elastic_net", "ridge"):
        pred = cohort.layers[f"gl_pred_{method}"]
        assert np.isfinite(pred[:, :3]).all() and np.isnan(pred[:, 3:]).all()
        assert np.isfinite(cohort.var.loc[genes, f"gl_{method}_r"]).all()
        assert cohort.var.loc[genes, f"gl_{method}_r2"].le(1).all()
    params = cohort.uns["gl_expression"]["params"]
    assert params["elastic_net"]["n_pcs"] == 8 and params["ridge"]["use_rep"] == "X_gl"

    # a refit replaces its rows instead of adding more
    gl.tl.fit_expression(cohort, method="ridge", genes=genes[:1])
    again = gl.get.expression_results(cohort)
    assert len(again) == 9

    path = tmp_path / "fits.h5ad"
    cohort.write_h5ad(path)
    back = ad.read_h5ad(path)
    pd.testing.assert_frame_equal(
        back.uns["gl_expression"]["results"].reset_index(drop=True),
        cohort.uns["gl_expression"]["results"].reset_index(drop=True),
        check_dtype=False,
    )
    np.testing.assert_array_equal(back.layers["gl_pred_ridge"], cohort.layers["gl_pred_ridge"])
    np.testing.assert_array_equal(back.obs["gl_fold"], cohort.obs["gl_fold"])


def test_pca_of_rank_deficient_embeddings_converges():
    """400 people × 128 features of 87 distinct rows (rank 39): one training fold of the
    embeddings of a simulated cohort on which PCA's "full" solver (LAPACK gesdd) fails to
    converge with this project's OpenBLAS build."""
    data = np.load(Path(__file__).parent / "data" / "rank_deficient_embeddings.npz")
    x = data["rows"][data["index"]].astype(np.float64)
    signal = ((x - x.mean(axis=0)) / x.std(axis=0))[:, :3].sum(axis=1)
    y = signal + np.random.default_rng(0).normal(size=x.shape[0]) * signal.std()
    for method in ("elastic_net", "ridge"):
        model = embedding_model(method, n_features=x.shape[1], n_pcs=20, random_state=1)()
        assert np.corrcoef(model.fit(x, y).predict(x), y)[0, 1] > 0.5


def test_split_by_population_trains_on_the_others_and_tests_on_fin(simulated):
    cohort = fresh(simulated)
    genes = list(cohort.var_names[:2])
    gl.tl.fit_expression(
        cohort, method="predixcan", genes=genes, folds_by="population", test_groups=["FIN"]
    )
    table = gl.get.expression_results(cohort)
    fin = (cohort.obs["population"] == "FIN").to_numpy()
    pred = cohort.layers["gl_pred_predixcan"][:, :2]
    assert np.isfinite(pred[fin]).all() and np.isnan(pred[~fin]).all()
    np.testing.assert_array_equal(cohort.obs["gl_fold"], np.where(fin, 0, -1))
    assert (table["n_test"] == fin.sum()).all() and (table["n_train"] == (~fin).sum()).all()
    assert (table["n_folds"] == 1).all()
    for row in table.itertuples():  # the oracle of the Finns, not of everyone
        assert row.oracle_r == pytest.approx(oracle_of(cohort, row.gene, fin), abs=1e-6)

    # without test groups: leave one population out
    logo = fresh(simulated)
    gl.tl.fit_expression(logo, method="predixcan", genes=genes[:1], folds_by="population")
    table = gl.get.expression_results(logo)
    assert table["n_folds"].item() == 5 and table["n_test"].item() == logo.n_obs
    for _, folds in logo.obs.groupby("population", observed=True)["gl_fold"]:
        assert folds.nunique() == 1
    with pytest.raises(ValueError, match="not values"):
        gl.tl.fit_expression(fresh(simulated), method="predixcan", folds_by="population",
                             test_groups=["XYZ"])  # fmt: skip


def test_covariates_are_regressed_out(simulated, predixcan):
    fitted, _ = predixcan
    cohort = fresh(simulated)
    gene = cohort.var.loc[cohort.var_names[:N_GENES], "sim_h2"].idxmax()
    column = cohort.var_names.get_loc(gene)
    rng = np.random.default_rng(1)
    cohort.obs["age"] = rng.normal(size=cohort.n_obs)
    male = (cohort.obs["sex"] == "male").to_numpy()
    cohort.X[:, column] += 3 * cohort.obs["age"].to_numpy() + 2 * male
    cohort.obs["gl_fold"] = fitted.obs["gl_fold"]  # the folds of the clean fit

    gl.tl.fit_expression(cohort, method="predixcan", genes=[gene], key_added="plain")
    gl.tl.fit_expression(cohort, method="predixcan", genes=[gene], covariates=["sex", "age"])
    clean = fitted.var.loc[gene, "gl_predixcan_r"]
    assert cohort.var.loc[gene, "gl_plain_r"] < clean - 0.2
    assert cohort.var.loc[gene, "gl_predixcan_r"] == pytest.approx(clean, abs=0.03)
    assert "gl_adjusted_predixcan" in cohort.layers and "gl_adjusted_plain" not in cohort.layers
    oracle = gl.get.expression_results(cohort).set_index("method")["oracle_r"]
    adjusted = cohort.layers["gl_adjusted_predixcan"][:, column]
    everyone = np.ones(cohort.n_obs, dtype=bool)
    assert oracle["predixcan"] == pytest.approx(oracle_of(cohort, gene, everyone, adjusted))
    assert oracle["plain"] == pytest.approx(oracle_of(cohort, gene, everyone))
    assert oracle["plain"] < oracle["predixcan"] - 0.2  # scored against what r is scored on

    frame = pd.DataFrame({"age": cohort.obs["age"], "male": male.astype(float)})
    gl.tl.fit_expression(cohort, method="predixcan", genes=[gene], covariates=frame.iloc[::-1],
                         key_added="frame")  # fmt: skip
    np.testing.assert_allclose(
        cohort.layers["gl_pred_frame"][:, column], cohort.layers["gl_pred_predixcan"][:, column]
    )


def test_covariates_are_fitted_on_the_training_people_only():
    rng = np.random.default_rng(0)
    n = 120
    dosages = rng.binomial(2, 0.3, (n, 6)).astype(float)
    covariate = rng.normal(size=(n, 1))
    y = dosages[:, 0] + 2 * covariate[:, 0] + rng.normal(size=n)
    folds = np.arange(n) % 2
    fit = gl.tl.fit_dosages(dosages, y, folds=folds, covariates=covariate)
    for fold in (0, 1):
        train, test = folds != fold, folds == fold
        line = LinearRegression().fit(covariate[train], y[train])
        expected = y[test] - line.predict(covariate[test])
        np.testing.assert_allclose(fit["observed"][test], expected)


def test_fit_dosages_on_a_plain_matrix():
    rng = np.random.default_rng(3)
    n, p = 300, 40
    dosages = pd.DataFrame(
        rng.binomial(2, rng.uniform(0.1, 0.5, p), (n, p)), columns=[f"snp{i}" for i in range(p)]
    )
    genetic = 0.8 * dosages["snp0"] - 0.6 * dosages["snp5"]
    y = genetic + rng.normal(scale=0.7, size=n)
    y[[3, 7]] = np.nan  # people without expression are left out
    folds = np.arange(n) % 5
    folds[:10] = -1  # only ever trained on
    fit = gl.tl.fit_dosages(dosages, y, folds=folds, random_state=0)
    assert np.isnan(fit["pred"][:10]).all() and np.isfinite(fit["pred"][10:]).all()
    assert fit["n_test"] == n - 10 and fit["n_features"] == p and fit["n_folds"] == 5
    assert fit["r"] > 0.6 and fit["spearman"] > 0.5 and 0 < fit["r2"] <= fit["r"] ** 2 + 0.05
    top = fit["scaled_coefficients"].abs().nlargest(2).index
    assert set(top) == {"snp0", "snp5"}
    assert fit["coefficients"]["snp0"] > 0.5 and fit["coefficients"]["snp5"] < -0.3
    assert fit["alpha"] > 0

    known = np.isfinite(y)
    in_sample = fit["intercept"] + dosages.to_numpy() @ fit["coefficients"].to_numpy()
    assert np.corrcoef(in_sample, genetic)[0, 1] > 0.95
    assert in_sample[known].mean() == pytest.approx(y[known].mean())  # the intercept

    again = gl.tl.fit_dosages(dosages.to_numpy(), y.to_numpy(), folds=5, random_state=0)
    assert isinstance(again["coefficients"], np.ndarray) and np.isfinite(again["pred"][known]).all()
    with pytest.raises(ValueError, match="impute"):
        gl.tl.fit_dosages(dosages.where(dosages > 0), y, folds=5)


def test_dosages_count_each_alt_allele_of_a_multiallelic_record(tmp_path):
    rng = np.random.default_rng(0)
    reference = "".join(rng.choice(list("ACGT"), 200))
    fasta = write_fasta(tmp_path / "ref.fa", {"1": reference})
    genes = tmp_path / "genes.tsv"
    genes.write_text(
        "chrom\tstart0\tend\tgene_id\tgene_name\tgene_type\tstrand\ttss0\n"
        "1\t100\t150\tG1\tG1\tprotein_coding\t+\t100\n"
    )
    calls = {  # position (0-based): (ID, ALT, genotypes of S1..S3)
        95: ("rsMulti", _other(reference[95], 2), ["1|2", "2|2", "0|0"]),
        110: (".", _other(reference[110], 1), ["0|1", "0|0", "1|1"]),
        120: ("rsNone", _other(reference[120], 1), ["0|0", "0|0", "0|0"]),
    }
    records = [
        ("1", pos, ident, reference[pos], alt, gts) for pos, (ident, alt, gts) in calls.items()
    ]
    vcf = write_vcf(tmp_path / "calls.vcf.gz", records, samples=["S1", "S2", "S3"],
                    contigs={"1": 200})  # fmt: skip
    panel = gl.pp.gene_windows(genes, fasta=fasta, width=64)
    cohort = gl.pp.personal_sequences(vcf, fasta=fasta, genes=panel, progress=False)

    x, names = dosage_source(cohort, window=1_000_000)("G1")
    alt_a, alt_b = calls[95][1].split(",")
    second = f"1:111:{reference[110]}:{calls[110][1]}"
    assert names == [f"rsMulti:{alt_a}", f"rsMulti:{alt_b}", second]  # monomorphic dropped
    np.testing.assert_array_equal(x, [[1, 1, 1], [0, 2, 0], [0, 0, 2]])
    x, names = dosage_source(cohort, window=6)("G1")  # the anchor (TSS) is at 100
    assert names == [f"rsMulti:{alt_a}", f"rsMulti:{alt_b}"]


def _other(base: str, n: int) -> str:
    return ",".join([b for b in "ACGT" if b != base][:n])


def test_unknown_method_and_misplaced_options_are_refused(simulated):
    with pytest.raises(ValueError, match="'predixcan', 'elastic_net', 'ridge', 'finetune'"):
        gl.tl.fit_expression(simulated, method="lasso")
    with pytest.raises(ValueError, match="finetune_options is required"):
        gl.tl.fit_expression(simulated, method="finetune")
    with pytest.raises(ValueError, match="n_pcs"):
        gl.tl.fit_expression(simulated, method="predixcan", n_pcs=5)
    with pytest.raises(KeyError, match="unknown gene"):
        gl.tl.fit_expression(fresh(simulated), method="predixcan", genes=["NOPE"])
    with pytest.raises(KeyError, match=r"run gl\.tl\.embed"):
        gl.tl.fit_expression(fresh(simulated), method="ridge", genes=["PSMF1"])


def test_plots_return_axes(embedded):
    cohort, genes, _ = embedded
    ax = gl.pl.prediction(cohort, gene=genes[0], method="ridge")
    assert isinstance(ax, Axes) and "r = " in ax.get_title()
    assert len(ax.collections[0].get_offsets()) == cohort.n_obs
    ax = gl.pl.gene_performance(cohort)
    assert isinstance(ax, Axes) and len(ax.patches) == 9
    _, given = plt.subplots()
    assert gl.pl.gene_performance(cohort, methods=["ridge"], ax=given) is given
    with pytest.raises(KeyError, match="no results"):
        gl.pl.gene_performance(cohort, methods=["finetune"])
    plt.close("all")


@pytest.mark.shared_data
@needs_shared
def test_geuvadis_znf549_eqtl_is_recovered():
    """ZNF549 in 91 GEUVADIS CEU people against the cis SNP dosages on chr19.

    Expression: the sum of ZNF549's transcript counts, divided by DESeq-style size factors
    (median of ratios to the geometric mean over the 50 genes of ``counts.rda``), log2(x + 1).
    The known eQTL allele (``snp_19_58127189``) has a single heterozygous carrier, whose
    expression is far below everyone else's: the final fit on everyone finds it, but no
    out-of-fold model can (when that person is tested, nobody in training carries it), so
    the out-of-fold r stays near 0 and is not checked here.
    """
    pyreadr = pytest.importorskip("pyreadr")
    counts = pyreadr.read_r(GEUVADIS / "counts.rda")["counts"]
    genotypes = pyreadr.read_r(GEUVADIS / "genotypes.rda")["genotypes"]
    people = list(counts.columns[2:])
    per_gene = counts.groupby("Gene_Symbol")[people].sum()
    log = np.log(per_gene.where(per_gene > 0))
    size = np.exp((log - log.mean(axis=1).to_numpy()[:, None]).dropna().median())
    y = np.log2(per_gene.loc["ENSG00000121406.3"] / size + 1)  # ZNF549

    start, end = 58_038_693, 58_052_124  # ZNF549 in genes_chr19.bed
    cis = genotypes["start"].between(start - 1_000_000, end + 1_000_000)
    dosages = genotypes[cis].set_index("snpId")[people].T
    fit = gl.tl.fit_dosages(dosages, y, folds=5, random_state=0)

    assert np.isfinite(fit["pred"]).all() and fit["n_test"] == len(people) == 91
    top = fit["scaled_coefficients"].abs().nlargest(3).index
    assert "snp_19_58127189" in top and fit["coefficients"]["snp_19_58127189"] < 0
    in_sample = fit["intercept"] + dosages.to_numpy() @ fit["coefficients"].to_numpy()
    assert np.corrcoef(in_sample, y)[0, 1] > 0.5


def test_simulation_plants_hand_picked_causal_variants():
    cohort = gl.datasets.example_cohort(width=256)
    ds = gl.get.haplotype_store(cohort)
    gene = cohort.var_names[int(np.argmax(np.bincount(ds["variant_gene"].values)))]
    g = list(ds["gene"].values).index(gene)
    ids = ds["variant_id"].values[ds["variant_gene"].values == g][:2]
    causal = pd.DataFrame({"gene": gene, "variant_id": ids, "effect": [1.0, -2.0]})
    gl.datasets.simulate_expression(cohort, n_causal=1, h2=0.5, causal=causal, random_state=3)
    table = cohort.uns["gl_simulation"]["causal_variants"]
    planted = table[table["gene"] == gene].set_index("variant_id")
    assert list(planted.index) == list(ids)
    ratio = planted.loc[ids[1], "effect"] / planted.loc[ids[0], "effect"]
    assert ratio == pytest.approx(-2.0)
    assert cohort.var.loc[gene, "sim_n_causal"] == 2
    with pytest.raises(KeyError, match="not in the window"):
        bad = pd.DataFrame({"gene": [gene], "variant_id": ["rs_nowhere"]})
        gl.datasets.simulate_expression(cohort, causal=bad)


@pytest.mark.filterwarnings("ignore:simulate_expression replaces the existing X")
def test_simulation_measures_frequencies_and_heritability_in_reference_people(simulated):
    cohort = fresh(simulated)
    fin = (cohort.obs["population"] == "FIN").to_numpy()
    with pytest.warns(UserWarning, match="replaces the existing X"):
        gl.datasets.simulate_expression(
            cohort, n_causal=2, h2=0.4, min_maf=0.1, reference_people=fin, random_state=5
        )
    table = cohort.uns["gl_simulation"]["causal_variants"]
    assert len(table) >= 20 and cohort.uns["gl_simulation"]["n_reference_people"] == fin.sum()
    ds = gl.get.haplotype_store(cohort)
    rows = [list(ds["sample"].values).index(s) for s in cohort.obs_names[fin]]
    for row in table.itertuples():  # frequencies of the Finns, common among them
        calls = ds["genotype"].values[rows, row.variant, :]
        assert row.alt_frequency == pytest.approx((calls > 0).mean())
        assert min(row.alt_frequency, 1 - row.alt_frequency) >= 0.1
    genetic = cohort.layers["sim_genetic_value"]
    heritable = cohort.var["sim_n_causal"].to_numpy() > 0
    # h2 and the centring hold in the Finns exactly, elsewhere only by their frequencies
    np.testing.assert_allclose(genetic[fin][:, heritable].var(axis=0), 0.4, rtol=1e-5)
    np.testing.assert_allclose(genetic[fin][:, heritable].mean(axis=0), 0, atol=1e-5)
    assert not np.allclose(genetic[~fin][:, heritable].var(axis=0), 0.4, rtol=1e-3)

    # obs names give the same as the mask; everyone is the default
    by_name = gl.datasets.simulate_expression(
        fresh(simulated), n_causal=2, h2=0.4, min_maf=0.1, random_state=5, copy=True,
        reference_people=list(cohort.obs_names[fin]),
    )  # fmt: skip
    np.testing.assert_array_equal(by_name.X, cohort.X)
    everyone = gl.datasets.simulate_expression(
        fresh(simulated), n_causal=(1, 5), h2=(0.1, 0.5), random_state=0, copy=True,
        reference_people=np.ones(cohort.n_obs, dtype=bool),
    )  # fmt: skip
    np.testing.assert_array_equal(everyone.X, simulated.X)
    with pytest.raises(KeyError, match="not in obs_names"):
        gl.datasets.simulate_expression(fresh(simulated), reference_people=["nobody"])
    with pytest.raises(ValueError, match="needs 503 values"):
        gl.datasets.simulate_expression(fresh(simulated), reference_people=fin[:10])


# --- numbers that look fine but are not -----------------------------------------------


def test_constant_expression_scores_are_nan_with_a_warning(simulated):
    cohort = fresh(simulated)
    gene = cohort.var_names[0]
    cohort.X[:, 0] = 1.5  # everyone the same
    with pytest.warns(UserWarning, match="all 1.5: r, Spearman rho and R² are undefined"):
        gl.tl.fit_expression(cohort, method="predixcan", genes=[gene])
    row = gl.get.expression_results(cohort).iloc[0]
    assert np.isnan(row["r"]) and np.isnan(row["spearman"]) and np.isnan(row["r2"])


def test_folds_must_be_a_whole_number(simulated):
    with pytest.raises(TypeError, match=r"n_folds must be an integer, not 2\.5"):
        gl.tl.fit_expression(fresh(simulated), method="predixcan", n_folds=2.5)
    with pytest.raises(TypeError, match="n_folds must be an integer"):
        gl.tl.fit_dosages(np.ones((30, 2)), np.arange(30.0), folds=True)


def test_infinite_expression_is_an_error_naming_the_gene(simulated):
    cohort = fresh(simulated)
    gene = cohort.var_names[2]
    cohort.X[[4, 9], 2] = np.inf
    with pytest.raises(ValueError, match=rf"expression of {gene} has 2 infinite.*\[4, 9\]"):
        gl.tl.fit_expression(cohort, method="predixcan", genes=[gene])
    with pytest.raises(ValueError, match="y has 1 infinite"):
        gl.tl.fit_dosages(np.ones((30, 2)), np.r_[np.inf, np.arange(29.0)], folds=3)


def test_small_test_folds_warn(simulated):
    cohort = fresh(simulated)[:10].copy()
    with pytest.warns(UserWarning, match="fewer than 20 people"):
        gl.tl.fit_expression(cohort, method="predixcan", genes=[cohort.var_names[0]])
