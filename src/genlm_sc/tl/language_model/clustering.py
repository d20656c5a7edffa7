"""How well a representation of a panel groups its sequences by a known label (gene function)."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
from scipy import sparse
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    adjusted_mutual_info_score,
    adjusted_rand_score,
    normalized_mutual_info_score,
    silhouette_score,
)
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

__all__ = ["cluster_agreement"]

#: Default leiden resolutions: 0.1, 0.2, …, 2.0.
RESOLUTIONS: tuple[float, ...] = tuple(round(0.1 * i, 1) for i in range(1, 21))

NULL_NAME = "random null"
_COLUMNS = [
    "representation",
    "kind",
    "resolution",
    "n_clusters",
    "nmi",
    "ari",
    "ami",
    "asw",
    "mean",
    "probe_balanced_accuracy",
    "probe_sd",
    "chance",
    "n_obs",
]


def cluster_agreement(
    adata: ad.AnnData,
    *,
    labels: str,
    use_rep: str = "X_gl",
    resolutions: Sequence[float] = RESOLUTIONS,
    n_neighbors: int = 15,
    metric: Literal["euclidean", "cosine"] = "euclidean",
    groups: str | None = None,
    null: bool = True,
    probe: bool = True,
    probe_c: float | None = None,
    n_folds: int = 5,
    random_state: int = 0,
    neighbors_kwargs: Mapping[str, Any] | None = None,
    key_added: str = "gl_cluster_agreement",
    copy: bool = False,
) -> ad.AnnData | None:
    """Agreement of a representation's clusters with known labels (e.g. gene function).

    The gene-function clustering evaluation of DNA language models, scIB style: a
    k-nearest-neighbour graph of the representation (:func:`scanpy.pp.neighbors`), leiden
    clusterings over a grid of resolutions (:func:`scanpy.tl.leiden`, ``flavor="igraph"``,
    ``n_iterations=2``, undirected) and, at each, NMI, ARI and AMI against the labels. The
    resolution with the best NMI is kept, as in scIB, and reported with the label
    silhouette (ASW) and the scIB mean of NMI, ARI and ASW.

    With weak labels the ASW is near 0 for every representation, so its rescaled value
    (≈ 0.5) dominates the mean, and NMI grows with the number of clusters even for noise.
    Read the chance-corrected numbers instead, next to the random null: AMI, ARI, and the
    balanced accuracy of a linear probe.

    Parameters
    ----------
    adata
        Observations (genes, sequences) with a representation in ``obsm``.
    labels
        Column of ``obs`` with the known class of each observation. Observations with a
        missing label are left out of everything: the graph and the clusters are those
        of the labelled observations only.
    use_rep
        Key of the representation in ``obsm`` (``"X_gl"`` for language-model embeddings,
        ``"X_kmer"`` for :func:`genlm_sc.tl.kmer_profile`, …).
    resolutions
        Leiden resolutions tried; default 0.1, 0.2, …, 2.0 (20 values).
    n_neighbors
        Neighbours of the kNN graph.
    metric
        Distance of the kNN graph and of the silhouette, on the representation as given
        (not standardised).
    groups
        Column of ``obs`` (e.g. chromosome) whose values are kept together in the probe's
        cross-validation folds (:class:`~sklearn.model_selection.StratifiedGroupKFold`),
        so that neighbouring or related observations do not leak between train and test.
        ``None``: :class:`~sklearn.model_selection.StratifiedKFold`.
    null
        Also evaluate a random embedding of the same shape (standard normal, drawn with
        ``random_state``), reported as representation ``"random null"``.
    probe
        Fit the linear probe: logistic regression (``class_weight="balanced"``, L2 with
        inverse strength ``probe_c``) on the standardised representation, scored by
        balanced accuracy over ``n_folds`` cross-validation folds (chance:
        1 / number of classes).
    probe_c
        Inverse regularisation strength of the probe. ``None``: 1 / number of features,
        so that wide representations (5,440 k-mer frequencies, say) are regularised
        harder than narrow ones and are not simply over-fitted.
    n_folds
        Cross-validation folds of the probe.
    random_state
        Seed of the graph, leiden, the folds and the null.
    neighbors_kwargs
        Further arguments of :func:`scanpy.pp.neighbors`. By default exact neighbours
        (``transformer="sklearn"``) so the result does not depend on an approximate search.
    key_added
        Where results go (see below).
    copy
        Work on and return a copy of ``adata``.

    Returns
    -------
    ``None``, or the annotated copy when ``copy=True``. The results table
    (:func:`genlm_sc.get.cluster_agreement`) is tidy, one
    row per representation (``use_rep``, then ``"random null"``) and ``kind``:
    ``"leiden"`` rows, one per resolution, with ``n_clusters``, ``nmi``, ``ari`` and
    ``ami``; one ``"summary"`` row with the metrics at the best-NMI resolution plus
    ``asw`` (rescaled ``(silhouette + 1) / 2``), ``mean`` (of NMI, ARI and ASW),
    ``probe_balanced_accuracy`` and ``probe_sd`` (mean and SD over folds), ``chance`` and
    ``n_obs`` (labelled observations). Sets

    ``adata.uns[key_added]``
        ``{"results": the table, "params": the settings}``.
    ``adata.obs[key_added + "_leiden"]``
        The best clustering of ``use_rep`` (missing for unlabelled observations).

    The kNN graph is built on a private object: ``adata``'s own neighbours are untouched.
    """
    adata = adata.copy() if copy else adata
    x, y, group, labelled = _inputs(adata, labels=labels, use_rep=use_rep, groups=groups)
    graph = {
        "resolutions": [float(r) for r in resolutions],
        "n_neighbors": n_neighbors,
        "metric": metric,
        "random_state": random_state,
    }
    neighbors_kwargs = {"transformer": "sklearn", **(neighbors_kwargs or {})}
    representations = {use_rep: x}
    if null:
        generator = np.random.default_rng(random_state)
        representations[NULL_NAME] = generator.standard_normal(x.shape, dtype=np.float32)
    tables, best = [], {}
    for name, rep in representations.items():
        table, best[name] = _evaluate(rep, y, neighbors_kwargs=neighbors_kwargs, **graph)
        if probe:
            c = 1 / rep.shape[1] if probe_c is None else probe_c
            scores = _probe(rep, y, group, c=c, n_folds=n_folds, random_state=random_state)
            summary = table["kind"] == "summary"
            table.loc[summary, "probe_balanced_accuracy"] = scores.mean()
            table.loc[summary, "probe_sd"] = scores.std()
        tables.append(table.assign(representation=name))
    results = pd.concat(tables, ignore_index=True)
    results["chance"] = 1 / np.unique(y).size
    results["n_obs"] = y.size
    results = results[_COLUMNS]

    column = pd.Series(pd.NA, index=adata.obs_names, dtype=object)
    column[labelled] = best[use_rep].astype(str)
    adata.obs[key_added + "_leiden"] = pd.Categorical(column)
    params = {"labels": labels, "use_rep": use_rep, "groups": groups or "", "null": null}
    params |= {"probe": probe, "probe_c": 1 / x.shape[1] if probe_c is None else probe_c}
    params |= {"n_folds": n_folds, **graph}
    adata.uns[key_added] = {"results": results, "params": params}
    return adata if copy else None


def _inputs(
    adata: ad.AnnData, *, labels: str, use_rep: str, groups: str | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray]:
    """Representation, labels and groups of the labelled observations, and which those are."""
    if use_rep not in adata.obsm:
        raise KeyError(f"no representation obsm[{use_rep!r}]; have {list(adata.obsm)}")
    for column in (labels, groups):
        if column is not None and column not in adata.obs.columns:
            raise KeyError(f"no column obs[{column!r}]")
    rep = adata.obsm[use_rep]
    rep = rep.toarray() if sparse.issparse(rep) else np.asarray(rep)
    labelled = adata.obs[labels].notna().to_numpy()
    y = adata.obs[labels].to_numpy()[labelled].astype(str)
    if np.unique(y).size < 2:
        raise ValueError(f"obs[{labels!r}] needs at least two classes among labelled rows")
    group = None
    if groups is not None:
        group = adata.obs[groups][labelled]
        if group.isna().any():
            raise ValueError(f"obs[{groups!r}] is missing for some labelled observations")
        group = group.to_numpy().astype(str)
    x = rep[labelled].astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise ValueError(f"obsm[{use_rep!r}] has non-finite values")
    return x, y, group, labelled


def _evaluate(
    x: np.ndarray,
    y: np.ndarray,
    *,
    resolutions: Sequence[float],
    n_neighbors: int,
    metric: str,
    random_state: int,
    neighbors_kwargs: Mapping[str, Any],
) -> tuple[pd.DataFrame, np.ndarray]:
    """Leiden sweep rows plus the summary row of one representation, and its best clusters."""
    work = ad.AnnData(obs=pd.DataFrame(index=pd.RangeIndex(y.size).astype(str)))
    work.obsm["rep"] = x
    sc.pp.neighbors(
        work,
        n_neighbors=n_neighbors,
        use_rep="rep",
        metric=metric,
        random_state=random_state,
        **neighbors_kwargs,
    )
    rows, clusterings = [], []
    for resolution in resolutions:
        sc.tl.leiden(
            work,
            resolution=resolution,
            flavor="igraph",
            n_iterations=2,
            directed=False,
            random_state=random_state,
            key_added="leiden",
        )
        clusters = work.obs["leiden"].to_numpy()
        clusterings.append(clusters)
        rows.append({"kind": "leiden", "resolution": float(resolution), **_scores(y, clusters)})
    sweep = pd.DataFrame(rows)
    best = int(sweep["nmi"].to_numpy().argmax())
    summary = sweep.iloc[[best]].assign(kind="summary")
    asw = (silhouette_score(x, y, metric=metric) + 1) / 2
    summary = summary.assign(asw=asw, mean=(summary["nmi"] + summary["ari"] + asw) / 3)
    table = pd.concat([sweep, summary], ignore_index=True)
    table[["probe_balanced_accuracy", "probe_sd"]] = np.nan
    return table, clusterings[best]


def _scores(y: np.ndarray, clusters: np.ndarray) -> dict[str, float]:
    return {
        "n_clusters": int(np.unique(clusters).size),
        "nmi": normalized_mutual_info_score(y, clusters),
        "ari": adjusted_rand_score(y, clusters),
        "ami": adjusted_mutual_info_score(y, clusters),
    }


def _probe(
    x: np.ndarray,
    y: np.ndarray,
    group: np.ndarray | None,
    *,
    c: float,
    n_folds: int,
    random_state: int,
) -> np.ndarray:
    """Balanced accuracy of a logistic-regression probe in each cross-validation fold."""
    if group is not None and np.unique(group).size < n_folds:
        raise ValueError(f"{np.unique(group).size} groups cannot make {n_folds} folds")
    folds = StratifiedGroupKFold if group is not None else StratifiedKFold
    cv = folds(n_splits=n_folds, shuffle=True, random_state=random_state)
    model = make_pipeline(
        StandardScaler(),
        LogisticRegression(C=c, class_weight="balanced", max_iter=1000),
    )
    with warnings.catch_warnings():
        # Rare classes missing from some folds are expected with grouped folds.
        warnings.filterwarnings("ignore", "The least populated class", UserWarning)
        warnings.filterwarnings("ignore", "y_pred contains classes not in y_true", UserWarning)
        return cross_val_score(model, x, y, groups=group, cv=cv, scoring="balanced_accuracy")
