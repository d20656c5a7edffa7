"""Cross-validation shared by every expression method: outer folds, covariates, scores.

Each person belongs to one outer fold (``obs["gl_fold"]``, shared by every method so that
methods are compared on the same people); a model is refitted in every fold on the training
people, covariates are regressed out of the target within each fold, and out-of-fold
predictions are scored together.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import anndata as ad
import numpy as np
from scipy import stats
from sklearn.base import RegressorMixin
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

__all__ = [
    "FOLD_KEY",
    "GENETIC_VALUE_KEY",
    "UNS_KEY",
    "check_finite",
    "check_fold_sizes",
    "cross_validate",
    "fold_settings",
    "oracle_r",
    "outer_folds",
    "prediction_scores",
    "random_folds",
    "residuals",
    "seed_record",
]

#: ``obs`` column with each person's outer fold (``-1``: always in training).
FOLD_KEY = "gl_fold"
#: ``uns`` key of the folds' settings, the comparison table, the settings of each fit.
UNS_KEY = "gl_expression"
#: ``layers`` key of each person's true genetic value of each gene (simulated expression).
GENETIC_VALUE_KEY = "sim_genetic_value"


def cross_validate(
    x: np.ndarray,
    y: np.ndarray,
    *,
    folds: np.ndarray,
    covariates: np.ndarray | None,
    model: Callable[[], RegressorMixin],
) -> dict[str, Any]:
    """Out-of-fold predictions of ``model()`` refitted in every outer fold, and their scores.

    ``folds`` holds each person's fold (``-1``: training only); people without ``y`` are
    left out. Covariates are regressed out of ``y`` per fold, fitted on training people.
    ``y`` may hold several targets as columns, fitted together by one multi-output model
    per fold (people need every target); predictions then have ``y``'s shape and ``r``,
    ``spearman`` and ``r2`` are arrays with one score per target.
    """
    folds = np.asarray(folds)
    if folds.shape != y.shape[:1]:
        raise ValueError(f"folds ({folds.size}) and y ({y.shape[0]}) do not match people")
    columns = y.reshape(y.shape[0], -1)
    known = np.isfinite(columns).all(axis=1)
    pred = np.full(columns.shape, np.nan)
    observed = np.full(columns.shape, np.nan)
    train_sizes = []
    for fold in np.unique(folds[folds >= 0]):
        test = known & (folds == fold)
        train = known & (folds != fold)
        if not test.any() or train.sum() < 2:
            continue
        target, held_out = y[train], y[test]
        if covariates is not None:
            held_out = residuals(covariates[train], target, covariates[test], held_out)
            target = residuals(covariates[train], target, covariates[train])
        fitted = model().fit(x[train], target).predict(x[test])
        pred[test] = np.reshape(fitted, (-1, columns.shape[1]))
        observed[test] = np.reshape(held_out, (-1, columns.shape[1]))
        train_sizes.append(int(train.sum()))
    tested = np.isfinite(pred).all(axis=1)
    scores = [
        prediction_scores(observed[tested, j], pred[tested, j]) for j in range(columns.shape[1])
    ]
    if y.ndim == 1:
        pred, observed, scores = pred[:, 0], observed[:, 0], scores[0]
    else:
        scores = {name: np.array([score[name] for score in scores]) for name in scores[0]}
    return {
        "pred": pred,
        "observed": observed,
        **scores,
        "n_train": round(float(np.mean(train_sizes))) if train_sizes else 0,
        "n_test": int(tested.sum()),
        "n_features": int(x.shape[1]),
        "n_folds": len(train_sizes),
    }


def prediction_scores(observed: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Pearson r, Spearman rho and R² of predictions.

    Undefined scores are NaN: all three for fewer than two people or a constant observed
    value (with a warning: R² would otherwise read 1 or 0 by convention), r and rho for
    constant predictions (R² is defined then).
    """
    if observed.size < 2:
        return {"r": np.nan, "spearman": np.nan, "r2": np.nan}
    if np.ptp(observed) == 0:
        warnings.warn(
            f"the observed values of {observed.size} people are all {observed[0]:g}: r, "
            "Spearman rho and R² are undefined (NaN)",
            UserWarning,
            stacklevel=2,
        )
        return {"r": np.nan, "spearman": np.nan, "r2": np.nan}
    r2 = float(r2_score(observed, predicted))
    if np.ptp(predicted) == 0:
        return {"r": np.nan, "spearman": np.nan, "r2": r2}
    r = float(np.corrcoef(observed, predicted)[0, 1])
    rho = float(stats.spearmanr(observed, predicted).statistic)
    return {"r": r, "spearman": rho, "r2": r2}


def oracle_r(genetic_value: np.ndarray | None, fit: dict[str, Any]) -> float:
    """The oracle's r: the true genetic value scored as a prediction, like the fit's own.

    Pearson r between ``genetic_value`` (one value per person) and the expression ``fit``
    was scored against (``fit["observed"]``: covariate-adjusted within each fold when
    there are covariates), pooled over the same people (those with an out-of-fold
    prediction), as :func:`cross_validate` pools the fit's predictions. It is the r a
    predictor that knew each person's genetic value exactly would get on these people, so
    a method above it is above it by chance. ``0.0`` when the genetic value is constant
    (nothing heritable to predict); NaN without a genetic value (measured expression) or
    with fewer than two people scored.
    """
    if genetic_value is None:
        return np.nan
    genetic_value = np.asarray(genetic_value, dtype=np.float64).ravel()
    scored = np.isfinite(fit["pred"]) & np.isfinite(fit["observed"])
    scored &= np.isfinite(genetic_value)
    if scored.sum() < 2:
        return np.nan
    if np.ptp(genetic_value[scored]) == 0:
        return 0.0
    return prediction_scores(fit["observed"][scored], genetic_value[scored])["r"]


def random_folds(n: int, *, n_folds: int, random_state: int | None) -> np.ndarray:
    """Each of ``n`` people's fold: a random, balanced assignment to ``n_folds`` folds."""
    if isinstance(n_folds, bool) or not isinstance(n_folds, int | np.integer):
        raise TypeError(f"n_folds must be an integer, not {n_folds!r}")
    if not 2 <= n_folds <= n:
        raise ValueError(f"cannot make {n_folds} folds of {n} people")
    folds = np.empty(n, dtype=np.int64)
    folds[np.random.default_rng(random_state).permutation(n)] = np.arange(n) % n_folds
    return folds


def residuals(
    train_covariates: np.ndarray,
    train_y: np.ndarray,
    covariates: np.ndarray,
    y: np.ndarray | None = None,
) -> np.ndarray:
    """``y`` (default ``train_y``) less a least-squares fit of ``train_y`` on the covariates."""
    fit = LinearRegression().fit(train_covariates, train_y)
    return (train_y if y is None else y) - fit.predict(covariates)


def fold_settings(
    n_folds: int, folds_by: str | None, test_groups: Sequence[str] | None, random_state: int | None
) -> dict[str, Any]:
    """The settings that determine the folds (those that do not are left at a constant)."""
    if isinstance(test_groups, str):
        test_groups = [test_groups]
    groups = sorted(str(g) for g in test_groups or [])
    if folds_by is None:
        if groups:
            raise ValueError("test_groups needs folds_by (the obs column they are values of)")
        return {
            "n_folds": int(n_folds),
            "folds_by": "",
            "test_groups": "",
            "random_state": seed_record(random_state),
        }
    return {"n_folds": 0, "folds_by": folds_by, "test_groups": ",".join(groups), "random_state": -1}


def seed_record(random_state: int | None) -> int:
    """The seed as recorded in ``uns`` (``-1`` for ``None``); only integers are accepted."""
    if random_state is not None and not isinstance(random_state, int | np.integer):
        raise TypeError("random_state must be an integer seed or None")
    return -1 if random_state is None else int(random_state)


def outer_folds(
    adata: ad.AnnData,
    *,
    n_folds: int,
    folds_by: str | None,
    test_groups: Sequence[str] | None,
    random_state: int | None,
) -> np.ndarray:
    """Each person's outer fold: reused from ``obs["gl_fold"]`` or drawn and stored there."""
    wanted = fold_settings(n_folds, folds_by, test_groups, random_state)
    stored = adata.uns.get(UNS_KEY, {}).get("folds")
    if FOLD_KEY in adata.obs.columns:
        folds = adata.obs[FOLD_KEY]
        if stored is not None and {k: stored[k] for k in wanted} != wanted:
            recorded = {k: stored[k] for k in wanted}
            raise ValueError(
                f"obs[{FOLD_KEY!r}] holds folds made with {recorded}, not {wanted}; every "
                f"method is compared on the same folds. To start over on other folds, delete "
                f"adata.obs[{FOLD_KEY!r}] and adata.uns[{UNS_KEY!r}]"
            )
        if folds.isna().any() or not np.allclose(folds, np.round(folds)):
            raise ValueError(f"obs[{FOLD_KEY!r}] must hold integers (-1: training only)")
        return folds.to_numpy().astype(np.int64)
    if folds_by is None:
        folds = random_folds(adata.n_obs, n_folds=n_folds, random_state=random_state)
    else:
        groups = [test_groups] if isinstance(test_groups, str) else list(test_groups or [])
        folds = group_folds(adata, folds_by, [str(g) for g in groups])
    adata.obs[FOLD_KEY] = folds
    adata.uns.setdefault(UNS_KEY, {})["folds"] = wanted
    return folds


def group_folds(adata: ad.AnnData, folds_by: str, test_groups: list[str]) -> np.ndarray:
    """Leave-one-group-out folds, or a single fold of the ``test_groups``."""
    if folds_by not in adata.obs.columns:
        raise KeyError(f"no column obs[{folds_by!r}] to split by")
    column = adata.obs[folds_by]
    labels = column.astype(str).to_numpy()
    present = column.notna().to_numpy()
    folds = np.full(adata.n_obs, -1, dtype=np.int64)
    if test_groups:
        missing = sorted(set(test_groups) - set(labels[present]))
        if missing:
            raise ValueError(f"test groups {missing} are not values of obs[{folds_by!r}]")
        folds[present & np.isin(labels, test_groups)] = 0
        if (folds == -1).sum() == 0:
            raise ValueError("the test groups hold everyone: nobody is left to train on")
        return folds
    groups = np.unique(labels[present])
    if groups.size < 2:
        raise ValueError(f"obs[{folds_by!r}] needs at least two groups to leave one out")
    folds[present] = np.searchsorted(groups, labels[present])
    return folds


#: Test folds with fewer people than this give unstable scores (a warning says so).
MIN_FOLD_PEOPLE = 20


def check_fold_sizes(folds: np.ndarray) -> None:
    """Warn when a test fold holds fewer than :data:`MIN_FOLD_PEOPLE` people."""
    folds = np.asarray(folds)
    sizes = {int(f): int((folds == f).sum()) for f in np.unique(folds[folds >= 0])}
    small = {f: n for f, n in sizes.items() if n < MIN_FOLD_PEOPLE}
    if small:
        warnings.warn(
            f"test folds with fewer than {MIN_FOLD_PEOPLE} people (fold: people {small}): "
            "their scores are unstable; use fewer folds or more people",
            UserWarning,
            stacklevel=3,
        )


def check_finite(values: np.ndarray, what: str) -> None:
    """NaN marks a missing value; an infinite one is an error naming ``what``."""
    infinite = np.flatnonzero(np.isinf(np.asarray(values, dtype=np.float64)))
    if infinite.size:
        raise ValueError(
            f"{what} has {infinite.size} infinite value(s) (rows {infinite[:10].tolist()}); "
            "use NaN for a missing value, or fix the transformation that made them"
        )
