"""k-mer profiles, the gene-function clustering evaluation and its plots.

The kNN graphs here use ``method="gauss"`` connectivities, which give the same clusters on
these toy data and spare the tests the JIT compilation of umap's (about 20 s).
"""

from __future__ import annotations

from itertools import product

import anndata as ad
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from matplotlib.axes import Axes

import genlm_sc as gl

plt.switch_backend("Agg")

FAST_GRAPH = {"method": "gauss"}
COMPLEMENT = str.maketrans("ACGT", "TGCA")


# --- k-mer profiles ---------------------------------------------------------------------------


def _hand_counts(sequence: str, k: int, *, canonical: bool = False) -> dict[str, int]:
    counts: dict[str, int] = {}
    for i in range(len(sequence) - k + 1):
        kmer = sequence[i : i + k]
        if set(kmer) <= set("ACGT"):
            if canonical:
                kmer = min(kmer, kmer.translate(COMPLEMENT)[::-1])
            counts[kmer] = counts.get(kmer, 0) + 1
    return counts


def _profile_of(adata: ad.AnnData, row: int, key: str = "X_kmer") -> dict[tuple[int, str], float]:
    """Non-zero entries of one row, keyed by (k, k-mer)."""
    features = adata.uns[key]["features"]
    return {
        (len(name), str(name)): float(value)
        for name, value in zip(features, adata.obsm[key][row], strict=True)
        if value
    }


SEQUENCES = {"plain": "ACGTACGGA", "with_n": "AACNNGTTA", "lower": "acgtt", "short": "AC", "n": "N"}


def test_kmer_frequencies_match_hand_counts():
    panel = gl.pp.sequence_panel(SEQUENCES)
    gl.tl.kmer_profile(panel, k=(1, 2, 3))
    assert panel.obsm["X_kmer"].dtype == np.float32
    assert panel.obsm["X_kmer"].shape == (5, 4 + 16 + 64)
    assert list(panel.uns["X_kmer"]["features"][:6]) == ["A", "C", "G", "T", "AA", "AC"]
    for row, sequence in enumerate(SEQUENCES.values()):
        expected = {}
        for k in (1, 2, 3):
            counts = _hand_counts(sequence.upper(), k)
            total = sum(counts.values())
            expected |= {(k, kmer): count / total for kmer, count in counts.items()}
        assert _profile_of(panel, row) == pytest.approx(expected), sequence


def test_kmer_n_skipping_by_hand():
    panel = gl.pp.sequence_panel({"s": "AACNNGTTA"})
    gl.tl.kmer_profile(panel, k=2, normalize="counts")
    # AA, AC | GT, TT, TA: the 3 dimers touching N are skipped.
    assert _profile_of(panel, 0) == {(2, m): 1.0 for m in ("AA", "AC", "GT", "TT", "TA")}
    gl.tl.kmer_profile(panel, k=2, key_added="freq")
    assert _profile_of(panel, 0, "freq") == pytest.approx(
        {(2, m): 0.2 for m in ("AA", "AC", "GT", "TT", "TA")}
    )


def test_kmer_canonical():
    sequence = "AACGTTTGCAN" * 3 + "GGGATC"
    panel = gl.pp.sequence_panel({"s": sequence, "rc": sequence.translate(COMPLEMENT)[::-1]})
    gl.tl.kmer_profile(panel, k=[2, 3], canonical=True, normalize="counts", key_added="c")
    features = list(panel.uns["c"]["features"])
    assert len(features) == (16 + 4) // 2 + 64 // 2
    assert "AC" in features and "GT" not in features and "AT" in features
    expected = {
        (k, m): float(n)
        for k in (2, 3)
        for m, n in _hand_counts(sequence, k, canonical=True).items()
    }
    assert _profile_of(panel, 0, "c") == expected
    # The reverse complement has the same canonical profile.
    np.testing.assert_array_equal(panel.obsm["c"][0], panel.obsm["c"][1])


def test_kmer_copy_and_random_sequences_against_naive(tmp_path):
    rng = np.random.default_rng(1)
    sequences = {
        f"s{i}": "".join(rng.choice(list("ACGTN"), p=[0.24] * 4 + [0.04], size=n))
        for i, n in enumerate(rng.integers(0, 300, size=40))
    }
    panel = gl.pp.sequence_panel(sequences)
    out = gl.tl.kmer_profile(panel, k=4, canonical=True, copy=True)
    assert "X_kmer" not in panel.obsm and "X_kmer" in out.obsm
    for row, sequence in enumerate(sequences.values()):
        counts = _hand_counts(sequence, 4, canonical=True)
        total = sum(counts.values())
        assert _profile_of(out, row) == pytest.approx(
            {(4, m): c / total for m, c in counts.items()}
        )
    out.write_h5ad(tmp_path / "kmer.h5ad")
    back = ad.read_h5ad(tmp_path / "kmer.h5ad")
    np.testing.assert_array_equal(back.obsm["X_kmer"], out.obsm["X_kmer"])
    assert list(back.uns["X_kmer"]["features"]) == list(out.uns["X_kmer"]["features"])
    assert back.uns["X_kmer"]["canonical"]


def test_several_k_in_any_order():
    panel = gl.pp.sequence_panel({"s": "ACGTTGCA"})
    gl.tl.kmer_profile(panel, k=[3, 1], normalize="counts")
    names = list(panel.uns["X_kmer"]["features"])
    assert names[:64] == ["".join(p) for p in product("ACGT", repeat=3)]
    assert names[64:] == list("ACGT")
    np.testing.assert_array_equal(panel.uns["X_kmer"]["k"], [3, 1])


@pytest.mark.parametrize(("k", "normalize"), [(0, "frequency"), ((3, 3), "frequency"), (3, "x")])
def test_kmer_bad_options(k, normalize):
    panel = gl.pp.sequence_panel({"s": "ACGT"})
    with pytest.raises(ValueError):
        gl.tl.kmer_profile(panel, k=k, normalize=normalize)


# --- cluster agreement ------------------------------------------------------------------------


def _separated(n_classes: int = 5, per_class: int = 40, seed: int = 0) -> ad.AnnData:
    """Labels forming well-separated blobs in obsm["X_gl"]; the first 7 labels missing."""
    rng = np.random.default_rng(seed)
    which = np.repeat(np.arange(n_classes), per_class)
    centres = rng.normal(size=(n_classes, 8)) * 10
    obs = pd.DataFrame(
        {
            "label": pd.Categorical([f"class{i}" for i in which]),
            "chrom": rng.choice([str(c) for c in range(1, 9)], size=which.size),
        },
        index=[f"g{i}" for i in range(which.size)],
    )
    obs.loc[obs.index[:7], "label"] = np.nan
    adata = ad.AnnData(obs=obs)
    adata.obsm["X_gl"] = (centres[which] + rng.normal(size=(which.size, 8))).astype(np.float32)
    return adata


@pytest.fixture(scope="module")
def evaluated():
    adata = _separated()
    gl.tl.cluster_agreement(adata, labels="label", groups="chrom", neighbors_kwargs=FAST_GRAPH)
    results = gl.get.cluster_agreement(adata)
    return adata, results


def _summary(results: pd.DataFrame, representation: str) -> pd.Series:
    rows = results[(results["representation"] == representation) & (results["kind"] == "summary")]
    assert len(rows) == 1
    return rows.iloc[0]


def test_separated_labels_are_recovered_and_null_is_not(evaluated):
    _, results = evaluated
    best = _summary(results, "X_gl")
    assert best["nmi"] > 0.95 and best["ari"] > 0.95 and best["ami"] > 0.95
    assert best["probe_balanced_accuracy"] > 0.95
    assert best["asw"] > 0.75 and best["mean"] > 0.9
    null = _summary(results, "random null")
    assert abs(null["ari"]) < 0.1 and abs(null["ami"]) < 0.1
    assert null["probe_balanced_accuracy"] < 0.45  # chance 0.2
    assert best["chance"] == pytest.approx(0.2)


def test_table_layout(evaluated):
    _, results = evaluated
    leiden = results[results["kind"] == "leiden"]
    assert len(leiden) == 2 * 20
    np.testing.assert_allclose(
        leiden["resolution"].iloc[:20], np.round(np.arange(0.1, 2.01, 0.1), 1)
    )
    for representation in ("X_gl", "random null"):
        best = _summary(results, representation)
        sweep = leiden[leiden["representation"] == representation]
        assert best["nmi"] == sweep["nmi"].max()
        assert best["resolution"] == sweep["resolution"].iloc[int(sweep["nmi"].argmax())]
        assert best["n_clusters"] == sweep["n_clusters"].iloc[int(sweep["nmi"].argmax())]
    # Noise splits into more clusters as the resolution grows.
    assert sweep["n_clusters"].iloc[-1] > sweep["n_clusters"].iloc[0]


def test_missing_labels_are_ignored(evaluated):
    adata, results = evaluated
    assert (results["n_obs"] == adata.n_obs - 7).all()
    clusters = adata.obs["gl_cluster_agreement_leiden"]
    assert clusters.iloc[:7].isna().all() and clusters.iloc[7:].notna().all()
    # Dropping the unlabelled rows by hand changes nothing.
    labelled = adata[7:].copy()
    del labelled.obs["gl_cluster_agreement_leiden"]
    gl.tl.cluster_agreement(
        labelled, labels="label", null=False, probe=False, neighbors_kwargs=FAST_GRAPH
    )
    again = gl.get.cluster_agreement(labelled)
    mine = results[results["representation"] == "X_gl"].reset_index(drop=True)
    cols = ["resolution", "n_clusters", "nmi", "ari", "ami", "asw"]
    pd.testing.assert_frame_equal(again[cols], mine[cols])


def test_copy_leaves_input_untouched():
    adata = _separated(n_classes=3, per_class=30)
    before = adata.copy()
    out = gl.tl.cluster_agreement(
        adata, labels="label", copy=True, probe=False, null=False, neighbors_kwargs=FAST_GRAPH
    )
    assert isinstance(out, ad.AnnData)
    assert "gl_cluster_agreement" in out.uns and "gl_cluster_agreement_leiden" in out.obs
    assert not adata.uns and list(adata.obs.columns) == list(before.obs.columns)
    assert not adata.obsp and "neighbors" not in adata.uns
    np.testing.assert_array_equal(adata.obsm["X_gl"], before.obsm["X_gl"])


def test_bad_inputs():
    adata = _separated(n_classes=2, per_class=10)
    with pytest.raises(KeyError, match="X_kmer"):
        gl.tl.cluster_agreement(adata, labels="label", use_rep="X_kmer")
    with pytest.raises(KeyError, match="nope"):
        gl.tl.cluster_agreement(adata, labels="nope")
    adata.obs["one"] = "a"
    with pytest.raises(ValueError, match="two classes"):
        gl.tl.cluster_agreement(adata, labels="one")


@pytest.mark.parametrize("fmt", ["h5ad", "zarr"])
def test_results_survive_writing(evaluated, tmp_path, fmt):
    adata, results = evaluated
    path = tmp_path / f"panel.{fmt}"
    getattr(adata, f"write_{fmt}")(path)
    back = getattr(ad, f"read_{fmt}")(path)
    stored = back.uns["gl_cluster_agreement"]
    pd.testing.assert_frame_equal(stored["results"], results, check_index_type=False)
    assert stored["params"]["labels"] == "label" and stored["params"]["groups"] == "chrom"
    pd.testing.assert_series_equal(
        back.obs["gl_cluster_agreement_leiden"], adata.obs["gl_cluster_agreement_leiden"]
    )


# --- plots ------------------------------------------------------------------------------------


def test_cluster_agreement_plots(evaluated):
    adata, results = evaluated
    ax = gl.pl.cluster_agreement(adata)
    assert isinstance(ax, Axes)
    assert "NMI" in [t.get_text() for t in ax.get_legend().get_texts()]
    assert any(line.get_linestyle() == "--" for line in ax.get_lines())  # the null
    _, given = plt.subplots()
    compared = gl.pl.cluster_agreement({"model": adata, "table": results}, ax=given)
    assert compared is given
    assert given.get_xticklabels()[0].get_text() == "NMI"
    plt.close("all")


def test_embedding_plot_and_missing_basis(evaluated):
    adata, _ = evaluated
    with pytest.raises(KeyError, match=r"sc\.tl\.umap"):
        gl.pl.embedding(adata, color="label")
    adata = adata.copy()
    adata.obsm["X_umap"] = adata.obsm["X_gl"][:, :2]
    ax = gl.pl.embedding(adata, color="label")
    assert isinstance(ax, Axes)
    plt.close("all")
