"""Expression simulated on real genotypes, with planted causal variants (known truth)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import anndata as ad
import numpy as np
import pandas as pd

from ..store import open_haplotypes
from ..tl.expression.cross_validation import GENETIC_VALUE_KEY


def _draw(
    value: float | tuple[float, float], generator: np.random.Generator, n: int, integer=False
):
    if isinstance(value, tuple):
        lo, hi = value
        return generator.integers(lo, hi + 1, n) if integer else generator.uniform(lo, hi, n)
    return np.full(n, value)


def simulate_expression(
    adata: ad.AnnData,
    *,
    n_causal: int | tuple[int, int] = 1,
    h2: float | tuple[float, float] = 0.3,
    min_maf: float = 0.05,
    causal: pd.DataFrame | None = None,
    reference_people: Sequence[str] | np.ndarray | None = None,
    random_state: int | np.random.Generator | None = 0,
    copy: bool = False,
) -> ad.AnnData | None:
    """Simulate each person's expression of each gene from planted causal variants.

    For every gene, ``n_causal`` variants of its window (with minor allele frequency at
    least ``min_maf`` in the cohort, or in ``reference_people``) get effects drawn from a
    standard normal; the genetic value (the sum of ALT dosages times effects) is scaled
    to variance ``h2`` and Gaussian
    noise of variance ``1 - h2`` is added, so expression has unit variance. The genetic
    value itself is kept: its correlation with the expression in the people a method is
    scored on is the oracle r of :func:`genlm_sc.tl.fit_expression` there (about
    ``sqrt(h2)``, but it varies with the people and the noise drawn, so ``sqrt(h2)`` is not
    a bound a method is compared with).

    Allele frequencies and the genetic variance are measured in everyone, or in
    ``reference_people`` only: in a cohort of several populations, the training
    population of a cross-population comparison, whose common variants then carry the
    effects and whose heritability is ``h2``. The same variants and effects act in
    everyone; elsewhere the genetic variance follows from the allele frequencies there
    (a causal variant may even be monomorphic), while the noise variance stays ``1 - h2``.

    Parameters
    ----------
    adata
        A cohort from :func:`genlm_sc.pp.personal_sequences`.
    n_causal
        Causal variants per gene, or a ``(low, high)`` range drawn per gene.
    h2
        Heritability per gene, or a ``(low, high)`` range drawn per gene.
    min_maf
        Smallest minor allele frequency of a causal variant.
    causal
        Causal variants chosen by hand instead of drawn, for the genes it lists: a
        DataFrame with columns ``gene`` (id) and ``variant_id``, and optionally
        ``effect`` (relative effects of the ALT allele before scaling to ``h2``; drawn
        when absent). Variants of other windows, or absent ones, raise a ``KeyError``.
    reference_people
        The people (``obs_names``, or a boolean mask over ``obs``) in whom the minor allele
        frequencies (``min_maf``, and ``alt_frequency`` of the table) and the genetic
        variance (scaled to ``h2``) are measured; ``None``: everyone. The genetic value is
        centred on their mean.
    random_state
        Seed or generator.
    copy
        Return a modified copy instead of writing into ``adata``.

    Returns
    -------
    ``None`` (or the copy): writes ``X`` (people × genes, float32),
    ``layers["sim_genetic_value"]`` (people × genes, float32: each person's true genetic
    value, ``X`` less the noise; zero for genes without causal variants),
    ``var["sim_h2"]``, ``var["sim_n_causal"]``, ``var["sim_genetic_r2"]`` (the realised
    share of variance over all people),
    and ``uns["gl_simulation"]`` with the parameters and a table of the causal variants
    (gene, variant index in the store, id, position, REF, ALT, effect, ALT frequency).
    Genes without enough common variants get fewer causal variants (possibly none).
    """
    adata = adata.copy() if copy else adata
    reference = _reference_mask(adata, reference_people)
    if adata.X is not None:
        warnings.warn("simulate_expression replaces the existing X", stacklevel=2)
    generator = np.random.default_rng(random_state)
    ds = open_haplotypes(adata)
    variant_gene = ds["variant_gene"].values
    store_gene = {g: i for i, g in enumerate(ds["gene"].values)}
    store_row = {s: i for i, s in enumerate(ds["sample"].values)}
    rows = np.array([store_row[s] for s in adata.obs_names], dtype=np.int64)
    genotype = ds["genotype"].values[rows]
    planted = {} if causal is None else dict(iter(causal.groupby("gene")))
    unknown = set(planted) - set(adata.var_names)
    if unknown:
        raise KeyError(f"causal variants given for unknown genes: {sorted(unknown)[:5]}")
    n_genes = adata.n_vars
    wanted = _draw(n_causal, generator, n_genes, integer=True).astype(int)
    heritability = _draw(h2, generator, n_genes)
    X = np.empty((adata.n_obs, n_genes), dtype=np.float32)
    genetic_values = np.zeros((adata.n_obs, n_genes), dtype=np.float32)
    realised = np.zeros(n_genes)
    placed = np.zeros(n_genes, dtype=int)
    rows = []
    for g in range(n_genes):
        index = np.flatnonzero(variant_gene == store_gene[adata.var_names[g]])
        dosage = (genotype[:, index, :] > 0).sum(axis=2).astype(float)
        frequency = dosage[reference].mean(axis=0) / 2
        common = index[np.minimum(frequency, 1 - frequency) >= min_maf]
        chosen = np.sort(generator.choice(common, min(wanted[g], len(common)), replace=False))
        beta = generator.standard_normal(len(chosen))
        if adata.var_names[g] in planted:
            chosen, beta = _planted(planted[adata.var_names[g]], index, ds, generator)
        genetic = (
            (genotype[:, chosen, :] > 0).sum(axis=2) @ beta
            if len(chosen)
            else np.zeros(adata.n_obs)
        )
        genetic = genetic - genetic[reference].mean()
        variance = genetic[reference].var()
        scale = np.sqrt(heritability[g] / variance) if variance > 0 else 0.0
        noise_sd = np.sqrt(1 - heritability[g]) if scale else 1.0
        noise = generator.standard_normal(adata.n_obs) * noise_sd
        y = genetic * scale + noise
        X[:, g] = y
        genetic_values[:, g] = genetic * scale
        realised[g] = np.var(genetic * scale) / np.var(y)
        placed[g] = len(chosen)
        for variant, effect in zip(chosen, beta * scale, strict=True):
            column = np.flatnonzero(index == variant)[0]
            rows.append(
                {
                    "gene": adata.var_names[g],
                    "variant": int(variant),
                    "variant_id": str(ds["variant_id"].values[variant]),
                    "position": int(ds["variant_position"].values[variant]),
                    "ref": str(ds["variant_ref"].values[variant]),
                    "alt": str(ds["variant_alt"].values[variant]),
                    "effect": float(effect),
                    "alt_frequency": float(frequency[column]),
                }
            )
    adata.X = X
    adata.layers[GENETIC_VALUE_KEY] = genetic_values
    adata.var["sim_h2"] = np.where(placed > 0, heritability, 0.0)
    adata.var["sim_n_causal"] = placed
    adata.var["sim_genetic_r2"] = realised
    adata.uns["gl_simulation"] = {
        "n_causal": str(n_causal),
        "h2": str(h2),
        "min_maf": float(min_maf),
        "n_reference_people": int(reference.sum()),
        "random_state": random_state if isinstance(random_state, int) else "generator",
        "causal_variants": pd.DataFrame(rows),
        "model": "y = sum_k dosage_k * effect_k + noise; Var(genetic) = h2, Var(y) = 1",
        "genetic_value": f"layers[{GENETIC_VALUE_KEY!r}]",
    }
    return adata if copy else None


def _reference_mask(adata: ad.AnnData, people: Sequence[str] | np.ndarray | None) -> np.ndarray:
    """Boolean mask over ``obs`` of the people frequencies and variances are measured in."""
    if people is None:
        return np.ones(adata.n_obs, dtype=bool)
    people = np.asarray(people)
    if people.dtype == bool:
        if people.shape != (adata.n_obs,):
            raise ValueError(
                f"reference_people as a mask needs {adata.n_obs} values (one per person), "
                f"not {people.size}"
            )
        mask = people
    else:
        unknown = sorted(set(people.astype(str)) - set(adata.obs_names))
        if unknown:
            raise KeyError(f"reference_people not in obs_names: {unknown[:5]}")
        mask = adata.obs_names.isin(people.astype(str))
    if mask.sum() < 2:
        raise ValueError("reference_people must hold at least two people")
    return np.asarray(mask)


def _planted(
    table: pd.DataFrame, index: np.ndarray, ds, generator: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Store rows and effects of hand-picked causal variants of one window."""
    ids = ds["variant_id"].values[index]
    rows = []
    for variant_id in table["variant_id"]:
        hits = index[ids == variant_id]
        if not len(hits):
            gene = table["gene"].iloc[0]
            raise KeyError(f"variant {variant_id!r} is not in the window of {gene}")
        rows.append(int(hits[0]))
    if "effect" in table:
        effects = table["effect"].to_numpy(dtype=float)
    else:
        effects = generator.standard_normal(len(rows))
    order = np.argsort(rows)
    return np.asarray(rows)[order], effects[order]
