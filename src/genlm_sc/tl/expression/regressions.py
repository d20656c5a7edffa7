"""The regressions of the expression methods: PrediXcan's elastic net, ridge, PCA.

Each factory returns a function that makes a fresh, unfitted model, so that
:func:`~genlm_sc.tl.expression.cross_validation.cross_validate` can refit one per fold.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.decomposition import PCA
from sklearn.dummy import DummyRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNetCV
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ..._settings import settings
from .ridge import CovarianceRidgeCV

__all__ = ["QuietPipeline", "elastic_net", "elastic_net_cv", "embedding_model", "final_weights"]

#: Penalties tried by the ridge regression (on standardised features).
RIDGE_ALPHAS = np.logspace(-3, 6, 19)
#: Inner folds of the elastic net's choice of penalty.
INNER_FOLDS = 5


def elastic_net(*, n_features: int, random_state: int | None) -> Callable[[], RegressorMixin]:
    """Factory of PrediXcan's standardise + ElasticNetCV pipeline."""

    def make() -> RegressorMixin:
        if n_features == 0:
            return DummyRegressor()
        return QuietPipeline(make_pipeline(StandardScaler(), elastic_net_cv(random_state)))

    return make


def embedding_model(
    method: str, *, n_features: int, n_pcs: int | None, random_state: int | None
) -> Callable[[], RegressorMixin]:
    """Factory of standardise (+ PCA) + ElasticNetCV or (Covariance)RidgeCV pipelines."""

    def make() -> RegressorMixin:
        if n_features == 0:
            return DummyRegressor()
        steps: list[Any] = [StandardScaler()]
        if n_pcs is not None:
            # from the eigenvectors of the covariance: LAPACK's divide-and-conquer SVD
            # (gesdd, PCA's "full" solver) can fail to converge on rank-deficient features,
            # as embeddings of people sharing haplotypes are
            steps.append(
                PCA(n_components=n_pcs, svd_solver="covariance_eigh", random_state=random_state)
            )
        steps.append(
            CovarianceRidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True)
            if method == "ridge"
            else elastic_net_cv(random_state)
        )
        return QuietPipeline(make_pipeline(*steps), n_pcs=n_pcs)

    return make


def elastic_net_cv(random_state: int | None) -> ElasticNetCV:
    """Elastic net, ``l1_ratio=0.5``, penalty chosen by shuffled 5-fold inner CV."""
    inner = KFold(INNER_FOLDS, shuffle=True, random_state=random_state)
    return ElasticNetCV(l1_ratio=0.5, cv=inner, n_jobs=settings.n_jobs)


class QuietPipeline:
    """A pipeline fitted quietly (no convergence warnings along the penalty path).

    A PCA step keeps at most as many components as the training data allows. As in
    glmnet, the elastic net's penalty path ends at 1e-2 of the largest penalty when there
    are more features than people (1e-3 otherwise): smaller penalties only interpolate.
    """

    def __init__(self, pipeline: Pipeline, *, n_pcs: int | None = None):
        self.pipeline = pipeline
        self.n_pcs = n_pcs

    def fit(self, x: np.ndarray, y: np.ndarray) -> QuietPipeline:
        n_features = x.shape[1]
        if self.n_pcs is not None:
            n_features = min(self.n_pcs, *x.shape)
            self.pipeline.named_steps["pca"].n_components = n_features
        net = self.pipeline[-1]
        if isinstance(net, ElasticNetCV):
            net.eps = 1e-2 if x.shape[0] < n_features else 1e-3
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            self.pipeline.fit(x, y)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.pipeline.predict(x)


def final_weights(
    final: RegressorMixin | None, *, n_features: int
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per-allele and per-SD weights, intercept and penalty of a final elastic net fit."""
    zeros = np.zeros(n_features)
    if final is None or not isinstance(final, QuietPipeline):
        intercept = float(final.constant_[0, 0]) if final is not None else np.nan
        return zeros, zeros.copy(), intercept, np.nan
    scaler, net = final.pipeline[0], final.pipeline[-1]
    scaled = np.asarray(net.coef_, dtype=np.float64)
    weights = scaled / scaler.scale_
    intercept = float(net.intercept_ - weights @ scaler.mean_)
    return weights, scaled, intercept, float(net.alpha_)
