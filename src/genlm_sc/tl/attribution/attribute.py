"""Per-base attributions of a gene's window: in-silico mutagenesis, gradient × input,
integrated gradients and DeepLIFT-SHAP."""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Literal

import anndata as ad
import numpy as np
import xarray as xr

from ..._dna import BASES
from ..._engine import (
    cluster,
    is_distributed,
    loaded_once,
    run_tasks,
    saved_models,
    task_slots,
)
from ...get import (
    anchor_coordinate,
    anchor_index,
    gene_id,
    gene_index,
    gene_name,
    haplotype_store,
    is_cohort,
    sequences,
)
from .scorer_loading import load_scorer

__all__ = ["attribute"]

Method = Literal["ism", "grad_x_input", "integrated_gradients", "deeplift_shap"]
METHODS = ("ism", "grad_x_input", "integrated_gradients", "deeplift_shap")
Target = Literal["expression", "classification", "mlm"]


@dataclass
class GeneWindow:
    """A gene's window: reference sequence in gene orientation and its coordinates."""

    gene: str
    chrom: str
    start: int
    end: int
    strand: str
    sequence: str

    @property
    def anchor(self) -> int:
        """Reference coordinate of the window's anchor (its base at index ``width // 2``)."""
        return anchor_coordinate(self.start, self.end, minus=self.strand == "-")

    @property
    def positions(self) -> np.ndarray:
        """Reference coordinate (0-based) of every base of :attr:`sequence`."""
        offsets = np.arange(len(self.sequence), dtype=np.int64)
        return self.end - 1 - offsets if self.strand == "-" else self.start + offsets

    def columns(self, positions: np.ndarray) -> np.ndarray:
        """Index along :attr:`sequence` of reference coordinates (``-1`` outside)."""
        positions = np.asarray(positions, dtype=np.int64)
        index = self.end - 1 - positions if self.strand == "-" else positions - self.start
        inside = (positions >= self.start) & (positions < self.end)
        return np.where(inside, index, -1)


def gene_window(adata: ad.AnnData, gene: str) -> GeneWindow:
    """The window of ``gene`` (id or unique name) of a cohort or a panel."""
    if is_cohort(adata):
        ds = haplotype_store(adata)
        g, _, _ = gene_index(adata, gene)
        window_id = str(ds["gene"].values[g])
        sequence = sequences(adata[:, [window_id]])[window_id]
        return GeneWindow(
            window_id, str(ds["gene_chrom"].values[g]), int(ds["gene_window_start"].values[g]),
            int(ds["gene_window_end"].values[g]), str(ds["gene_strand"].values[g]), sequence,
        )  # fmt: skip
    window_id = gene_id(adata, gene)
    sequence = sequences(adata[[window_id]])[window_id]
    row = adata.obs.loc[window_id]
    if {"chrom", "start", "end"} <= set(adata.obs.columns):
        strand = str(row.get("strand", "+"))
        return GeneWindow(window_id, str(row["chrom"]), int(row["start"]), int(row["end"]),
                          strand, sequence)  # fmt: skip
    return GeneWindow(window_id, "", 0, len(sequence), "+", sequence)


def attribute(
    adata: ad.AnnData,
    *,
    gene: str | Sequence[str],
    model: Any,
    method: Method = "ism",
    target: Target = "expression",
    label: str | None = None,
    samples: Sequence[str] | None = None,
    region: tuple[int, int] | None = None,
    baseline: str | None = None,
    n_steps: int = 50,
    n_baselines: int = 20,
    random_state: int = 0,
    batch_size: int = 32,
    device: str = "auto",
    client: Any = None,
    n_jobs: int | None = None,
    key_added: str | None = None,
    copy: bool = False,
) -> ad.AnnData | None:
    """Per-base attribution scores of a gene's window, for the reference and for people.

    Parameters
    ----------
    adata
        A cohort (:func:`genlm_sc.pp.personal_sequences`) or a gene / sequence panel.
    gene
        Gene id or unique gene name (a panel: an ``obs`` name), or a list of them: each
        gene's result is written as soon as it is complete.
    model
        ``target="expression"``: a fine-tuned expression model (in memory, or a folder
        saved by ``fit_expression(method="finetune")``, e.g. ``output_dir/<gene>/fold_0``),
        or a fused model (``method="fusion"``): its backbone branch is explained (see
        :mod:`genlm_sc.tl.attribution.backbone_scorer`), on the bases its input cut
        around the anchor covers (others are ``NaN``).
        ``target="classification"``: a sequence classifier (in memory, or the folder
        ``output_dir`` of :func:`genlm_sc.tl.fit_classifier`).
        ``target="mlm"``: a masked-LM checkpoint folder (:func:`genlm_sc.tl.pretrain`) or a
        ``(model, tokenizer)`` pair.
    method
        ``"ism"``: in-silico saturation mutagenesis, the change of the score when each
        base is replaced by each of the three others (all ``3 L`` mutants, evaluated in
        batches, only the chunks a mutant changes; edits that change no token are not
        run). ``"grad_x_input"``: the gradient of the score with respect to the one-hot
        bases times the one-hot input (non-zero only at the sequence's own base); token
        gradients are projected onto bases as described in :mod:`genlm_sc.tl.attribution.onehot`.
        ``"integrated_gradients"``: captum's integrated gradients from ``baseline`` to the
        sequence's one-hot bases (through the same map onto tokens), ``(x - baseline)``
        times the gradient averaged along the straight path; the attributions of a
        sequence add up to ``score(x) - score(baseline)`` up to the stored
        ``convergence_delta``. ``"deeplift_shap"``: captum's ``DeepLiftShap``, DeepLIFT
        averaged over ``n_baselines`` baseline sequences; its rules are exact (attributions
        add up to the score minus the mean baseline score, ``convergence_delta`` at
        rounding level) only for networks whose nonlinearities are captum-supported
        modules (``ReLU``, ``Sigmoid``, ``Tanh``, ...) with a linear readout, as an
        expression model's head is. Through GELU, layer norm, attention and the
        masked LM's log-softmax (every shipped architecture) captum passes plain
        gradients, so the attributions are an approximation; the stored
        ``convergence_delta`` says how far from additive they are. Gradient methods need a
        token embedding matrix (GPN has none: use ``"ism"``).
    target
        The score: ``"expression"``, the predicted expression of a person homozygous for
        the sequence (editing one haplotype of a person changes the prediction by half
        the homozygous change); ``"classification"``, the log-probability (nats) the
        classifier gives the class ``label``; ``"mlm"``, the one-pass log-likelihood of the sequence
        under the masked LM (sum of ``log p(token)``, nats; gradients are taken through
        the inputs with the scored tokens held fixed).
    label
        ``target="classification"``: the class whose log-probability is explained
        (compared as text with the classifier's classes); default its last class (the
        positive one of two).
    samples
        A cohort's people whose haplotypes are scored too (each distinct haplotype once);
        ``None``: only the reference window.
    region
        ``(start, end)``, 0-based half-open reference coordinates: mutate only the bases
        copied from there (ISM over a whole 4-kb window is ``3 × 4,096`` mutants; a region
        around a variant of interest is far quicker). Other positions are ``NaN``.
        Gradients are computed for the whole window regardless.
    baseline
        ``"integrated_gradients"``: ``"zeros"`` (default; every base entry 0: the
        sequence's token vectors, hence their embeddings, are 0, special tokens kept) or
        ``"uniform"`` (every entry 0.25, the average base; k-mer tokens get ``4**-k`` on
        every k-mer). ``"deeplift_shap"``: ``"shuffle"`` (default; dinucleotide shuffles of
        each sequence, keeping its dinucleotide and CpG counts) or ``"random"``
        (independent uniform bases). BPE tokenizers allow only ``"zeros"`` (their tokens are
        not products of bases).
    n_steps
        Integration steps of ``"integrated_gradients"`` (Gauss-Legendre).
    n_baselines
        Baseline sequences of ``"deeplift_shap"``.
    random_state
        Seed of the ``"deeplift_shap"`` baselines.
    batch_size
        Chunks per forward pass.
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ...
    client
        A :class:`distributed.Client`: each sequence (the reference and every distinct
        haplotype of ``samples``) is a task on its workers, which load ``model`` (a
        folder) once each. The results equal those of one process (within float
        rounding: a task scores its sequence alone, not in a batch with others).
    n_jobs
        Run on a local cluster of this many worker processes (one thread each), made for
        the call; ignored when ``client`` is given. ``None`` or 1: in this process.
    key_added
        Where the result is stored (default ``"gl_<method>_<target>"``): in the cohort's
        Zarr store as the group ``<key_added>/<gene>`` when it lives on disk, else in
        ``adata.uns[key_added][gene]``.
    copy
        Work on and return a copy of ``adata`` (a cohort's on-disk store is written
        either way).

    Returns
    -------
    ``None``, or the annotated copy when ``copy=True``. The result, read back with
    :func:`genlm_sc.get.attribution`, is an :class:`xarray.Dataset` with dimensions ``sequence``
    (``"reference"``, then ``"haplotype_<index in the
        store>"``), ``position`` (reference coordinates, 0-based, in gene orientation:
        decreasing on minus-strand genes) and ``base`` (A, C, G, T, in gene orientation).
        Variables: ``attribution`` (sequence, position, base); ``observed`` (sequence,
        position), the base each sequence has there as an ASCII code, ``0`` where a
        deletion removed it; ``score`` (sequence), the unedited score; ``carriers``
        (sequence), the person-haplotypes of ``samples`` carrying each haplotype; and, with
        ``samples``, ``sample_sequence`` (sample, ploidy), which sequence each person
        carries; with ``"integrated_gradients"`` and ``"deeplift_shap"``,
        ``convergence_delta`` (sequence), the sum of a sequence's attributions minus the
        score difference they explain. ``attribution`` holds, at every base, the
        gradient (path-averaged for integrated gradients, DeepLIFT's multiplier for
        DeepLIFT-SHAP) times ``x - baseline``: gradient × input and a zero baseline are
        non-zero only at the sequence's own base, other baselines at all four; the sum
        over ``base`` is a position's contribution. Haplotype bases map to the
        reference through their indels; bases inserted by an insertion have no reference
        coordinate and are left out, deleted reference bases are ``NaN``.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")
    options = _options(method, baseline, n_steps, n_baselines, random_state)
    distributed = is_distributed(client, n_jobs)
    if distributed:
        saved_models("attribution", model=model)
    adata = adata.copy() if copy else adata
    genes = [gene] if isinstance(gene, str) else list(gene)
    settings = {
        "model": model, "target": target, "device": device, "method": method,
        "options": options, "batch_size": batch_size, "label": label,
    }  # fmt: skip
    from ...store import write_result

    with cluster(client, n_jobs) if distributed else nullcontext() as running:
        if running is None:
            settings["model"] = load_scorer(model, target=target, device=device, label=label)
        prepared = (
            _gene_tasks(adata, gene_window(adata, name), samples, region, settings)
            for name in genes
        )
        if running is None:
            done = ((gene, _scored_here(gene, settings)) for gene in prepared)
        else:
            done = _scored_on_workers(list(prepared), running)
        for gene, ds in done:
            window = gene.window
            ds.attrs.update({
                "gene": window.gene, "gene_name": gene_name(adata, window.gene),
                "chrom": window.chrom, "strand": window.strand, "method": method,
                "target": target, "model": _describe(model), "window_start": window.start,
                "window_end": window.end,
                "region": "" if region is None else f"{int(region[0])}-{int(region[1])}",
                **options,
                **({} if label is None else {"label": str(label)}),
            })  # fmt: skip
            write_result(adata, key_added or f"gl_{method}_{target}", window.gene, ds)
    return adata if copy else None


@dataclass
class GeneTasks:
    """One gene's sequences to score (the reference, then each distinct haplotype of the
    samples) with what maps their results back to the reference."""

    window: GeneWindow
    labels: list[str]
    sequences: list[str]
    columns: list[np.ndarray]
    carriers: list[int]
    tasks: list[dict[str, Any]]
    sample_sequence: Any = None


def _gene_tasks(
    adata: ad.AnnData,
    window: GeneWindow,
    samples: Sequence[str] | None,
    region: tuple[int, int] | None,
    settings: dict[str, Any],
) -> GeneTasks:
    """The arguments of :func:`sequence_attribution` for each sequence of a gene."""
    labels, sequences, coordinates, carriers = ["reference"], [window.sequence], [None], [0]
    sample_sequence = None
    if samples is not None:
        if not is_cohort(adata):
            raise ValueError("samples= needs a cohort (gl.pp.personal_sequences)")
        extra, sample_sequence = _haplotypes_of(adata, window.gene, samples)
        for label, (sequence, positions, count) in extra.items():
            labels.append(label)
            sequences.append(sequence)
            coordinates.append(positions)
            carriers.append(count)
    columns, tasks = [], []
    for i, sequence in enumerate(sequences):
        if coordinates[i] is None:
            coordinates[i] = window.positions[: len(sequence)]
            columns.append(np.arange(len(sequence)))
        else:
            columns.append(window.columns(coordinates[i]))
            columns[i][coordinates[i] < 0] = -1
        wanted = None
        if region is not None:
            inside = (coordinates[i] >= region[0]) & (coordinates[i] < region[1])
            wanted = np.flatnonzero(inside & (coordinates[i] >= 0)).tolist()
        anchor = anchor_index(coordinates[i], window.anchor, minus=window.strand == "-")
        tasks.append({**settings, "sequence": sequence, "anchor": anchor, "wanted": wanted})
    return GeneTasks(window, labels, sequences, columns, carriers, tasks, sample_sequence)


def _scored_here(gene: GeneTasks, settings: dict[str, Any]) -> xr.Dataset:
    """A gene's attributions computed in this process (the loaded scorer in
    ``settings["model"]``)."""
    results = [sequence_attribution(**task) for task in gene.tasks]
    scores = settings["model"].score(
        gene.sequences, batch_size=settings["batch_size"], anchors=[t["anchor"] for t in gene.tasks]
    )
    return _gene_dataset(gene, results, scores, settings["method"])


def _scored_on_workers(
    genes: list[GeneTasks], client: Any
) -> Iterator[tuple[GeneTasks, xr.Dataset]]:
    """Each gene's attributions, every sequence a task on ``client``'s workers; genes run in
    groups of at least four tasks per worker thread (a gene's few sequences alone would leave
    workers idle), each group's genes given back when the group is done."""
    slots = task_slots(client)
    group: list[GeneTasks] = []
    for i, gene in enumerate(genes):
        group.append(gene)
        if sum(len(g.tasks) for g in group) < 4 * slots and i < len(genes) - 1:
            continue
        results = run_tasks(
            client, sequence_attribution,
            [{**task, "with_score": True} for g in group for task in g.tasks],
            progress=False, description=f"attribution-{group[0].window.gene}",
        )  # fmt: skip
        given = iter(results)
        for g in group:
            mine = [next(given) for _ in g.tasks]
            scores = np.array([score for _, _, score in mine])
            yield g, _gene_dataset(g, mine, scores, g.tasks[0]["method"])
        group = []


def _gene_dataset(gene: GeneTasks, results: list, scores: Any, method: str) -> xr.Dataset:
    """A gene's sequences' attributions, mapped to reference coordinates."""
    window = gene.window
    width = len(window.sequence)
    values = np.full((len(gene.sequences), width, 4), np.nan)
    observed = np.zeros((len(gene.sequences), width), dtype=np.uint8)
    deltas = np.full(len(gene.sequences), np.nan)
    for i, (sequence, result) in enumerate(zip(gene.sequences, results, strict=True)):
        deltas[i] = result[1]
        codes = np.frombuffer(sequence.upper().encode("ascii"), dtype=np.uint8)
        kept = gene.columns[i] >= 0
        values[i, gene.columns[i][kept]] = result[0][kept]
        observed[i, gene.columns[i][kept]] = codes[kept]
    ds = xr.Dataset(
        {
            "attribution": (("sequence", "position", "base"), values.astype(np.float32)),
            "observed": (("sequence", "position"), observed),
            "score": ("sequence", np.asarray(scores)),
            "carriers": ("sequence", np.asarray(gene.carriers, dtype=np.int64)),
        },
        coords={"sequence": gene.labels, "position": window.positions, "base": list(BASES)},
    )
    if method in ("integrated_gradients", "deeplift_shap"):
        ds["convergence_delta"] = ("sequence", deltas)
    if gene.sample_sequence is not None:
        ds["sample_sequence"] = gene.sample_sequence
    return ds


def sequence_attribution(
    *,
    model: Any,
    target: str,
    device: str,
    method: str,
    options: dict[str, Any],
    batch_size: int,
    label: Any,
    sequence: str,
    anchor: int,
    wanted: list[int] | None,
    with_score: bool = False,
) -> tuple[np.ndarray, float, float | None]:
    """One sequence's attributions (length × 4), its convergence delta (``NaN`` for
    methods without one) and, ``with_score``, its unedited score (a task: ``model`` is a
    folder, loaded once per worker process)."""
    if isinstance(model, str | os.PathLike):
        model = loaded_once(
            model,
            lambda: load_scorer(model, target=target, device=device, label=label),
            target, device, label,
        )  # fmt: skip
    if method != "ism":
        model.require_embeddings(f"{method} attributions")
    delta = np.nan
    if method == "ism":
        scores = model.saturation_mutagenesis(
            sequence, positions=wanted, batch_size=batch_size, anchor=anchor
        )
    elif method == "grad_x_input":
        scores = _grad_x_input(model.base_gradients(sequence, anchor=anchor), sequence)
    else:
        scores, delta = _captum(model, sequence, method, options, batch_size, anchor)
    score = None
    if with_score:
        score = float(model.score([sequence], batch_size=batch_size, anchors=[anchor])[0])
    return scores, delta, score


def _options(
    method: str, baseline: str | None, n_steps: int, n_baselines: int, random_state: int
) -> dict[str, Any]:
    """The settings of ``method`` recorded with its result (refusing ones it ignores)."""
    from .onehot import BASELINES, check_baseline

    if method not in BASELINES:
        if baseline is not None:
            raise ValueError(f"baseline= applies to {tuple(BASELINES)}, not to method={method!r}")
        return {}
    baseline = BASELINES[method][0] if baseline is None else baseline
    check_baseline(method, baseline)
    if method == "integrated_gradients":
        return {"baseline": baseline, "n_steps": int(n_steps)}
    return {"baseline": baseline, "n_baselines": int(n_baselines),
            "random_state": int(random_state)}  # fmt: skip


def _captum(
    scorer: Any, sequence: str, method: str, options: dict[str, Any], batch_size: int, anchor: int
) -> tuple[np.ndarray, float]:
    from .onehot import deeplift_shap, integrated_gradients

    score = scorer.onehot_score(sequence.upper(), anchor)
    run = integrated_gradients if method == "integrated_gradients" else deeplift_shap
    return run(score, **options, batch_size=batch_size)


def _grad_x_input(gradients: np.ndarray, sequence: str) -> np.ndarray:
    """Gradient times the one-hot input: the gradient at each base's own letter."""
    out = np.zeros_like(gradients)
    out[np.isnan(gradients).all(axis=1)] = np.nan  # positions the model does not read
    for position, letter in enumerate(sequence.upper()):
        base = BASES.find(letter)
        if base < 0:
            out[position] = np.nan
        else:
            out[position, base] = gradients[position, base]
    return out


def _haplotypes_of(
    cohort: ad.AnnData, gene: str, samples: Sequence[str]
) -> tuple[dict[str, tuple[str, np.ndarray, int]], xr.DataArray]:
    """Distinct haplotypes of ``samples``: label → (sequence, reference positions, count)."""
    from ...get import reference_positions, sample_rows, unique_haplotypes

    ds = haplotype_store(cohort)
    g, lo, _ = gene_index(cohort, gene)
    names, rows = sample_rows(cohort, samples=samples)
    carried = ds["sample_haplotype"][:, g, :].values[rows]  # store haplotype indices
    distinct, counts = np.unique(carried, return_counts=True)
    table = unique_haplotypes(cohort, gene)
    positions = reference_positions(cohort, gene).values
    out = {}
    for index, count in zip(distinct, counts, strict=True):
        sequence = table.loc[index, "sequence"]
        out[f"haplotype_{index}"] = (sequence, positions[index - lo, : len(sequence)], count)
    order = {int(index): i + 1 for i, index in enumerate(distinct)}  # 0 is the reference
    sample_sequence = xr.DataArray(
        np.vectorize(order.get)(carried).astype(np.int64),
        dims=("sample", "ploidy"),
        coords={"sample": names, "ploidy": [0, 1]},
    )
    return out, sample_sequence


def _describe(model: Any) -> str:
    if isinstance(model, str | os.PathLike):
        return os.path.abspath(os.fspath(model))
    return type(model).__name__
