"""Effects of every variant of a gene's window: zero-shot likelihood ratios, predicted
expression changes, embedding shifts, joined to measured eQTLs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import anndata as ad
import numpy as np
import pandas as pd

from ..._dna import BASE_INDEX
from ...get import anchor_index
from ...pp.haplotypes import reverse_complement_text
from .attribute import gene_window
from .scorer_loading import load_scorer
from .scorers import LikelihoodScorer

__all__ = ["variant_effects"]


def variant_effects(
    adata: ad.AnnData,
    *,
    gene: str | Sequence[str],
    model: Any = None,
    expression_model: Any = None,
    eqtl: str | os.PathLike | pd.DataFrame | None = None,
    batch_size: int = 32,
    device: str = "auto",
    client: Any = None,
    n_jobs: int | None = None,
    key_added: str = "gl_variant_effects",
    copy: bool = False,
) -> ad.AnnData | None:
    """Score every variant in a gene's window.

    Parameters
    ----------
    adata
        A cohort (:func:`genlm_sc.pp.personal_sequences`): the variants are those of its
        store in the gene's window, each ALT allele of a multi-allelic record on its own
        row.
    gene
        Gene id or unique gene name, or a list of them.
    model
        A masked language model (checkpoint folder or ``(model, tokenizer)`` pair) for the
        zero-shot scores and the embedding shift.
    expression_model
        A fine-tuned expression model (folder saved by
        ``fit_expression(method="finetune")``, or in memory) or a fused model
        (``method="fusion"``; its backbone branch, the person's embedding held at its
        training mean) for the predicted changes.
    eqtl
        Measured eQTLs (:func:`genlm_sc.io.read_eqtl`, or a path to such a table). Those of
        this gene (matched by gene name or unversioned gene id; rows naming no gene count as
        this gene's) are joined by rsID (the VCF ``ID``) and allele: their ``slope`` is
        turned to the ALT allele of our VCF when the eQTL table has REF and ALT swapped.
        A variant that is an eQTL of several genes carries this gene's slope; the other
        genes are only named.
    batch_size
        Chunks per forward pass.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    client
        A :class:`distributed.Client`: each gene is a task on its workers, which read the
        cohort's people and genes from its store on disk (so ``adata`` must have been
        written) and load the models (folders) once each. The tables equal those of one
        process.
    n_jobs
        Run on a local cluster of this many worker processes (one thread each), made for
        the call; ignored when ``client`` is given. ``None`` or 1: in this process.
    key_added
        The table is stored in ``adata.uns[key_added][gene_id]``.
    copy
        Work on and return a copy of ``adata``.

    Returns
    -------
    ``None``, or the annotated copy when ``copy=True``. The table
    (:func:`genlm_sc.get.variant_effects`) has one row per variant allele: ``variant_id``,
    ``chrom``, ``position`` (0-based, ``POS - 1``), ``ref``, ``alt``, ``kind`` (``"snv"``,
    ``"mnv"``, ``"insertion"``, ``"deletion"``, ``"complex"``), ``alt_frequency`` (ALT share of the
    cohort's called haplotypes) and ``n_carriers`` (people with at least one copy), and:

    ``llr_masked`` (with ``model``; SNVs)
        ``log p(alt) - log p(ref)`` at the variant with it masked, in a context centred on
        it, averaged over the forward and the reverse-complement strand (GPN's zero-shot
        score; natural log). With k-mer tokens, summed over the masked tokens covering it;
        ``NaN`` with BPE tokens (a substitution can move the token boundaries).
    ``llr_one_pass`` (with ``model``; SNVs)
        The same from one unmasked pass over the reference window (every SNV of the window
        from one forward pass per chunk and strand).
    ``embedding_shift`` (with ``model``)
        Euclidean distance between the mean-pooled embeddings of the reference window with
        and without the ALT allele written in.
    ``delta_expression`` (with ``expression_model``)
        Predicted expression change per ALT copy in the reference background: half the
        change of a homozygous prediction (the head is additive in the two haplotypes).
    ``delta_expression_carriers`` (with ``expression_model``)
        The same in the carriers' own haplotypes: for each distinct haplotype carrying the
        allele, the prediction minus that with REF restored, averaged over carriers.
    ``eqtl_*`` and ``sign_agreement`` (with ``eqtl``)
        This gene's eQTL at the variant: ``eqtl_gene`` (the gene as named in the table),
        ``eqtl_slope`` (per ALT
        allele of our VCF; NaN when the table's alleles are neither ours nor swapped) and
        ``eqtl_qval`` (of several rows for one allele, the allele-matched one with the
        smallest q-value); ``eqtl_other_genes``, the other genes it is an eQTL of
        (comma-separated, no slope); ``sign_agreement``, whether ``delta_expression`` has
        the slope's sign.
    """
    if model is None and expression_model is None:
        raise ValueError("give a masked language model (model=) and/or expression_model=")
    from ..._engine import cluster, is_distributed, run_tasks
    from ...models.loading import local_folder

    for given in (model, expression_model):  # a wrong path fails before any work
        if isinstance(given, str | os.PathLike):
            local_folder(given)
    genes = [gene] if isinstance(gene, str) else list(gene)
    options = {"model": model, "expression_model": expression_model, "eqtl": eqtl,
               "batch_size": batch_size, "device": device}  # fmt: skip
    if is_distributed(client, n_jobs):
        arguments = _task_arguments(adata, options)
        with cluster(client, n_jobs) as running:
            tables = run_tasks(
                running, gene_variant_effects_task, ({**arguments, "gene": g} for g in genes),
                progress=False, description="variant-effects", total=len(genes),
            )  # fmt: skip
    else:
        tables = [gene_variant_effects(adata, g, **options) for g in genes]
    adata = adata.copy() if copy else adata
    for gene_id, table in tables:
        adata.uns.setdefault(key_added, {})[gene_id] = table
    return adata if copy else None


def _task_arguments(adata: ad.AnnData, options: dict[str, Any]) -> dict[str, Any]:
    """What each gene's task needs: the store on disk, the people, models as folders."""
    from ..._engine import saved_models, store_on_disk

    location = store_on_disk(adata, "variant effects")
    saved_models("variant effects", model=options["model"],
                 expression_model=options["expression_model"])  # fmt: skip
    return {**options, "location": location, "people": list(adata.obs_names)}


def gene_variant_effects_task(
    *, location: str, people: list[str], gene: str, **options: Any
) -> tuple[str, pd.DataFrame]:
    """:func:`gene_variant_effects` as a task: the cohort (without its matrices) and the
    models are loaded once per worker process."""
    from ..._engine import loaded_once
    from ...store.reading import read_annotations
    from .scorer_loading import load_masked_lm

    cohort = loaded_once(location, lambda: read_annotations(location), "annotations")
    device = options["device"]
    if options["model"] is not None:
        path = options["model"]
        options["model"] = loaded_once(path, lambda: load_masked_lm(os.fspath(path)), "mlm")
    if options["expression_model"] is not None:
        path = options["expression_model"]
        options["expression_model"] = loaded_once(
            path, lambda: load_scorer(path, target="expression", device=device), "expression",
            device,
        )  # fmt: skip
    return gene_variant_effects(cohort[people], gene, **options)


#: The columns of every variant table, and those each kind of model adds.
VARIANT_COLUMNS = ("variant_id", "chrom", "position", "ref", "alt", "kind", "alt_frequency",
                   "n_carriers")  # fmt: skip
LIKELIHOOD_COLUMNS = ("llr_masked", "llr_one_pass", "embedding_shift")
EXPRESSION_COLUMNS = ("delta_expression", "delta_expression_carriers")


def gene_variant_effects(
    adata: ad.AnnData,
    gene: str,
    *,
    model: Any,
    expression_model: Any,
    eqtl: Any,
    batch_size: int,
    device: str,
) -> tuple[str, pd.DataFrame]:
    """One gene's variant table (see :func:`variant_effects`) and the gene's id."""
    from ...get import gene_index, haplotype_store, sample_rows

    window = gene_window(adata, gene)
    ds = haplotype_store(adata)
    g, _, _ = gene_index(adata, window.gene)
    _, people = sample_rows(adata)
    rows = np.flatnonzero(ds["variant_gene"].values == g)
    calls = ds["genotype"][:, rows, :].values[people]  # (people, the window's variants, ploidy)
    forward = window.sequence
    if window.strand == "-":
        forward = reverse_complement_text(forward)
    table, alleles = _variant_table(ds, rows, calls, window)
    if len(table):
        if model is not None:
            _add_likelihood_scores(table, forward, window, model, batch_size, device)
        if expression_model is not None:
            scorer = load_scorer(expression_model, target="expression", device=device)
            carried = ds["sample_haplotype"][:, g, :].values[people]
            _add_expression_scores(table, alleles, calls, carried, adata, forward, window, scorer)
    else:  # no variant in the window: the columns of a gene with variants, no rows
        scores = [*(LIKELIHOOD_COLUMNS if model is not None else ()),
                  *(EXPRESSION_COLUMNS if expression_model is not None else ())]  # fmt: skip
        table = table.assign(**{column: pd.Series(dtype=float) for column in scores})
    table = table.drop(columns="_column", errors="ignore")
    if eqtl is not None:
        table = _join_eqtl(table, eqtl, window.gene, adata)
    return window.gene, table


# --- variants ---------------------------------------------------------------------------


def _variant_table(ds, rows, calls, window) -> tuple[pd.DataFrame, list[int]]:
    """One row per variant allele of the window (``_column``: its column of ``calls``);
    also each row's allele index."""
    records, alleles = [], []
    for j, row in enumerate(rows):
        ref = str(ds["variant_ref"].values[row])
        called = (calls[:, j, :] >= 0).sum()
        for a, alt in enumerate(str(ds["variant_alt"].values[row]).split(","), start=1):
            copies = calls[:, j, :] == a
            records.append(
                {
                    "variant_id": str(ds["variant_id"].values[row]),
                    "chrom": window.chrom,
                    "position": int(ds["variant_position"].values[row]),
                    "ref": ref,
                    "alt": alt,
                    "kind": _kind(ref, alt),
                    "alt_frequency": copies.sum() / max(called, 1),
                    "n_carriers": int(copies.any(axis=1).sum()),
                    "_column": j,
                }
            )
            alleles.append(a)
    return pd.DataFrame.from_records(records, columns=[*VARIANT_COLUMNS, "_column"]), alleles


def _kind(ref: str, alt: str) -> str:
    if not set(alt) <= set("ACGTN") or not set(ref) <= set("ACGTN"):
        return "symbolic"
    if len(ref) == len(alt):
        return "snv" if len(ref) == 1 else "mnv"
    if len(ref) == 1 and alt.startswith(ref):
        return "insertion"
    if len(alt) == 1 and ref.startswith(alt):
        return "deletion"
    return "complex"


def _with_allele(forward: str, window, position: int, ref: str, alt: str) -> str | None:
    """The forward-strand window with ``alt`` written over ``ref`` (None when it does not
    fit inside the window or REF does not match)."""
    at = position - window.start
    if at < 0 or at + len(ref) > len(forward) or forward[at : at + len(ref)] != ref.upper():
        return None
    return forward[:at] + alt.upper() + forward[at + len(ref) :]


def _oriented(forward: str, window) -> str:
    return reverse_complement_text(forward) if window.strand == "-" else forward


# --- masked-LM scores --------------------------------------------------------------------


def _add_likelihood_scores(table, forward, window, model, batch_size, device) -> None:
    scorer = load_scorer(model, target="mlm", device=device)
    assert isinstance(scorer, LikelihoodScorer)
    snv = (table["kind"] == "snv").to_numpy()
    at = table["position"].to_numpy() - window.start
    inside = snv & (at >= 0) & (at < len(forward))
    alt_base = np.array([BASE_INDEX.get(a, -1) for a in table["alt"]])
    inside &= alt_base >= 0
    masked = np.full(len(table), np.nan)
    one_pass = np.full(len(table), np.nan)
    if inside.any() and scorer.kind in ("char", "kmer", "nt_kmer"):
        positions = at[inside]
        masked[inside] = _both_strands(
            lambda s, p: scorer.masked_llr(s, p, batch_size=batch_size),
            forward, positions, alt_base[inside],
        )  # fmt: skip
        one_pass[inside] = _both_strands(
            lambda s, p: scorer.one_pass_llr(s)[p], forward, positions, alt_base[inside]
        )
    table["llr_masked"] = masked
    table["llr_one_pass"] = one_pass
    table["embedding_shift"] = _embedding_shift(table, forward, window, model, device)


def _both_strands(llr, forward: str, positions: np.ndarray, alt: np.ndarray) -> np.ndarray:
    """Mean of an LLR function over the forward strand and the reverse complement."""
    plus = llr(forward, positions)[np.arange(len(positions)), alt]
    flipped = llr(reverse_complement_text(forward), len(forward) - 1 - positions)
    minus = flipped[np.arange(len(positions)), 3 - alt]  # A<->T, C<->G in ACGT order
    return (plus + minus) / 2


def _embedding_shift(table, forward, window, model, device) -> np.ndarray:
    from ...models.encoder import load_encoder

    encoder = load_encoder(model, device=device, precision="fp32")
    windows = [_oriented(forward, window)]
    index = []
    for position, ref, alt in zip(table["position"], table["ref"], table["alt"], strict=True):
        edited = _with_allele(forward, window, int(position), ref, alt)
        index.append(-1 if edited is None else len(windows))
        if edited is not None:
            windows.append(_oriented(edited, window))
    vectors = encoder.embed(windows).astype(np.float64)
    shift = np.linalg.norm(vectors - vectors[0], axis=1)
    return np.array([np.nan if i < 0 else shift[i] for i in index])


# --- expression scores ------------------------------------------------------------------


def _add_expression_scores(table, alleles, calls, carried, adata, forward, window, scorer) -> None:
    reference = window.start + np.arange(len(forward))  # forward-strand coordinates
    base = scorer.score([_oriented(forward, window)], anchors=[_anchor(reference, window)])[0]
    edited, anchors = [], []
    for p, r, a in zip(table["position"], table["ref"], table["alt"], strict=True):
        edited.append(_with_allele(forward, window, int(p), r, a))
        at = int(p) - window.start  # the edit's coordinates: REF's shared bases, then inserted
        kept = min(len(r), len(a))
        moved = np.concatenate(
            [reference[: at + kept], np.full(max(len(a) - len(r), 0), -1), reference[at + len(r) :]]
        )
        anchors.append(_anchor(moved, window))
    fits = [  # the edit fits the window, and the model reads where it is written
        e is not None and _reads(scorer, e, anchor, int(p) - window.start, len(a), window)
        for e, anchor, p, a in zip(edited, anchors, table["position"], table["alt"], strict=True)
    ]
    delta = np.full(len(table), np.nan)
    if any(fits):
        scored = scorer.score(
            [_oriented(e, window) for e, fit in zip(edited, fits, strict=True) if fit],
            anchors=[a for a, fit in zip(anchors, fits, strict=True) if fit],
        )
        delta[np.asarray(fits)] = (scored - base) / 2
    table["delta_expression"] = delta
    table["delta_expression_carriers"] = _carrier_effects(
        table, alleles, calls, carried, adata, window, scorer
    )


def _reads(scorer, forward: str, anchor: int, at: int, length: int, window) -> bool:
    """Whether the model reads bases ``[at, at + length)`` of a forward-strand sequence
    (a fused model reads a cut around the anchor; a language model all of it)."""
    _, lo, hi = scorer.window(_oriented(forward, window), anchor)
    if window.strand == "-":
        at = len(forward) - at - length
    return lo <= at and at + length <= hi


def _anchor(forward_positions: np.ndarray, window) -> int:
    """Index of the window's anchor in a sequence (gene orientation) whose forward-strand
    bases come from ``forward_positions`` (``-1``: inserted)."""
    minus = window.strand == "-"
    positions = forward_positions[::-1] if minus else forward_positions
    return anchor_index(positions, window.anchor, minus=minus)


def _carrier_effects(table, alleles, calls, carried, adata, window, scorer) -> np.ndarray:
    """Mean over carriers' haplotypes of (prediction − prediction with REF restored) / 2.

    ``calls`` (people, window variants, ploidy) are allele indices and ``carried`` (people,
    ploidy) the store's haplotype index of each person's two haplotypes."""
    from ...get import reference_positions, unique_haplotypes

    haplotypes = unique_haplotypes(adata, window.gene)
    lo = int(haplotypes.index[0])
    coordinates = reference_positions(adata, window.gene).values
    minus = window.strand == "-"
    out = np.full(len(table), np.nan)
    for n, (column, allele) in enumerate(zip(table["_column"], alleles, strict=True)):
        ref, alt = table["ref"].iloc[n], table["alt"].iloc[n]
        position = int(table["position"].iloc[n])
        hits = carried[calls[:, column, :] == allele]
        if not len(hits):
            continue
        indices, counts = np.unique(hits, return_counts=True)
        pairs, anchors, weights = [], [], []
        for index, count in zip(indices, counts, strict=True):
            sequence = haplotypes.loc[index, "sequence"]
            own = coordinates[index - lo, : len(sequence)]
            restored = _restore_reference(sequence, own, window, position, ref, alt)
            if restored is not None and _reads(
                scorer, _oriented(sequence, window), anchor_index(own, window.anchor, minus=minus),
                int(np.flatnonzero((own[::-1] if minus else own) == position)[0]), len(alt), window,
            ):  # fmt: skip
                pairs.append((sequence, restored[0]))
                anchors += [anchor_index(c, window.anchor, minus=minus) for c in (own, restored[1])]
                weights.append(count)
        if pairs:
            scores = scorer.score([s for pair in pairs for s in pair], anchors=anchors)
            effects = (scores[0::2] - scores[1::2]) / 2
            out[n] = np.average(effects, weights=weights)
    return out


def _restore_reference(sequence, coordinates, window, position, ref, alt):
    """A haplotype (gene orientation) with ``alt`` at ``position`` turned back into ``ref``,
    and the reference coordinates of its bases (None when the haplotype does not show
    ``alt`` there, e.g. an overlapping variant)."""
    minus = window.strand == "-"
    forward = reverse_complement_text(sequence) if minus else sequence
    coords = coordinates[::-1] if minus else coordinates
    hits = np.flatnonzero(coords == position)
    if len(hits) != 1:
        return None
    at = int(hits[0])
    if forward[at : at + len(alt)] != alt.upper():
        return None
    restored = forward[:at] + ref.upper() + forward[at + len(alt) :]
    moved = np.concatenate([coords[:at], position + np.arange(len(ref)), coords[at + len(alt) :]])
    if minus:
        return reverse_complement_text(restored), moved[::-1]
    return restored, moved


# --- eQTLs ------------------------------------------------------------------------------


def _join_eqtl(table: pd.DataFrame, eqtl, gene_id: str, adata: ad.AnnData) -> pd.DataFrame:
    """The eQTLs of this gene joined by (rsID, allele); other genes' eQTLs named only."""
    from ...io.eqtl import read_eqtl

    eqtls = eqtl if isinstance(eqtl, pd.DataFrame) else read_eqtl(eqtl)
    eqtls = eqtls[eqtls["rsid"].isin(table["variant_id"]) & eqtls["rsid"].ne(".")]
    names = {_unversioned(gene_id)}
    if gene_id in adata.var_names and "gene_name" in adata.var.columns:
        names.add(str(adata.var.loc[gene_id, "gene_name"]))
    named = eqtls["gene_name"].notna() | eqtls["gene_id"].notna()
    ours = ~named | np.array(
        [str(n) in names or _unversioned(str(i)) in names
         for n, i in zip(eqtls["gene_name"], eqtls["gene_id"], strict=True)], dtype=bool,
    )  # fmt: skip
    pairs = (
        table[["variant_id", "ref", "alt"]]
        .rename_axis("_row")
        .reset_index()
        .merge(eqtls[ours], left_on="variant_id", right_on="rsid", suffixes=("", "_eqtl"))
    )
    same = (pairs["ref_eqtl"] == pairs["ref"]) & (pairs["alt_eqtl"] == pairs["alt"])
    swapped = (pairs["ref_eqtl"] == pairs["alt"]) & (pairs["alt_eqtl"] == pairs["ref"])
    slope = _floats(pairs["slope"])
    pairs["eqtl_slope"] = np.where(same, slope, np.where(swapped, -slope, np.nan))
    pairs["eqtl_qval"] = _floats(pairs["qval"])
    # per variant allele: an eQTL of this allele before one of another, then the smallest q
    pairs = pairs.assign(_unmatched=pairs["eqtl_slope"].isna())
    pairs = pairs.sort_values(["_row", "_unmatched", "eqtl_qval"], na_position="last")
    best = pairs.drop_duplicates("_row").set_index("_row").reindex(table.index)
    others = eqtls[~ours]
    other_names = (
        pd.Series(_gene_label(others), index=others.index).astype(str).groupby(others["rsid"])
        .agg(lambda genes: ",".join(sorted(set(genes))))
    )  # fmt: skip
    table = table.copy()
    table["eqtl_gene"] = _gene_label(best)
    table["eqtl_slope"] = best["eqtl_slope"].to_numpy(dtype=float)
    table["eqtl_qval"] = best["eqtl_qval"].to_numpy(dtype=float)
    table["eqtl_other_genes"] = table["variant_id"].map(other_names).to_numpy(dtype=object)
    agreement = pd.Series(pd.NA, index=table.index, dtype="boolean")
    if "delta_expression" in table:
        known = np.isfinite(table["eqtl_slope"]) & np.isfinite(table["delta_expression"])
        agreement[known] = np.sign(table["delta_expression"][known]) == np.sign(
            table["eqtl_slope"][known]
        )
    table["sign_agreement"] = agreement
    return table


def _gene_label(eqtls: pd.DataFrame) -> np.ndarray:
    """Each eQTL row's gene name, else its gene id (object array, NaN when neither)."""
    names = eqtls["gene_name"].to_numpy(dtype=object)
    return np.where(pd.isna(names), eqtls["gene_id"].to_numpy(dtype=object), names)


def _floats(values: pd.Series) -> np.ndarray:
    """A column as float64, missing values (``None``, ``pd.NA``) as NaN."""
    return (
        pd.to_numeric(values, errors="coerce")
        .astype("Float64")
        .to_numpy(np.float64, na_value=np.nan)
    )


def _unversioned(gene_id: str) -> str:
    return str(gene_id).split(".")[0]
