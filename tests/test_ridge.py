"""The covariance route of leave-one-out ridge equals scikit-learn's RidgeCV."""

import numpy as np
import pytest
from sklearn.linear_model import RidgeCV

from genlm_sc.tl.expression.ridge import CovarianceRidgeCV

ALPHAS = np.logspace(-3, 6, 19)


def _data(n: int, p: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, p)) * rng.uniform(0.1, 3, size=p) + rng.normal(size=p)
    beta = rng.normal(size=(p, 2)) * (rng.random((p, 2)) < 0.3)
    return x, x @ beta + rng.normal(size=(n, 2)) * 2 + 5


@pytest.mark.parametrize("shape", [(200, 30), (120, 100)])
@pytest.mark.parametrize("targets", ["one", "per_target", "shared"])
def test_equals_sklearn_when_rows_outnumber_columns(shape, targets):
    x, y = _data(*shape)
    y = y[:, 0] if targets == "one" else y
    options = {"alphas": ALPHAS, "alpha_per_target": targets == "per_target"}
    ours, theirs = CovarianceRidgeCV(**options).fit(x, y), RidgeCV(**options).fit(x, y)
    np.testing.assert_allclose(ours.alpha_, theirs.alpha_)
    np.testing.assert_allclose(ours.best_score_, theirs.best_score_, rtol=1e-8)
    np.testing.assert_allclose(ours.coef_, theirs.coef_, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(ours.intercept_, theirs.intercept_, rtol=1e-8)
    np.testing.assert_allclose(ours.predict(x[:7]), theirs.predict(x[:7]), rtol=1e-8)


def test_chooses_a_large_penalty_for_noise_and_a_small_one_for_signal():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 20))
    noise = CovarianceRidgeCV(alphas=ALPHAS).fit(x, rng.normal(size=400))
    signal = CovarianceRidgeCV(alphas=ALPHAS).fit(x, x @ np.arange(20.0))
    assert noise.alpha_ >= 1e3 and signal.alpha_ <= 1e-2


def test_other_cases_go_to_sklearn():
    x, y = _data(20, 50)  # more columns than rows, and sample weights
    for kwargs in ({}, {"sample_weight": np.linspace(0.5, 2, 20)}):
        ours = CovarianceRidgeCV(alphas=ALPHAS).fit(x, y[:, 0], **kwargs)
        theirs = RidgeCV(alphas=ALPHAS).fit(x, y[:, 0], **kwargs)
        np.testing.assert_allclose(ours.coef_, theirs.coef_)
