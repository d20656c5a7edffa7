"""A sequence-to-function backbone fused with the language-model embedding, per gene and
fold: the ``"fusion"`` method of :func:`genlm_sc.tl.fit_expression` (UKBioFormer with the
Enformer backbone, UKBioZoi with Borzoi; the model is
:class:`~genlm_sc.models.fusion.FusionRegressor`).

Each person of a gene is ``(haplotype_1, haplotype_2, embedding)``: the two haplotypes cut
to the backbone's input length around the window's anchor, through indels
(:func:`genlm_sc.get.fixed_length_haplotypes`), and the person-level features the
embedding methods fit on (``obsm[use_rep]`` of :func:`genlm_sc.get.gene_view`). Training
runs on the same stack as ``"finetune"``
(:func:`~genlm_sc.tl.expression.regression_training.fit_gene`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import anndata as ad
import numpy as np
import torch

from ...get import fixed_length_haplotypes, gene_index, haplotype_store
from ...models.backbones import build_backbone
from ...models.fusion import FusionRegressor
from .features import embedding_source
from .fusion_options import FusionOptions
from .regression_training import fit_gene

__all__ = ["FusionOptions", "fusion_source"]

Person = tuple[str, str, np.ndarray]


class _Fuser:
    """The ``"fusion"`` recipe: the backbone is built (or read) once per ``fit_expression``
    call; every fold starts from it."""

    def __init__(self, options: FusionOptions):
        self.options = options
        self.backbone, self.source = build_backbone(
            options.backbone,
            weights=None if options.random_weights else options.weights,
            config=options.config,
            n_blocks=options.n_blocks,
            random_state=options.random_state,
        )
        #: backbone outputs per distinct haplotype, shared by the folds of a frozen backbone
        self.cache: dict[str, torch.Tensor] = {}
        self.counts: dict[str, int] = {}

    def build(self, people: list[Person], *, y_mean: float, y_std: float) -> FusionRegressor:
        options = self.options
        frozen = options.tuning == "head"  # the folds share the backbone and its outputs
        torch.manual_seed(options.random_state)
        model = FusionRegressor(
            self.backbone if frozen else copy.deepcopy(self.backbone),
            embedding_width=len(people[0][2]), input_length=options.input_length,
            center_bins=options.center_bins, combine=options.combine, hidden=options.hidden,
            y_mean=y_mean, y_std=y_std, record={**self.source, "tuning": options.tuning},
        )  # fmt: skip
        model.set_tuning(
            options.tuning,
            lora_rank=options.lora_rank,
            lora_alpha=options.lora_alpha,
            target_modules=options.target_modules,
        )
        if frozen:
            model._cache = self.cache
        model.standardise(people, batch_size=max(options.batch_size, 8))
        self.counts = model.parameter_counts()
        model.record["parameters"] = self.counts
        return model

    def finish(self, model: FusionRegressor, people: list[Person]) -> None:
        if self.options.tuning != "head":  # the backbone moved: its standardisation too
            model.standardise(people, embeddings=False, batch_size=max(self.options.batch_size, 8))
        model.set_embedding_offset(people)

    def predict(self, model: FusionRegressor, people: list[Person]) -> np.ndarray:
        return model.predict(people, batch_size=max(self.options.batch_size, 32))

    def __call__(
        self,
        gene: str,
        people: list[Person],
        y: np.ndarray,
        *,
        folds: np.ndarray,
        covariates: np.ndarray | None,
    ) -> dict[str, Any]:
        fit = fit_gene(people, y, folds=folds, covariates=covariates, recipe=self, gene=gene)
        fit["n_features"] = int(self.backbone.channels) + len(people[0][2])
        fit.pop("models")  # kept on disk under output_dir, not in the AnnData
        return fit

    def record(self) -> dict[str, Any]:
        """The settings, where the backbone came from and the parameter counts (for ``uns``)."""
        return {
            **self.options.record(),
            "backbone_weights": self.source["weights"],
            "n_trainable": int(self.counts.get("trainable", -1)),
            "n_frozen": int(self.counts.get("frozen", -1)),
            "n_backbone": int(self.counts.get("backbone", -1)),
        }


def fusion_source(
    adata: ad.AnnData,
    options: Mapping[str, Any] | FusionOptions | None,
    *,
    use_rep: str,
    diploid: str,
) -> tuple[Callable[[str], tuple[list[Person], list[str]]], _Fuser]:
    """Gene → (each person's two fixed-length haplotypes and embedding, no names), and the
    per-gene fitter."""
    fuser = _Fuser(FusionOptions.parse(options))
    embeddings = embedding_source(adata, use_rep=use_rep, diploid=diploid)
    length = fuser.options.input_length
    ds = haplotype_store(adata)

    def people(gene: str) -> tuple[list[Person], list[str]]:
        g, _, _ = gene_index(adata, gene)
        width = int(ds["gene_window_end"].values[g]) - int(ds["gene_window_start"].values[g])
        if width < length:
            raise ValueError(
                f"the window of {gene} is {width:,} bp, shorter than the backbone's "
                f"input_length of {length:,}: build the cohort with wider windows "
                "(gl.pp.gene_windows(width=...)) or lower input_length"
            )
        codes = fixed_length_haplotypes(adata, gene, length=length, samples=adata.obs_names)
        text: dict[bytes, str] = {}  # people share haplotypes: one string each
        pairs = [[text.setdefault(h.tobytes(), h.tobytes().decode("ascii")) for h in person]
                 for person in codes.values]  # fmt: skip
        x, _ = embeddings(gene)
        return [(a, b, row) for (a, b), row in zip(pairs, x, strict=True)], []

    return people, fuser
