"""One gene's regression fits: PrediXcan on dosages (:func:`fit_dosages`) and the
embedding regressions of :func:`~genlm_sc.tl.fit_expression`, gene by gene in this process
or as tasks over groups of genes on a ``dask.distributed`` cluster.

The main process reads each gene's features and expression (from the cohort and its
store) and the workers fit: the cross-validated elastic net or ridge of a gene is what
costs. Genes are sent in groups, with a bounded number of groups in flight, so the main
process holds the inputs of a few groups at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .cross_validation import (
    check_finite,
    check_fold_sizes,
    cross_validate,
    oracle_r,
    random_folds,
    residuals,
)
from .regressions import elastic_net, embedding_model, final_weights

__all__ = ["fit_dosages", "fit_gene_group", "fit_genes", "fit_regression"]

#: Methods that can be fitted as tasks (the trained language-model methods cannot).
TASK_METHODS = ("predixcan", "elastic_net", "ridge")


def fit_regression(
    method: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    folds: np.ndarray,
    covariates: np.ndarray | None,
    random_state: int | None,
    n_pcs: int | None,
    genetic: np.ndarray | None,
    feature_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """One gene's out-of-fold fit by ``"predixcan"``, ``"elastic_net"`` or ``"ridge"``,
    with its oracle r (``genetic``: the simulated genetic values, or ``None``)."""
    if method == "predixcan":
        fit = fit_dosages(x, y, folds=folds, covariates=covariates, random_state=random_state)
        fit["feature_names"] = feature_names
    else:
        model = embedding_model(method, n_features=x.shape[1], n_pcs=n_pcs,
                                random_state=random_state)  # fmt: skip
        fit = cross_validate(x, y, folds=folds, covariates=covariates, model=model)
        if n_pcs is not None:
            fit["n_features"] = min(n_pcs, x.shape[1], fit["n_train"])
    fit["oracle_r"] = oracle_r(genetic, fit)
    return fit


def fit_dosages(
    dosages: np.ndarray | pd.DataFrame,
    y: np.ndarray | pd.Series,
    *,
    folds: int | np.ndarray = 5,
    covariates: np.ndarray | pd.DataFrame | None = None,
    random_state: int | None = 0,
) -> dict[str, Any]:
    """PrediXcan on a plain dosage matrix: a cross-validated elastic net, then a final fit.

    The model is PrediXcan's: standardised dosages, elastic net with ``l1_ratio=0.5``,
    penalty chosen by 5-fold inner cross-validation
    (:class:`~sklearn.linear_model.ElasticNetCV`, with ``gl.settings.n_jobs`` workers). It is
    fitted within each outer fold on the training people and predicts the test people; a
    final fit on everyone gives the weights. The penalty path (100 values) runs down to 1e-3 of the
    largest penalty, or 1e-2 when there are more variants than people (glmnet's
    defaults); convergence warnings along it are silenced.

    Parameters
    ----------
    dosages
        People × variants (ALT allele counts, or imputed dosages), finite. A DataFrame's
        columns name the coefficients.
    y
        Expression of the people; people with a missing value (NaN) are left out.
    folds
        Outer fold of each person (integers; ``-1``: always in training, never tested),
        or a number of random folds drawn with ``random_state``.
    covariates
        People × covariates (numeric), regressed out of ``y`` within each training fold
        and applied to the test people (see :func:`fit_expression`); the final fit uses
        ``y`` adjusted on everyone.
    random_state
        Seed of the random folds and of the inner folds.

    Returns
    -------
    A dict with

    ``pred``
        Out-of-fold predictions (NaN for people never tested or without ``y``).
    ``observed``
        What they are scored against: ``y``, covariate-adjusted within each fold.
    ``r``, ``spearman``, ``r2``
        Pooled out-of-fold Pearson r, Spearman rho, R².
    ``coefficients``
        Weights of the final fit per ALT allele (per unit of dosage); a Series indexed by
        the columns for a DataFrame input.
    ``scaled_coefficients``
        The same weights per standard deviation of dosage (comparable across variants).
    ``intercept``, ``alpha``
        Of the final fit (``alpha``: the chosen penalty).
    ``n_train``, ``n_test``, ``n_features``, ``n_folds``
        Mean training-set size over folds, people tested, columns, outer folds.
    """
    names = dosages.columns if isinstance(dosages, pd.DataFrame) else None
    x = np.asarray(dosages, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).ravel()
    if x.ndim != 2 or x.shape[0] != y.size:
        raise ValueError(f"dosages {x.shape} and y ({y.size},) do not match people")
    if not np.isfinite(x).all():
        raise ValueError("dosages have missing or non-finite values; impute them first")
    check_finite(y, "y")
    if np.isscalar(folds):
        folds = random_folds(y.size, n_folds=folds, random_state=random_state)
    check_fold_sizes(np.asarray(folds))
    confounders = None if covariates is None else np.asarray(covariates, dtype=np.float64)
    model = elastic_net(n_features=x.shape[1], random_state=random_state)
    fit = cross_validate(x, y, folds=np.asarray(folds), covariates=confounders, model=model)

    known = np.isfinite(y)
    target = y[known]
    if confounders is not None:
        target = residuals(confounders[known], target, confounders[known])
    final = model().fit(x[known], target) if known.sum() > 1 else None
    weights, scaled, intercept, alpha = final_weights(final, n_features=x.shape[1])
    if names is not None:
        weights = pd.Series(weights, index=names, name="weight")
        scaled = pd.Series(scaled, index=names, name="scaled_weight")
    return fit | {
        "coefficients": weights,
        "scaled_coefficients": scaled,
        "intercept": intercept,
        "alpha": alpha,
    }


def fit_gene_group(genes: list[dict[str, Any]], common: dict[str, Any]) -> list[dict[str, Any]]:
    """The fits of a group of genes (a task): each ``genes`` entry holds ``x``, ``y``,
    ``genetic`` and ``feature_names``; ``common`` the method and fold settings."""
    return [fit_regression(x=g["x"], y=g["y"], genetic=g["genetic"],
                           feature_names=g["feature_names"], **common)
            for g in genes]  # fmt: skip


def fit_genes(
    gene_ids: Sequence[str],
    inputs: Callable[[str], dict[str, Any]],
    common: dict[str, Any],
    *,
    client: Any,
    n_jobs: int | None,
    genes_per_task: int = 8,
) -> dict[str, dict[str, Any]]:
    """Fit every gene of ``gene_ids`` on a cluster (``client`` or ``n_jobs`` local
    workers); ``inputs(gene)`` gives the entry :func:`fit_gene_group` takes."""
    from ..._engine import cluster, run_tasks, task_slots

    def groups() -> Iterator[dict[str, Any]]:
        for start in range(0, len(gene_ids), genes_per_task):
            chunk = gene_ids[start : start + genes_per_task]
            yield {"genes": [inputs(gene) for gene in chunk], "common": common}

    n_tasks = -(-len(gene_ids) // genes_per_task)
    with cluster(client, n_jobs) as running:
        slots = task_slots(running)
        results = run_tasks(
            running, fit_gene_group, groups(), progress=False, description="fit_expression",
            unit="gene group", total=n_tasks, max_in_flight=2 * slots,
        )  # fmt: skip
    fits = [fit for group in results for fit in group]
    return dict(zip(gene_ids, fits, strict=True))
