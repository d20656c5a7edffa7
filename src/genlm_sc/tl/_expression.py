"""Expression prediction from genotypes: PrediXcan on dosages, regressions on embeddings."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd
import xarray as xr
from scipy import sparse, stats
from sklearn.base import RegressorMixin
from sklearn.decomposition import PCA
from sklearn.dummy import DummyRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import ElasticNetCV, LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ..store import open_haplotypes
from ._ridge import CovarianceRidgeCV

__all__ = ["fit_dosages", "fit_expression"]

Method = Literal["predixcan", "elastic_net", "ridge", "finetune"]
#: The methods of :func:`fit_expression`.
METHODS: tuple[str, ...] = ("predixcan", "elastic_net", "ridge", "finetune")
#: ``obs`` column with each person's outer fold (``-1``: always in training).
FOLD_KEY = "gl_fold"
#: ``uns`` key of the folds' settings, the comparison table, the settings of each fit.
UNS_KEY = "gl_expression"
#: Penalties tried by the ridge regression (on standardised features).
RIDGE_ALPHAS = np.logspace(-3, 6, 19)
#: Inner folds of the elastic net's choice of penalty.
INNER_FOLDS = 5
_COLUMNS = [
    "gene",
    "gene_name",
    "method",
    "r",
    "spearman",
    "r2",
    "n_train",
    "n_test",
    "n_features",
    "n_folds",
    "oracle_r",
]


def fit_expression(
    adata: ad.AnnData,
    *,
    method: Method,
    genes: Sequence[str] | None = None,
    cv: int = 5,
    split_by: str | None = None,
    test_groups: Sequence[str] | None = None,
    covariates: Sequence[str] | pd.DataFrame | None = None,
    window: int = 1_000_000,
    use_rep: str = "X_gl",
    diploid: Literal["concat", "mean"] = "concat",
    n_pcs: int | None = None,
    finetune_options: Mapping[str, Any] | None = None,
    rng: int | None = 0,
    key_added: str | None = None,
    copy: bool = False,
) -> pd.DataFrame | ad.AnnData:
    """Predict each person's expression of each gene from their genotypes, out of fold.

    Every method is scored on the same outer cross-validation folds, so that methods can
    be compared gene by gene: the folds are drawn once (from ``rng``, ``cv`` and
    ``split_by``), stored in ``adata.obs["gl_fold"]`` and reused by every later call.
    Within each outer fold the model, its standardisation and PCA, and the covariate
    adjustment are fitted on the training people only and applied to the test people.

    Methods:

    ``"predixcan"``
        PrediXcan: an elastic net (``l1_ratio=0.5``, penalty chosen by 5-fold inner
        cross-validation, :class:`~sklearn.linear_model.ElasticNetCV`) on the standardised
        cis genotype dosages (see :func:`fit_dosages`). Dosages are ALT allele counts
        summed over the two haplotypes, one column per ALT allele of a multi-allelic
        record, of the gene's variants within ``window`` bp of its anchor (the TSS for a
        default panel); variants monomorphic in the cohort are dropped. The store holds
        only the variants inside each gene window, so PrediXcan's 1-Mb cis window is
        clipped to the gene window; a smaller ``window`` narrows it.
    ``"elastic_net"``
        The UKBioBERT recipe: the same elastic net on each person's haplotype embeddings
        (``obsm[use_rep]`` of :func:`genlm_sc.get.gene_view`; the two haplotypes
        concatenated by default), standardised, optionally reduced to ``n_pcs``
        principal components.
    ``"ridge"``
        Ridge regression (:class:`~sklearn.linear_model.RidgeCV`, penalty chosen among
        ``RIDGE_ALPHAS`` by leave-one-out) on the same embedding features.
    ``"finetune"``
        The language model itself, fine-tuned per gene and outer fold on the training
        people: the encoder is applied to each of a person's two haplotypes, the mean
        token states are concatenated and a linear head predicts expression (standardised
        on the training people). LoRA adapters on a frozen encoder or a pruned, fully
        trained encoder; the settings, including the checkpoint, are ``finetune_options``
        (see :class:`genlm_sc.tl._finetune.FinetuneOptions`). With
        ``finetune_options["output_dir"]`` each fold's fitted model is saved to
        ``output_dir/<gene>/fold_<k>`` for :func:`genlm_sc.tl.predict`.

    Parameters
    ----------
    adata
        A cohort (:func:`genlm_sc.pp.personal_sequences`) with expression in ``X``
        (people × genes), e.g. from :func:`genlm_sc.datasets.simulate_expression`. The
        embedding methods also need :func:`genlm_sc.tl.embed` to have been run.
    method
        ``"predixcan"``, ``"elastic_net"``, ``"ridge"`` or ``"finetune"``.
    genes
        Gene ids or unique gene names to fit (default: all).
    cv
        Number of outer folds (random, drawn with ``rng``) when ``split_by`` is ``None``.
    split_by
        ``obs`` column (e.g. ``"population"``) whose groups are kept whole: the models are
        trained on some groups and tested on others. With ``test_groups``, a single split
        (train on the other groups, test on these); without, leave-one-group-out. People
        with a missing group are only ever in training.
    test_groups
        Values of ``split_by`` making up the test set.
    covariates
        ``obs`` column names (numeric, or categorical ones expanded to indicator columns)
        or a DataFrame indexed by ``obs_names``. They are regressed out of expression
        (ordinary least squares with an intercept) within each outer fold: the
        regression is fitted on the training people, its residuals are the training
        targets, and the test people's expression is adjusted with the same
        coefficients; predictions are scored against that adjusted expression.
    window
        Cis window of ``"predixcan"``, in bp either side of the gene's anchor.
    use_rep
        Haplotype embedding used by the embedding methods (``key_added`` of
        :func:`genlm_sc.tl.embed`).
    diploid
        How :func:`genlm_sc.get.gene_view` combines a person's two haplotype embeddings:
        ``"concat"`` or ``"mean"``.
    n_pcs
        Principal components of the standardised embedding features kept (fitted on the
        training people of each fold); ``None``: no PCA. Embedding methods only.
    finetune_options
        Settings of ``"finetune"`` (required by it, rejected by the others), a mapping
        with the fields of :class:`genlm_sc.tl._finetune.FinetuneOptions`: ``model`` (the
        checkpoint directory, required), ``strategy`` (``"lora"`` or ``"prune"``),
        ``n_layers``, ``epochs``, ``batch_size``, ``learning_rate``, ``weight_decay``,
        ``pairwise_weight``, ``lora_rank``, ``lora_alpha``, ``target_modules``,
        ``device``, ``seed``, ``output_dir`` and ``progress``.
    rng
        Seed of the outer folds and the inner folds.
    key_added
        Name of this fit in the outputs (default: ``method``), e.g. to keep a ridge fit
        with and without PCA.
    copy
        Work on and return a copy of ``adata``.

    Returns
    -------
    The comparison table of every fit made so far on ``adata`` (or the annotated copy
    when ``copy=True``): one row per gene and fit, with ``gene``, ``gene_name``,
    ``method`` (the fit's name), out-of-fold Pearson ``r``, Spearman rho (``spearman``)
    and ``r2`` (``1 - SS_res / SS_tot``, may be negative) over all tested people pooled,
    ``n_train`` (mean training-set size over folds), ``n_test`` (people with an
    out-of-fold prediction), ``n_features``, ``n_folds`` and ``oracle_r``
    (``sqrt(var["sim_h2"])`` for simulated expression, else NaN). ``r`` and ``spearman``
    are NaN when the predictions are constant. Sets, with ``key = key_added or method``:

    ``adata.layers["gl_pred_" + key]``
        Out-of-fold predictions (people × genes; NaN for genes not fitted and people
        never tested).
    ``adata.layers["gl_adjusted_" + key]``
        With ``covariates``: the covariate-adjusted expression the predictions are
        scored against.
    ``adata.var["gl_" + key + "_r"]``, ``..._spearman``, ``..._r2``
        The per-gene scores.
    ``adata.obs["gl_fold"]``
        Outer fold of each person (``-1``: always in training).
    ``adata.uns["gl_expression"]``
        ``"folds"`` (their settings), ``"results"`` (the table, accumulated over calls;
        a refit replaces its earlier rows), ``"params"`` (the settings of each fit) and,
        for ``"predixcan"``, ``"weights"``: the non-zero per-allele weights of a final
        fit on all people (gene, feature, weight), PrediXcan's weight table.

    Existing ``obs["gl_fold"]`` without recorded settings are used as given (custom
    folds: integers, ``-1`` for people only ever trained on). Folds recorded with other
    settings raise an error rather than mixing splits in one comparison.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {list(METHODS)}")
    if n_pcs is not None and method in ("predixcan", "finetune"):
        raise ValueError(f"n_pcs applies to the embedding methods, not to {method!r}")
    if (finetune_options is not None) != (method == "finetune"):
        raise ValueError("finetune_options is required by method='finetune' and only by it")
    if adata.X is None:
        raise ValueError("adata has no expression in X (people × genes)")
    adata = adata.copy() if copy else adata
    key = key_added or method
    gene_ids = _resolve_genes(adata, genes)
    folds = _outer_folds(adata, cv=cv, split_by=split_by, test_groups=test_groups, rng=rng)
    confounders = _covariate_matrix(adata, covariates)
    if method == "predixcan":
        features = _dosage_source(adata, window=window)
    elif method == "finetune":
        from ._finetune import finetune_source

        features, finetune = finetune_source(adata, finetune_options)
    else:
        features = _embedding_source(adata, use_rep=use_rep, diploid=diploid)

    fits: dict[str, dict[str, Any]] = {}
    for gene in gene_ids:
        x, names = features(gene)
        y = _expression(adata, gene)
        if method == "predixcan":
            fits[gene] = fit_dosages(x, y, folds=folds, covariates=confounders, rng=rng)
            fits[gene]["feature_names"] = names
        elif method == "finetune":
            fits[gene] = finetune(gene, x, y, folds=folds, covariates=confounders)
        else:
            model = _embedding_model(method, n_features=x.shape[1], n_pcs=n_pcs, rng=rng)
            fits[gene] = _cross_validate(x, y, folds=folds, covariates=confounders, model=model)
            if n_pcs is not None:
                fits[gene]["n_features"] = min(n_pcs, x.shape[1], fits[gene]["n_train"])

    params = {
        "method": method,
        "genes": np.asarray(gene_ids, dtype=str),
        "covariates": _describe_covariates(covariates),
        "window": int(window),
        "use_rep": use_rep if method in ("elastic_net", "ridge") else "",
        "diploid": diploid if method in ("elastic_net", "ridge") else "",
        "n_pcs": -1 if n_pcs is None else int(n_pcs),
        "rng": -1 if rng is None else int(rng),
    }
    if method == "finetune":
        params["finetune"] = finetune.options.record()
    _write_outputs(adata, key=key, fits=fits, params=params, adjusted=confounders is not None)
    results = adata.uns[UNS_KEY]["results"]
    return adata if copy else results


def fit_dosages(
    dosages: np.ndarray | pd.DataFrame,
    y: np.ndarray | pd.Series,
    *,
    folds: int | np.ndarray = 5,
    covariates: np.ndarray | pd.DataFrame | None = None,
    rng: int | None = 0,
) -> dict[str, Any]:
    """PrediXcan on a plain dosage matrix: a cross-validated elastic net, then a final fit.

    The model is PrediXcan's: standardised dosages, elastic net with ``l1_ratio=0.5``,
    penalty chosen by 5-fold inner cross-validation
    (:class:`~sklearn.linear_model.ElasticNetCV`, ``n_jobs=1``). It is fitted within each
    outer fold on the training people and predicts the test people; a final fit on
    everyone gives the weights. The penalty path (100 values) runs down to 1e-3 of the
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
        or a number of random folds drawn with ``rng``.
    covariates
        People × covariates (numeric), regressed out of ``y`` within each training fold
        and applied to the test people (see :func:`fit_expression`); the final fit uses
        ``y`` adjusted on everyone.
    rng
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
    if np.isscalar(folds):
        folds = _random_folds(y.size, n_folds=int(folds), rng=rng)
    confounders = None if covariates is None else np.asarray(covariates, dtype=np.float64)
    model = _elastic_net(n_features=x.shape[1], rng=rng)
    fit = _cross_validate(x, y, folds=np.asarray(folds), covariates=confounders, model=model)

    known = np.isfinite(y)
    target = y[known]
    if confounders is not None:
        target = _residuals(confounders[known], target, confounders[known])
    final = model().fit(x[known], target) if known.sum() > 1 else None
    weights, scaled, intercept, alpha = _final_weights(final, n_features=x.shape[1])
    if names is not None:
        weights = pd.Series(weights, index=names, name="weight")
        scaled = pd.Series(scaled, index=names, name="scaled_weight")
    return fit | {
        "coefficients": weights,
        "scaled_coefficients": scaled,
        "intercept": intercept,
        "alpha": alpha,
    }


def _cross_validate(
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
            held_out = _residuals(covariates[train], target, covariates[test], held_out)
            target = _residuals(covariates[train], target, covariates[train])
        fitted = model().fit(x[train], target).predict(x[test])
        pred[test] = np.reshape(fitted, (-1, columns.shape[1]))
        observed[test] = np.reshape(held_out, (-1, columns.shape[1]))
        train_sizes.append(int(train.sum()))
    tested = np.isfinite(pred).all(axis=1)
    scores = [_scores(observed[tested, j], pred[tested, j]) for j in range(columns.shape[1])]
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


def _scores(observed: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Pearson r, Spearman rho and R² of predictions (r and rho NaN when either is constant)."""
    if observed.size < 2:
        return {"r": np.nan, "spearman": np.nan, "r2": np.nan}
    r2 = float(r2_score(observed, predicted))
    if np.ptp(observed) == 0 or np.ptp(predicted) == 0:
        return {"r": np.nan, "spearman": np.nan, "r2": r2}
    r = float(np.corrcoef(observed, predicted)[0, 1])
    rho = float(stats.spearmanr(observed, predicted).statistic)
    return {"r": r, "spearman": rho, "r2": r2}


def _random_folds(n: int, *, n_folds: int, rng: int | None) -> np.ndarray:
    """Each of ``n`` people's fold: a random, balanced assignment to ``n_folds`` folds."""
    if not 2 <= n_folds <= n:
        raise ValueError(f"cannot make {n_folds} folds of {n} people")
    folds = np.empty(n, dtype=np.int64)
    folds[np.random.default_rng(rng).permutation(n)] = np.arange(n) % n_folds
    return folds


# --- models -----------------------------------------------------------------------------


def _elastic_net(*, n_features: int, rng: int | None) -> Callable[[], RegressorMixin]:
    """Factory of PrediXcan's standardise + ElasticNetCV pipeline."""

    def make() -> RegressorMixin:
        if n_features == 0:
            return DummyRegressor()
        return _Model(make_pipeline(StandardScaler(), _elastic_net_cv(rng)))

    return make


def _embedding_model(
    method: str, *, n_features: int, n_pcs: int | None, rng: int | None
) -> Callable[[], RegressorMixin]:
    """Factory of standardise (+ PCA) + ElasticNetCV or (Covariance)RidgeCV pipelines."""

    def make() -> RegressorMixin:
        if n_features == 0:
            return DummyRegressor()
        steps: list[Any] = [StandardScaler()]
        if n_pcs is not None:
            steps.append(PCA(n_components=n_pcs, random_state=rng))
        steps.append(
            CovarianceRidgeCV(alphas=RIDGE_ALPHAS, alpha_per_target=True)
            if method == "ridge"
            else _elastic_net_cv(rng)
        )
        return _Model(make_pipeline(*steps), n_pcs=n_pcs)

    return make


def _elastic_net_cv(rng: int | None) -> ElasticNetCV:
    """Elastic net, ``l1_ratio=0.5``, penalty chosen by shuffled 5-fold inner CV."""
    inner = KFold(INNER_FOLDS, shuffle=True, random_state=rng)
    return ElasticNetCV(l1_ratio=0.5, cv=inner, n_jobs=1)


class _Model:
    """A pipeline fitted quietly (no convergence warnings along the penalty path).

    A PCA step keeps at most as many components as the training data allows. As in
    glmnet, the elastic net's penalty path ends at 1e-2 of the largest penalty when there
    are more features than people (1e-3 otherwise): smaller penalties only interpolate.
    """

    def __init__(self, pipeline: Pipeline, *, n_pcs: int | None = None):
        self.pipeline = pipeline
        self.n_pcs = n_pcs

    def fit(self, x: np.ndarray, y: np.ndarray) -> _Model:
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


def _final_weights(
    final: RegressorMixin | None, *, n_features: int
) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Per-allele and per-SD weights, intercept and penalty of a final elastic net fit."""
    zeros = np.zeros(n_features)
    if final is None or not isinstance(final, _Model):
        intercept = float(final.constant_[0, 0]) if final is not None else np.nan
        return zeros, zeros.copy(), intercept, np.nan
    scaler, net = final.pipeline[0], final.pipeline[-1]
    scaled = np.asarray(net.coef_, dtype=np.float64)
    weights = scaled / scaler.scale_
    intercept = float(net.intercept_ - weights @ scaler.mean_)
    return weights, scaled, intercept, float(net.alpha_)


def _residuals(
    train_covariates: np.ndarray,
    train_y: np.ndarray,
    covariates: np.ndarray,
    y: np.ndarray | None = None,
) -> np.ndarray:
    """``y`` (default ``train_y``) less a least-squares fit of ``train_y`` on the covariates."""
    fit = LinearRegression().fit(train_covariates, train_y)
    return (train_y if y is None else y) - fit.predict(covariates)


# --- inputs -----------------------------------------------------------------------------


def _resolve_genes(adata: ad.AnnData, genes: Sequence[str] | None) -> list[str]:
    """Gene ids of ``adata`` from ids or unique gene names (default: all)."""
    if genes is None:
        return list(adata.var_names)
    if isinstance(genes, str):
        genes = [genes]
    names = adata.var["gene_name"] if "gene_name" in adata.var else pd.Series(dtype=str)
    ids = []
    for gene in genes:
        if gene in adata.var_names:
            ids.append(gene)
            continue
        matches = adata.var_names[(names == gene).to_numpy()] if len(names) else []
        if len(matches) != 1:
            raise KeyError(f"unknown gene {gene!r} (give a gene id or a unique gene name)")
        ids.append(matches[0])
    return ids


def _expression(adata: ad.AnnData, gene: str) -> np.ndarray:
    column = adata[:, gene].X
    column = column.toarray() if sparse.issparse(column) else np.asarray(column)
    return column.astype(np.float64).ravel()


def _fold_settings(
    cv: int, split_by: str | None, test_groups: Sequence[str] | None, rng: int | None
) -> dict[str, Any]:
    """The settings that determine the folds (those that do not are left at a constant)."""
    if isinstance(test_groups, str):
        test_groups = [test_groups]
    groups = sorted(str(g) for g in test_groups or [])
    if split_by is None:
        if groups:
            raise ValueError("test_groups needs split_by (the obs column they are values of)")
        return {"cv": int(cv), "split_by": "", "test_groups": "", "rng": _seed(rng)}
    return {"cv": 0, "split_by": split_by, "test_groups": ",".join(groups), "rng": -1}


def _seed(rng: int | None) -> int:
    if rng is not None and not isinstance(rng, int | np.integer):
        raise TypeError("rng must be an integer seed or None")
    return -1 if rng is None else int(rng)


def _outer_folds(
    adata: ad.AnnData,
    *,
    cv: int,
    split_by: str | None,
    test_groups: Sequence[str] | None,
    rng: int | None,
) -> np.ndarray:
    """Each person's outer fold: reused from ``obs["gl_fold"]`` or drawn and stored there."""
    wanted = _fold_settings(cv, split_by, test_groups, rng)
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
    if split_by is None:
        folds = _random_folds(adata.n_obs, n_folds=cv, rng=rng)
    else:
        groups = [test_groups] if isinstance(test_groups, str) else list(test_groups or [])
        folds = _group_folds(adata, split_by, [str(g) for g in groups])
    adata.obs[FOLD_KEY] = folds
    adata.uns.setdefault(UNS_KEY, {})["folds"] = wanted
    return folds


def _group_folds(adata: ad.AnnData, split_by: str, test_groups: list[str]) -> np.ndarray:
    """Leave-one-group-out folds, or a single fold of the ``test_groups``."""
    if split_by not in adata.obs.columns:
        raise KeyError(f"no column obs[{split_by!r}] to split by")
    column = adata.obs[split_by]
    labels = column.astype(str).to_numpy()
    present = column.notna().to_numpy()
    folds = np.full(adata.n_obs, -1, dtype=np.int64)
    if test_groups:
        missing = sorted(set(test_groups) - set(labels[present]))
        if missing:
            raise ValueError(f"test groups {missing} are not values of obs[{split_by!r}]")
        folds[present & np.isin(labels, test_groups)] = 0
        if (folds == -1).sum() == 0:
            raise ValueError("the test groups hold everyone: nobody is left to train on")
        return folds
    groups = np.unique(labels[present])
    if groups.size < 2:
        raise ValueError(f"obs[{split_by!r}] needs at least two groups to leave one out")
    folds[present] = np.searchsorted(groups, labels[present])
    return folds


def _covariate_matrix(
    adata: ad.AnnData, covariates: Sequence[str] | pd.DataFrame | None
) -> np.ndarray | None:
    """Numeric people × covariates (categorical columns as indicators, first level dropped)."""
    if covariates is None:
        return None
    if isinstance(covariates, pd.DataFrame):
        missing = adata.obs_names.difference(covariates.index)
        if len(missing):
            raise KeyError(f"covariates lack {len(missing)} people, e.g. {list(missing[:5])}")
        table = covariates.loc[adata.obs_names]
    else:
        columns = [covariates] if isinstance(covariates, str) else list(covariates)
        unknown = [c for c in columns if c not in adata.obs.columns]
        if unknown:
            raise KeyError(f"no covariate columns {unknown} in obs")
        table = adata.obs[columns]
    if table.shape[1] == 0:
        return None
    table = pd.get_dummies(table, drop_first=True, dtype=np.float64)
    matrix = table.to_numpy(dtype=np.float64)
    if not np.isfinite(matrix).all():
        raise ValueError("covariates have missing or non-finite values")
    return matrix


def _describe_covariates(covariates: Sequence[str] | pd.DataFrame | None) -> np.ndarray:
    if covariates is None:
        return np.array([], dtype=str)
    if isinstance(covariates, pd.DataFrame):
        return np.asarray(covariates.columns, dtype=str)
    return np.asarray([covariates] if isinstance(covariates, str) else covariates, dtype=str)


def _dosage_source(
    adata: ad.AnnData, *, window: int
) -> Callable[[str], tuple[np.ndarray, list[str]]]:
    """Gene → (people × ALT-allele dosages of its cis variants, their names)."""
    ds = open_haplotypes(adata)
    store_gene = {str(g): i for i, g in enumerate(ds["gene"].values)}
    store_row = {str(s): i for i, s in enumerate(ds["sample"].values)}
    missing = [s for s in adata.obs_names if s not in store_row]
    if missing:
        raise KeyError(f"people missing from the haplotype store: {missing[:5]}")
    rows = np.array([store_row[s] for s in adata.obs_names], dtype=np.int64)
    variant_gene = ds["variant_gene"].values
    position = ds["variant_position"].values

    def dosages(gene: str) -> tuple[np.ndarray, list[str]]:
        g = store_gene[gene]
        index = np.flatnonzero(variant_gene == g)
        index = index[np.abs(position[index] - _anchor(ds, g)) <= window]
        genotype = ds["genotype"].isel(variant=index).values[rows]
        columns, names = [], []
        for j, v in enumerate(index):
            alts = str(ds["variant_alt"].values[v]).split(",")
            for allele, alt in enumerate(alts, start=1):
                column = (genotype[:, j, :] == allele).sum(axis=1)
                if np.ptp(column) > 0:
                    columns.append(column)
                    names.append(_variant_name(ds, v, alt, multiallelic=len(alts) > 1))
        x = np.column_stack(columns).astype(np.float64) if columns else np.empty((rows.size, 0))
        return x, names

    return dosages


def _anchor(ds: xr.Dataset, g: int) -> int:
    """Reference coordinate of a window's anchor: index ``width // 2`` in gene orientation."""
    start = int(ds["gene_window_start"].values[g])
    end = int(ds["gene_window_end"].values[g])
    minus = str(ds["gene_strand"].values[g]) == "-"
    return end - 1 - (end - start) // 2 if minus else start + (end - start) // 2


def _variant_name(ds: xr.Dataset, v: int, alt: str, *, multiallelic: bool) -> str:
    """The variant's ID (``chrom:pos:ref:alt`` when it has none), ``:alt`` if multi-allelic."""
    identifier = str(ds["variant_id"].values[v])
    if identifier in ("", "."):
        g = int(ds["variant_gene"].values[v])
        chrom = str(ds["gene_chrom"].values[g])
        position = int(ds["variant_position"].values[v]) + 1
        return f"{chrom}:{position}:{ds['variant_ref'].values[v]}:{alt}"
    return f"{identifier}:{alt}" if multiallelic else identifier


def _embedding_source(
    adata: ad.AnnData, *, use_rep: str, diploid: str
) -> Callable[[str], tuple[np.ndarray, list[str]]]:
    """Gene → (people × person-level embedding features, their names)."""
    from ..get import gene_view

    def embeddings(gene: str) -> tuple[np.ndarray, list[str]]:
        x = np.asarray(gene_view(adata, gene, key=use_rep, diploid=diploid).obsm[use_rep])
        return x.astype(np.float64), [f"{use_rep}_{i}" for i in range(x.shape[1])]

    return embeddings


# --- outputs ----------------------------------------------------------------------------


def _write_outputs(
    adata: ad.AnnData,
    *,
    key: str,
    fits: dict[str, dict[str, Any]],
    params: dict[str, Any],
    adjusted: bool,
) -> None:
    """Layers, per-gene ``var`` scores, the comparison table, settings and weights."""
    genes = list(fits)
    columns = adata.var_names.get_indexer(genes)
    _update_layer(adata, f"gl_pred_{key}", columns, [fits[g]["pred"] for g in genes])
    if adjusted:
        _update_layer(adata, f"gl_adjusted_{key}", columns, [fits[g]["observed"] for g in genes])
    elif f"gl_adjusted_{key}" in adata.layers:
        del adata.layers[f"gl_adjusted_{key}"]
    for score in ("r", "spearman", "r2"):
        name = f"gl_{key}_{score}"
        if name not in adata.var.columns:
            adata.var[name] = np.nan
        adata.var.loc[genes, name] = [fits[g][score] for g in genes]

    store = adata.uns.setdefault(UNS_KEY, {})
    rows = _table(adata, key=key, fits=fits)
    earlier = store.get("results")
    if earlier is not None and len(earlier):
        earlier = earlier[~((earlier["method"] == key) & earlier["gene"].isin(genes))]
        rows = pd.concat([earlier, rows], ignore_index=True)
    store["results"] = rows.reset_index(drop=True)
    store.setdefault("params", {})[key] = params
    if params["method"] == "predixcan":
        weights = _weights(fits)
        previous = store.setdefault("weights", {}).get(key)
        if previous is not None and len(previous):
            previous = previous[~previous["gene"].isin(genes)]
            weights = pd.concat([previous, weights], ignore_index=True)
        store["weights"][key] = weights


def _update_layer(
    adata: ad.AnnData, name: str, columns: np.ndarray, values: list[np.ndarray]
) -> None:
    layer = adata.layers.get(name)
    layer = np.full(adata.shape, np.nan, dtype=np.float32) if layer is None else np.array(layer)
    layer[:, columns] = np.column_stack(values)
    adata.layers[name] = layer


def _table(adata: ad.AnnData, *, key: str, fits: dict[str, dict[str, Any]]) -> pd.DataFrame:
    genes = list(fits)
    var = adata.var.loc[genes]
    names = var["gene_name"].astype(str) if "gene_name" in var else pd.Series(genes, index=genes)
    oracle = np.sqrt(var["sim_h2"].astype(float)) if "sim_h2" in var else np.nan
    table = pd.DataFrame(
        {
            "gene": genes,
            "gene_name": names.to_numpy(),
            "method": key,
            **{c: [fits[g][c] for g in genes] for c in _COLUMNS[3:-1]},
            "oracle_r": np.asarray(oracle, dtype=np.float64) * np.ones(len(genes)),
        }
    )
    return table[_COLUMNS]


def _weights(fits: dict[str, dict[str, Any]]) -> pd.DataFrame:
    """PrediXcan weight table: non-zero per-allele weights of each gene's final fit."""
    parts = []
    for gene, fit in fits.items():
        weights = np.asarray(fit["coefficients"])
        keep = np.flatnonzero(weights)
        names = np.asarray(fit["feature_names"], dtype=object)[keep]
        parts.append(pd.DataFrame({"gene": gene, "feature": names, "weight": weights[keep]}))
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return table.astype({"gene": str, "feature": str, "weight": np.float64})
