"""Expression prediction from genotypes: PrediXcan on dosages, regressions on embeddings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd

from ..._engine import is_distributed
from .cross_validation import (
    GENETIC_VALUE_KEY,
    UNS_KEY,
    check_finite,
    check_fold_sizes,
    oracle_r,
    outer_folds,
)
from .features import (
    covariate_matrix,
    covariate_names,
    dosage_source,
    embedding_source,
    expression_values,
    resolve_genes,
)
from .gene_fits import TASK_METHODS, fit_gene_group, fit_genes

__all__ = ["fit_expression"]

Method = Literal["predixcan", "elastic_net", "ridge", "finetune", "fusion"]
#: The methods of :func:`fit_expression`.
METHODS: tuple[str, ...] = ("predixcan", "elastic_net", "ridge", "finetune", "fusion")
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
    n_folds: int = 5,
    folds_by: str | None = None,
    test_groups: Sequence[str] | None = None,
    covariates: Sequence[str] | pd.DataFrame | None = None,
    window: int = 1_000_000,
    use_rep: str = "X_gl",
    diploid: Literal["concat", "mean"] = "concat",
    n_pcs: int | None = None,
    finetune_options: Mapping[str, Any] | None = None,
    fusion_options: Mapping[str, Any] | None = None,
    random_state: int | None = 0,
    key_added: str | None = None,
    client: Any = None,
    n_jobs: int | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Predict each person's expression of each gene from their genotypes, out of fold.

    Every method is scored on the same outer cross-validation folds, so that methods can
    be compared gene by gene: the folds are drawn once (from ``random_state``, ``n_folds`` and
    ``folds_by``), stored in ``adata.obs["gl_fold"]`` and reused by every later call.
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
        (see :class:`~genlm_sc.tl.expression.finetune_options.FinetuneOptions`). With
        ``finetune_options["output_dir"]`` each fold's fitted model is saved to
        ``output_dir/<gene>/fold_<k>`` for :func:`genlm_sc.tl.predict`.
    ``"fusion"``
        UKBioFormer / UKBioZoi: a sequence-to-function backbone (Enformer or Borzoi, from
        local weights, its transformer pruned) reads each of the person's two haplotypes
        around the gene's anchor, and an MLP reads the person's embedding features (those
        of ``"elastic_net"``: ``use_rep`` and ``diploid``); a learned gate
        ``σ(β) x1 + (1 − σ(β)) x2`` combines the two, trained per gene and outer fold on
        the standardised targets like ``"finetune"``
        (:class:`~genlm_sc.models.fusion.FusionRegressor`). The settings, including the
        backbone and its weights, are ``fusion_options`` (see
        :class:`~genlm_sc.tl.expression.fusion_options.FusionOptions`); with their
        ``output_dir`` each fold's model is saved to ``output_dir/<gene>/fold_<k>``
        (:meth:`~genlm_sc.models.fusion.FusionRegressor.from_pretrained`).

    Parameters
    ----------
    adata
        A cohort (:func:`genlm_sc.pp.personal_sequences`) with expression in ``X``
        (people × genes), e.g. from :func:`genlm_sc.datasets.simulate_expression`. The
        embedding methods also need :func:`genlm_sc.tl.embed` to have been run.
    method
        ``"predixcan"``, ``"elastic_net"``, ``"ridge"``, ``"finetune"`` or ``"fusion"``.
    genes
        Gene ids or unique gene names to fit (default: all).
    n_folds
        Number of outer folds (random, drawn with ``random_state``) when ``folds_by`` is ``None``.
    folds_by
        ``obs`` column (e.g. ``"population"``) whose groups are kept whole: the models are
        trained on some groups and tested on others. With ``test_groups``, a single split
        (train on the other groups, test on these); without, leave-one-group-out. People
        with a missing group are only ever in training.
    test_groups
        Values of ``folds_by`` making up the test set.
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
        Haplotype embedding used by the embedding methods and ``"fusion"`` (``key_added``
        of :func:`genlm_sc.tl.embed`).
    diploid
        How :func:`genlm_sc.get.gene_view` combines a person's two haplotype embeddings:
        ``"concat"`` or ``"mean"``.
    n_pcs
        Principal components of the standardised embedding features kept (fitted on the
        training people of each fold); ``None``: no PCA. Embedding methods only.
    finetune_options
        Settings of ``"finetune"`` (required by it, rejected by the others), a mapping
        with the fields of :class:`~genlm_sc.tl.expression.finetune_options.FinetuneOptions`:
        ``model`` (the checkpoint directory, required), ``strategy`` (``"lora"`` or
        ``"prune"``), ``n_layers``, ``epochs``, ``batch_size``, ``learning_rate``,
        ``weight_decay``, ``scheduler``, ``warmup_steps``, ``validation_fraction``,
        ``patience``, ``eval_steps``, ``pairwise_weight``, ``lora_rank``, ``lora_alpha``,
        ``target_modules``, ``device``, ``precision``, ``random_state``, ``output_dir``,
        ``resume``, ``refit`` and ``progress``. Training runs on
        :class:`transformers.Trainer`, as pretraining and classification do.
    fusion_options
        Settings of ``"fusion"`` (required by it, rejected by the others), a mapping with
        the fields of :class:`~genlm_sc.tl.expression.fusion_options.FusionOptions`:
        ``backbone`` (``"enformer"`` or ``"borzoi"``) and ``weights`` (required),
        ``config``, ``n_blocks``, ``tuning`` (``"head"``, ``"lora"`` or ``"full"``),
        ``input_length``, ``center_bins``, ``combine``, ``hidden`` and the training
        settings of ``finetune_options`` (``epochs``, ``batch_size``, ...,
        ``output_dir``, ``refit``). The parameter counts (trainable, frozen, of the
        backbone) are recorded in ``uns["gl_expression"]["params"][key]["fusion"]``.
    random_state
        Seed of the outer folds and the inner folds.
    key_added
        Name of this fit in the outputs (default: ``method``), e.g. to keep a ridge fit
        with and without PCA.
    client
        A :class:`distributed.Client`: the genes of ``"predixcan"``, ``"elastic_net"`` and
        ``"ridge"`` are fitted as tasks over groups of genes on its workers (this process
        reads each gene's features and sends them, a few groups at a time). The results
        equal those of one process.
    n_jobs
        Fit on a local cluster of this many worker processes (one thread each), made for
        the call; ignored when ``client`` is given. ``None`` or 1: in this process.
    copy
        Work on and return a copy of ``adata``.

    Returns
    -------
    ``None``, or the annotated copy when ``copy=True``. The comparison table of every fit
    made so far on ``adata`` (:func:`genlm_sc.get.expression_results`) has one row per gene
    and fit, with ``gene``, ``gene_name``,
    ``method`` (the fit's name), out-of-fold Pearson ``r``, Spearman rho (``spearman``)
    and ``r2`` (``1 - SS_res / SS_tot``, may be negative) over all tested people pooled,
    ``n_train`` (mean training-set size over folds), ``n_test`` (people with an
    out-of-fold prediction), ``n_features``, ``n_folds`` and ``oracle_r``: for simulated
    expression (``layers["sim_genetic_value"]`` of
    :func:`genlm_sc.datasets.simulate_expression`), the Pearson r between each person's
    true genetic value and the expression the predictions are scored against, pooled over
    the same tested people as ``r`` (see
    :func:`~genlm_sc.tl.expression.cross_validation.oracle_r`); NaN without that layer.
    ``r`` and ``spearman`` are NaN when the predictions are constant. Sets, with
    ``key = key_added or method``:

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
    if n_pcs is not None and method in ("predixcan", "finetune", "fusion"):
        raise ValueError(f"n_pcs applies to the embedding methods, not to {method!r}")
    if (finetune_options is not None) != (method == "finetune"):
        raise ValueError("finetune_options is required by method='finetune' and only by it")
    if (fusion_options is not None) != (method == "fusion"):
        raise ValueError("fusion_options is required by method='fusion' and only by it")
    if adata.X is None:
        raise ValueError("adata has no expression in X (people × genes)")
    distributed = is_distributed(client, n_jobs)
    if distributed and method not in TASK_METHODS:
        raise ValueError(
            f"method {method!r} runs in this process; client= and n_jobs= apply to "
            f"{', '.join(TASK_METHODS)}"
        )
    adata = adata.copy() if copy else adata
    key = key_added or method
    gene_ids = resolve_genes(adata, genes)
    folds = outer_folds(
        adata,
        n_folds=n_folds,
        folds_by=folds_by,
        test_groups=test_groups,
        random_state=random_state,
    )
    check_fold_sizes(folds)
    confounders = covariate_matrix(adata, covariates)
    if method == "predixcan":
        features = dosage_source(adata, window=window)
    elif method == "finetune":
        from .finetune import finetune_source

        features, finetune = finetune_source(adata, finetune_options)
    elif method == "fusion":
        from .fusion import fusion_source

        features, finetune = fusion_source(adata, fusion_options, use_rep=use_rep, diploid=diploid)
    else:
        features = embedding_source(adata, use_rep=use_rep, diploid=diploid)

    def genetic_values(gene: str) -> np.ndarray | None:
        if GENETIC_VALUE_KEY not in adata.layers:
            return None
        return expression_values(adata, gene, layer=GENETIC_VALUE_KEY)

    def inputs(gene: str) -> dict[str, Any]:
        x, names = features(gene)
        y = expression_values(adata, gene)
        check_finite(y, f"the expression of {gene}")
        return {"x": x, "y": y, "genetic": genetic_values(gene), "feature_names": names}

    common = {"method": method, "folds": folds, "covariates": confounders,
              "random_state": random_state, "n_pcs": n_pcs}  # fmt: skip
    fits: dict[str, dict[str, Any]] = {}
    if distributed:
        fits = fit_genes(gene_ids, inputs, common, client=client, n_jobs=n_jobs)
    for gene in [] if distributed else gene_ids:
        entry = inputs(gene)
        if method in ("finetune", "fusion"):
            fits[gene] = finetune(gene, entry["x"], entry["y"], folds=folds, covariates=confounders)
            fits[gene]["oracle_r"] = oracle_r(entry["genetic"], fits[gene])
        else:
            fits[gene] = fit_gene_group([entry], common)[0]

    params = {
        "method": method,
        "genes": np.asarray(gene_ids, dtype=str),
        "covariates": covariate_names(covariates),
        "window": int(window),
        "use_rep": use_rep if method in ("elastic_net", "ridge", "fusion") else "",
        "diploid": diploid if method in ("elastic_net", "ridge", "fusion") else "",
        "n_pcs": -1 if n_pcs is None else int(n_pcs),
        "random_state": -1 if random_state is None else int(random_state),
    }
    if method == "finetune":
        params["finetune"] = finetune.options.record()
    elif method == "fusion":
        params["fusion"] = finetune.record()
    _write_outputs(adata, key=key, fits=fits, params=params, adjusted=confounders is not None)
    return adata if copy else None


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
    table = pd.DataFrame(
        {
            "gene": genes,
            "gene_name": names.to_numpy(),
            "method": key,
            **{c: [fits[g][c] for g in genes] for c in _COLUMNS[3:]},
        }
    )
    return table.astype({"oracle_r": np.float64})[_COLUMNS]


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
