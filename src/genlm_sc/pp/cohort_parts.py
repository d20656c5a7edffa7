"""Building a cohort's haplotypes as parallel tasks over gene groups, resumably.

The panel is cut into groups of consecutive genes (never splitting the genes that share one
genotype read). Each group is a task that builds a complete part store of its genes, in
``.<store name>.parts/`` beside the target, renamed into place when whole. The parts are
then copied into the store (:mod:`genlm_sc.store.assemble`) and removed. A run that was
killed finds the parts it finished (same inputs, same options: a key in each part says so)
and builds only the others.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from .._provenance import file_record
from ..store.files import is_cohort_store, remove_abandoned_siblings

#: Folder name of the parts beside a store ``NAME``: ``.NAME.parts``.
PARTS_SUFFIX = ".parts"


def parts_folder(target: Path) -> Path:
    """Where the parts of the store at ``target`` are kept until it is complete."""
    return target.with_name(f".{target.name}{PARTS_SUFFIX}")


def span_reads(panel: pd.DataFrame, gene_ids) -> list[tuple[str, int, int] | None]:
    """For each gene of ``gene_ids`` built in this order, the span read at it, or ``None``.

    A build reads the genotypes of a span (the windows of nearby genes together, from the
    whole ``panel``) at the first gene outside the span read before.
    """
    from .gene_build import _clusters

    clusters = _clusters(panel)
    reads: list[tuple[str, int, int] | None] = []
    current = None
    for gene_id in gene_ids:
        chrom = panel.at[gene_id, "chrom"]
        start, end = int(panel.at[gene_id, "start"]), int(panel.at[gene_id, "end"])
        if current is None or not (
            current[0] == chrom and current[1] <= start <= end <= current[2]
        ):
            current = clusters[gene_id]
            reads.append(current)
        else:
            reads.append(None)
    return reads


def gene_groups(obs: pd.DataFrame, genes_per_group: int) -> list[list[str]]:
    """Consecutive genes in groups of about ``genes_per_group``, cut between span reads."""
    groups: list[list[str]] = [[]]
    for gene_id, read in zip(obs.index, span_reads(obs, obs.index), strict=True):
        if read is not None and len(groups[-1]) >= genes_per_group:
            groups.append([])
        groups[-1].append(gene_id)
    return [g for g in groups if g]


def counted_before(obs: pd.DataFrame, groups: list[list[str]]) -> list[list[tuple]]:
    """For each group, the spans whose records the groups before it counted."""
    seen: set[tuple] = set()
    before = []
    for group in groups:
        before.append(sorted(seen))
        seen.update(r for r in span_reads(obs, group) if r is not None)
    return before


def part_key(**inputs: Any) -> str:
    """A fingerprint of everything a part's content depends on."""
    text = json.dumps(inputs, sort_keys=True, default=str)
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def input_fingerprint(genotype_files, fasta) -> dict[str, Any]:
    """What identifies the input files (their size and checksums of their edges)."""
    return {"genotypes": [file_record(f) for f in genotype_files], "fasta": file_record(fasta)}


def finished_part(path: Path, key: str) -> dict[str, Any] | None:
    """The result recorded in a complete part built with ``key``, else ``None``."""
    if not is_cohort_store(path):
        return None
    try:
        attrs = zarr.open_group(os.fspath(path / "haplotypes"), mode="r").attrs.asdict()
    except Exception:  # an unreadable part is built again
        return None
    part = attrs.get("genlm_sc", {}).get("part", {})
    return part.get("result") if part.get("key") == key else None


def build_part(
    *,
    path: str,
    fingerprint: str,
    genotypes: str,
    fasta: str,
    samples: list[str],
    obs: pd.DataFrame,
    gene_ids: list[str],
    counted: list[tuple],
    contig_map: dict[str, str],
    policies: dict[str, Any],
    bgen_threshold: float,
) -> dict[str, Any]:
    """Build the part store of ``gene_ids`` at ``path`` (a task); returns its counts.

    A complete part built with the same ``fingerprint`` (:func:`part_key`) is kept and its
    recorded result returned.
    """
    from ..io.fasta import FastaReference
    from ..io.genotypes import open_genotypes
    from ..store import CohortStoreWriter
    from .gene_build import _Counts, build_genes

    target = Path(path)
    done = finished_part(target, fingerprint)
    if done is not None:
        return {**done, "reused": True}
    if target.exists():
        shutil.rmtree(target)
    remove_abandoned_siblings(target)
    counts = _Counts()
    reader = open_genotypes(genotypes, samples=samples, bgen_threshold=bgen_threshold)
    with reader, FastaReference(fasta) as reference:
        writer = CohortStoreWriter(target, samples=reader.samples, genes=list(gene_ids))
        try:
            n_variants, n_haplotypes, n_skipped = build_genes(
                writer, reader, reference, obs.loc[gene_ids], contig_map, counts,
                counted_before={tuple(c) for c in counted}, all_obs=obs, progress=False,
                **policies,
            )  # fmt: skip
            result = {
                "counts": {k: v for k, v in counts.__dict__.items()},
                "n_variants": n_variants,
                "n_haplotypes": n_haplotypes,
                "n_skipped": n_skipped,
            }
            writer.finish(None, attrs={"part": {"key": fingerprint, "result": result}})
        except BaseException:
            writer.abort()
            raise
    return {**_plain(result), "reused": False}


def _plain(result: dict[str, Any]) -> dict[str, Any]:
    """``result`` with numpy integers as Python ones (as read back from a part)."""
    return json.loads(json.dumps(result, default=int))


def merge_counts(counts, results: list[dict[str, Any]]) -> None:
    """Add the parts' record counts into ``counts`` (a ``_Counts``), in part order."""
    for result in results:
        for name, value in result["counts"].items():
            if name == "mismatches":
                counts.mismatches.extend(value[: max(0, 20 - len(counts.mismatches))])
            else:
                setattr(counts, name, getattr(counts, name) + int(value))


def remove_parts(folder: Path) -> None:
    """Remove the parts folder once the store is in place."""
    shutil.rmtree(folder, ignore_errors=True)


def _as_int_lists(results: list[dict[str, Any]], name: str) -> list[int]:
    return [int(x) for r in results for x in r[name]]


def per_gene(results: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Variants, distinct haplotypes and skipped overlaps of each gene, over all parts."""
    return tuple(
        np.asarray(_as_int_lists(results, n), dtype=np.int64)
        for n in ("n_variants", "n_haplotypes", "n_skipped")
    )


def build_in_parts(
    writer,
    *,
    genotypes: str | os.PathLike,
    genotype_files: list,
    fasta: str | os.PathLike,
    samples: list[str],
    obs: pd.DataFrame,
    contig_map: dict[str, str],
    counts,
    policies: dict[str, Any],
    bgen_threshold: float,
    client: Any,
    n_jobs: int | None,
    progress: bool,
) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], dict[str, int]]:
    """Build every gene's haplotypes as tasks over gene groups, then fill ``writer``.

    Returns the per-gene numbers of :func:`per_gene` and ``{"groups", "reused"}``.
    """
    from .._engine import cluster, run_tasks, task_slots
    from .._version import __version__
    from ..store.assemble import assemble_parts

    if writer.final_path is None:
        raise ValueError(
            "a build on several workers writes into a store on disk: pass store= (a path)"
        )
    folder = parts_folder(writer.final_path)
    folder.mkdir(parents=True, exist_ok=True)
    with cluster(client, n_jobs) as running:
        slots = task_slots(running)
        per_group = int(np.clip(np.ceil(len(obs) / (4 * slots)), 1, 16))
        groups = gene_groups(obs, per_group)
        before = counted_before(obs, groups)
        common = {
            "inputs": input_fingerprint(genotype_files, fasta),
            "samples": list(samples),
            "policies": policies,
            "bgen_threshold": bgen_threshold,
            "panel": obs[["chrom", "start", "end", "strand"]].to_json(),
            "version": __version__,
        }
        arguments = []
        for i, (group, counted) in enumerate(zip(groups, before, strict=True)):
            key = part_key(**common, genes=group, counted=counted)
            arguments.append(
                {
                    "path": os.fspath(folder / f"part-{i:05d}-{key[:12]}"),
                    "fingerprint": key, "genotypes": os.fspath(genotypes),
                    "fasta": os.fspath(fasta),
                    "samples": list(samples), "obs": obs, "gene_ids": group,
                    "counted": counted, "contig_map": contig_map, "policies": policies,
                    "bgen_threshold": bgen_threshold,
                }
            )  # fmt: skip
        wanted = {Path(a["path"]).name for a in arguments}
        for stale in folder.glob("part-*"):  # parts of another panel or other inputs
            if stale.name not in wanted:
                shutil.rmtree(stale, ignore_errors=True)
        results = run_tasks(
            running, build_part, arguments, progress=progress, description="haplotypes",
            unit="gene group",
        )  # fmt: skip
        assemble_parts(
            writer,
            [Path(a["path"]) for a in arguments],
            lambda function, tasks: run_tasks(
                running, function, tasks, progress=False, description="copy"
            ),
        )
    merge_counts(counts, results)
    reused = sum(bool(r["reused"]) for r in results)
    return per_gene(results), {"groups": len(groups), "reused": reused}
