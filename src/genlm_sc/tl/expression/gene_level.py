"""Gene-level expression prediction: one sequence per gene, expression across genes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
from sklearn.model_selection import GroupKFold

from .cross_validation import cross_validate
from .regressions import embedding_model

__all__ = ["fit_gene_expression"]

#: ``uns`` key of the results table and the settings of each fit.
UNS_KEY = "gl_gene_expression"
_COLUMNS = [
    "key",
    "target",
    "representation",
    "method",
    "r",
    "spearman",
    "r2",
    "n_genes",
    "n_train",
    "n_features",
    "n_folds",
    "folds_by",
]


def fit_gene_expression(
    adata: ad.AnnData,
    *,
    target: str | Sequence[str],
    use_rep: str = "X_gl",
    extra_reps: Sequence[str] | None = None,
    method: Literal["ridge", "elastic_net"] = "ridge",
    folds_by: str = "chrom",
    n_folds: int = 5,
    random_state: int | None = 0,
    key_added: str | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Predict each gene's expression from its sequence's representation, out of fold.

    The gene-level task of Xpresso and EPInformer: the observations are genes, each with
    one (promoter) sequence and a measured expression level, and a regression across genes
    maps the representation of the sequence to the expression. Folds hold out whole
    chromosomes (:class:`~sklearn.model_selection.GroupKFold` over ``obs[folds_by]``), so
    that neighbouring, related genes (duplicated families, shared regulatory domains) are
    never split between training and test.

    Within each outer fold the features are standardised on the training genes
    (:class:`~sklearn.preprocessing.StandardScaler`) and the model is fitted on them:

    ``"ridge"``
        :class:`~sklearn.linear_model.RidgeCV`, penalty chosen among
        :data:`genlm_sc.tl.expression.regressions.RIDGE_ALPHAS` by efficient leave-one-out (computed
        from the features' cross-product when genes outnumber features, which is 5× faster
        than scikit-learn's SVD for thousands of k-mer features and gives the same fit).
    ``"elastic_net"``
        :class:`~sklearn.linear_model.ElasticNetCV`, ``l1_ratio=0.5``, penalty chosen by
        shuffled 5-fold inner cross-validation on the training genes (seeded by ``random_state``).

    Parameters
    ----------
    adata
        Genes × nothing, e.g. :func:`genlm_sc.pp.sequence_panel` of a promoter table, with
        the representation in ``obsm[use_rep]`` (:func:`genlm_sc.tl.embed`,
        :func:`genlm_sc.tl.kmer_profile`) and the targets and ``folds_by`` in ``obs``.
    target
        ``obs`` column(s) of expression to predict, on the scale to be predicted (e.g.
        ``xpresso_log10_median_expr``, or ``log10(TPM + 0.1)`` computed beforehand: TPMs
        themselves are too skewed for a least-squares fit). Each column gets its own folds
        over the genes that have it; genes with a missing (NaN) target are skipped. Columns
        known for the same genes share their folds and, with the ridge, one multi-output
        fit per fold (a penalty per column: the same result as fitting them one by one).
    use_rep
        ``obsm`` key of the representation.
    extra_reps
        Further ``obsm`` keys concatenated to ``use_rep`` column-wise (e.g. a k-mer
        profile next to an embedding). All columns are standardised, so each feature gets
        the same weight whatever its scale.
    method
        ``"ridge"`` or ``"elastic_net"``.
    folds_by
        ``obs`` column whose groups (chromosomes) are kept whole. Genes with a missing group
        are skipped.
    n_folds
        Number of outer folds; the groups are shuffled with ``random_state`` and dealt out so that
        the folds hold about as many genes each.
    random_state
        Seed of the outer folds and of the elastic net's inner folds.
    key_added
        Name of the fit (default: the representations joined by ``+``, then ``_`` and the
        target); with several targets, ``key_added`` is followed by ``_`` and each target.
    copy
        Work on and return a copy of ``adata``.

    Returns
    -------
    ``None``, or the annotated copy when ``copy=True``. The results table of every fit made
    so far on ``adata`` (:func:`genlm_sc.get.gene_expression_results`) has one row per
    target × representation with ``key``, ``target``, ``representation`` (the ``obsm``
    keys joined by ``+``), ``method``, out-of-fold Pearson ``r``, Spearman rho (``spearman``) and
    ``r2`` (``1 - SS_res / SS_tot``, may be negative) over all genes pooled, ``n_genes`` (genes with
    a prediction), ``n_train`` (mean training genes per fold), ``n_features``,
    ``n_folds`` and ``folds_by``. Sets, for each fit ``key``:

    ``panel.obs["gl_pred_" + key]``
        Out-of-fold predictions (NaN for skipped genes).
    ``panel.obs["gl_fold_" + key]``
        Outer fold of each gene (``-1``: skipped).
    ``panel.uns["gl_gene_expression"]``
        ``"results"`` (the table; a refit under the same key replaces its row) and
        ``"params"`` (the settings of each fit).
    """
    if method not in ("ridge", "elastic_net"):
        raise ValueError(f"method must be 'ridge' or 'elastic_net', not {method!r}")
    adata = adata.copy() if copy else adata
    targets = [target] if isinstance(target, str) else list(target)
    reps = [use_rep, *(extra_reps or [])]
    x = _features(adata, reps)
    representation = "+".join(reps)
    ys, folds_of = {}, {}
    for name in targets:
        ys[name] = _target(adata, name)
        folds_of[name] = _chromosome_folds(
            adata, ys[name], folds_by=folds_by, n_folds=n_folds, random_state=random_state
        )
        ys[name][folds_of[name] < 0] = np.nan  # skipped genes are neither trained on nor tested
    factory = embedding_model(method, n_features=x.shape[1], n_pcs=None, random_state=random_state)
    fits = {}
    for group in _shared_folds(folds_of, jointly=method == "ridge"):
        if len(group) == 1:
            fits[group[0]] = cross_validate(
                x, ys[group[0]], folds=folds_of[group[0]], covariates=None, model=factory
            )
            continue
        y = np.column_stack([ys[name] for name in group])
        fit = cross_validate(x, y, folds=folds_of[group[0]], covariates=None, model=factory)
        for j, name in enumerate(group):
            fits[name] = {**fit, **{c: fit[c][j] for c in ("r", "spearman", "r2")},
                          "pred": fit["pred"][:, j]}  # fmt: skip
    for name in targets:
        key = _key(key_added, representation, name, several=len(targets) > 1)
        fit = fits[name]
        adata.obs[f"gl_pred_{key}"] = fit["pred"]
        adata.obs[f"gl_fold_{key}"] = folds_of[name]
        row = {
            "key": key,
            "target": name,
            "representation": representation,
            "method": method,
            **{c: fit[c] for c in ("r", "spearman", "r2", "n_train", "n_features", "n_folds")},
            "n_genes": fit["n_test"],
            "folds_by": folds_by,
        }
        params = {
            "target": name,
            "reps": np.asarray(reps, dtype=str),
            "method": method,
            "folds_by": folds_by,
            "n_folds": int(n_folds),
            "random_state": -1 if random_state is None else int(random_state),
        }
        _record(adata, row, params)
    return adata if copy else None


def _shared_folds(folds_of: dict[str, np.ndarray], *, jointly: bool) -> list[list[str]]:
    """Targets grouped by identical folds (the same genes held out), to be fitted together.

    A multi-output ridge with a penalty per target is the same fit as one ridge per target,
    and shares the decomposition of the features; the elastic net is fitted per target.
    """
    if not jointly:
        return [[name] for name in folds_of]
    groups: dict[bytes, list[str]] = {}
    for name, folds in folds_of.items():
        groups.setdefault(folds.tobytes(), []).append(name)
    return list(groups.values())


def _features(adata: ad.AnnData, reps: list[str]) -> np.ndarray:
    """Genes × features: the ``obsm`` blocks side by side, as float64, finite."""
    blocks = []
    for rep in reps:
        if rep not in adata.obsm:
            raise KeyError(f"no obsm[{rep!r}]; compute the representation first")
        block = np.asarray(adata.obsm[rep], dtype=np.float64)
        blocks.append(block.reshape(adata.n_obs, -1))
    x = np.hstack(blocks)
    if not np.isfinite(x).all():
        raise ValueError(f"the representation {reps} has missing or non-finite values")
    return x


def _target(adata: ad.AnnData, name: str) -> np.ndarray:
    if name not in adata.obs.columns:
        raise KeyError(f"no target column obs[{name!r}]")
    y = pd.to_numeric(adata.obs[name], errors="coerce").to_numpy(dtype=np.float64)
    y[~np.isfinite(y)] = np.nan
    return y


def _key(key_added: str | None, representation: str, target: str, *, several: bool) -> str:
    if key_added is None:
        return f"{representation}_{target}"
    return f"{key_added}_{target}" if several else key_added


def _chromosome_folds(
    adata: ad.AnnData, y: np.ndarray, *, folds_by: str, n_folds: int, random_state: int | None
) -> np.ndarray:
    """Each gene's outer fold, whole groups per fold; ``-1`` for genes skipped."""
    if folds_by not in adata.obs.columns:
        raise KeyError(f"no column obs[{folds_by!r}] to hold out")
    column = adata.obs[folds_by]
    usable = np.isfinite(y) & column.notna().to_numpy()
    groups = column.astype(str).to_numpy()[usable]
    n_groups = np.unique(groups).size
    if n_folds < 2 or n_groups < n_folds:
        raise ValueError(
            f"cannot make {n_folds} folds of {n_groups} groups of obs[{folds_by!r}] "
            "(genes with a target)"
        )
    splitter = GroupKFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    folds = np.full(adata.n_obs, -1, dtype=np.int64)
    used = np.flatnonzero(usable)
    for fold, (_, test) in enumerate(splitter.split(used, groups=groups)):
        folds[used[test]] = fold
    return folds


def _record(adata: ad.AnnData, row: dict[str, Any], params: dict[str, Any]) -> None:
    """Add (or replace) the fit's row of the results table and its settings."""
    store = adata.uns.setdefault(UNS_KEY, {})
    table = pd.DataFrame([row])[_COLUMNS]
    earlier = store.get("results")
    if earlier is not None and len(earlier):
        earlier = earlier[earlier["key"] != row["key"]]
        table = pd.concat([earlier, table], ignore_index=True)
    store["results"] = table.reset_index(drop=True)
    store.setdefault("params", {})[row["key"]] = params
