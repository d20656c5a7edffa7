"""Ridge regression with the penalty chosen by leave-one-out, fast when genes outnumber features."""

from __future__ import annotations

import numpy as np
from scipy import linalg, sparse
from sklearn.linear_model import RidgeCV


class CovarianceRidgeCV(RidgeCV):
    """:class:`~sklearn.linear_model.RidgeCV` that decomposes ``XᵀX`` when rows outnumber columns.

    scikit-learn's efficient leave-one-out decomposes the design itself: an eigendecomposition
    of the n × n Gram matrix, or, for dense data with more rows than columns, a thin SVD of
    the n × p design. The same leave-one-out errors follow from the eigendecomposition of
    the p × p cross-product of the centred design, which costs a fraction of that SVD: for
    7,000 genes × 5,440 k-mer features, 35 s instead of 190 s on two cores. This class takes
    that route for dense data without sample weights when n > p and the default scoring and
    leave-one-out are asked for; anything else goes to :class:`~sklearn.linear_model.RidgeCV`
    unchanged. Fitted attributes are those of ``RidgeCV``: ``alpha_``, ``best_score_``
    (negative mean squared leave-one-out error), ``coef_`` and ``intercept_``.

    With centred columns ``Xc = X - mean`` and ``XcᵀXc = V diag(w) Vᵀ``, ``Z = Xc V``:
    the fitted values are ``ȳ + Z diag(1 / (w + α)) Zᵀ (y - ȳ)`` and the leverage of row i,
    with the unpenalised intercept, is ``1/n + Σⱼ Z²ᵢⱼ / (wⱼ + α)``; the leave-one-out
    residual is the residual divided by one minus the leverage.
    """

    def fit(self, X, y, sample_weight=None, **params):
        """Fit the model, choosing the penalty by leave-one-out (see the class)."""
        shortcut = (
            sample_weight is None
            and not params
            and self.cv is None
            and self.scoring is None
            and self.fit_intercept
            and not self.store_cv_results
            and not sparse.issparse(X)
            and np.ndim(X) == 2
            and np.shape(X)[0] > np.shape(X)[1]
        )
        if not shortcut:
            return super().fit(X, y, sample_weight=sample_weight, **params)
        x = np.asarray(X, dtype=np.float64)
        targets = np.asarray(y, dtype=np.float64)
        one_target = targets.ndim == 1
        targets = targets.reshape(x.shape[0], -1)
        x_mean, y_mean = x.mean(axis=0), targets.mean(axis=0)
        centred = x - x_mean
        eigenvalues, vectors = linalg.eigh(centred.T @ centred, driver="evd")
        eigenvalues = np.clip(eigenvalues, 0.0, None)
        rotated = centred @ vectors
        projected = rotated.T @ (targets - y_mean)
        squared = rotated**2
        alphas = np.atleast_1d(np.asarray(self.alphas, dtype=np.float64))
        errors = np.empty((alphas.size, targets.shape[1]))
        for i, alpha in enumerate(alphas):
            shrink = 1.0 / (eigenvalues + alpha)
            fitted = y_mean + rotated @ (shrink[:, None] * projected)
            leverage = 1.0 / x.shape[0] + squared @ shrink
            loo = (targets - fitted) / (1.0 - leverage)[:, None]
            errors[i] = np.mean(loo**2, axis=0)
        if self.alpha_per_target:
            best = np.argmin(errors, axis=0)
            alpha = alphas[best]
            self.best_score_ = -errors[best, np.arange(targets.shape[1])]
        else:
            mean_errors = errors.mean(axis=1)
            best = int(np.argmin(mean_errors))
            alpha = np.full(targets.shape[1], alphas[best])
            self.best_score_ = -float(mean_errors[best])
        coef = vectors @ (projected / (eigenvalues[:, None] + alpha[None, :]))
        self.coef_ = coef.T[0] if one_target else coef.T
        self.intercept_ = y_mean - x_mean @ coef
        if one_target:
            self.intercept_ = float(self.intercept_[0])
            if np.ndim(self.best_score_):
                self.best_score_ = float(self.best_score_[0])
        self.alpha_ = float(alpha[0]) if one_target or not self.alpha_per_target else alpha
        self.n_features_in_ = x.shape[1]
        return self
