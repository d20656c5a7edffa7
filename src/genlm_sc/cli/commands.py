"""The verbs of ``genlm-sc``: each one a function of the Python API on a cohort store.

Every verb reads its options from the function it runs (:mod:`.options`); the heavy
modules are imported only when a verb runs, never to print its help.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .options import add_options

__all__ = ["COMMANDS", "Command"]

STORE_HELP = (
    "The cohort store (a folder written by `genlm-sc haplotypes`, gl.pp.personal_sequences "
    "or gl.write); results are written back into it."
)
#: Options every verb leaves to the global ones (gl.settings) or handles itself.
HANDLED = {"adata", "copy", "progress", "device", "client", "n_jobs"}
#: Functions that run on several worker processes when ``--n-jobs`` asks for them.
PARALLEL = {"personal_sequences", "embed", "fit_expression", "attribute", "variant_effects"}


@dataclass(frozen=True)
class Command:
    """A verb: the API functions whose options it offers, and what it does."""

    name: str
    summary: str
    functions: tuple[tuple[str, str, frozenset[str]], ...]
    run: Callable[[argparse.Namespace, dict[str, dict[str, Any]]], None]
    on_store: bool = True
    positional: tuple[str, ...] = ()
    required: tuple[str, ...] = ()
    extra: tuple[tuple[str, dict[str, Any]], ...] = field(default=())

    def add_to(self, parser: argparse.ArgumentParser) -> None:
        """Add this verb's options to its sub-parser; remember which belongs to whom."""
        if self.on_store:
            parser.add_argument("store", metavar="STORE", help=STORE_HELP)
        owners = {}
        for module, function, skip in self.functions:
            taken = {name for names in owners.values() for name in names}
            owners[function] = add_options(
                parser, module, function, skip=HANDLED | skip | taken,
                positional=self.positional, required=self.required,
            )  # fmt: skip
        for flag, kwargs in self.extra:
            parser.add_argument(flag, **kwargs)
        parser.set_defaults(command=self, owners=owners)

    def __call__(self, args: argparse.Namespace) -> None:
        keywords = {
            function: {name: getattr(args, name) for name in names}
            for function, names in args.owners.items()
        }
        self.run(args, keywords)


def _haplotypes(args: argparse.Namespace, keywords: dict[str, dict[str, Any]]) -> None:
    from ..pp import gene_windows, personal_sequences

    windows = keywords["gene_windows"]
    panel = gene_windows(windows.pop("annotation"), fasta=args.fasta, **windows)
    built = keywords["personal_sequences"]
    personal_sequences(built.pop("genotypes"), genes=panel, **_workers(built))


def _runs_as_tasks(function: str, options: dict[str, Any]) -> bool:
    """Whether ``function`` with these options can run on several workers."""
    if function != "fit_expression":
        return True
    from ..tl.expression.gene_fits import TASK_METHODS

    return options.get("method") in TASK_METHODS


def _workers(keywords: dict[str, Any]) -> dict[str, Any]:
    """``keywords`` with ``n_jobs`` from ``--n-jobs`` (gl.settings) when it asks for more
    than one worker."""
    from .._settings import settings

    n = settings.n_workers
    return {**keywords, "n_jobs": n} if n > 1 else keywords


def _cohort_tool(function: str) -> Callable[[argparse.Namespace, dict], None]:
    """Read the store, run ``gl.tl.<function>`` on it, write the store back (and the
    verb's table when asked)."""

    def run(args: argparse.Namespace, keywords: dict[str, dict[str, Any]]) -> None:
        from .. import tl
        from ..store import read, write

        cohort = read(args.store)
        options = keywords[function]
        if function in PARALLEL and _runs_as_tasks(function, options):
            options = _workers(options)
        getattr(tl, function)(cohort, **options)
        write(cohort, args.store)
        if getattr(args, "table", None):
            _write_table(_table(cohort, function, keywords[function]), args.table)

    return run


def _table(cohort, function: str, keywords: dict[str, Any]):
    """The verb's table: for variant effects of several genes, theirs one after another,
    each row naming its gene."""
    import pandas as pd

    from .. import get

    if function == "fit_expression":
        return get.expression_results(cohort)
    genes = keywords["gene"]
    if isinstance(genes, str):
        return get.variant_effects(cohort, genes, key=keywords["key_added"])
    tables = [
        get.variant_effects(cohort, gene, key=keywords["key_added"]).assign(gene=gene)
        for gene in genes
    ]
    return pd.concat(tables, ignore_index=True)


def _write_table(table, path: str | os.PathLike) -> None:
    """A table as tab-separated text (comma-separated for a ``.csv`` name)."""
    separator = "," if os.fspath(path).endswith((".csv", ".csv.gz")) else "\t"
    table.to_csv(path, sep=separator, index=False)


def _table_option(what: str) -> tuple[str, dict[str, Any]]:
    return (
        "--table",
        {"metavar": "PATH", "help": f"Also write {what} to this file (tab-separated; "
         "comma-separated for a .csv name)."},
    )  # fmt: skip


COMMANDS = (
    Command(
        "haplotypes",
        "Build every person's two haplotype sequences around each gene of a panel into a "
        "cohort store (gl.pp.gene_windows, then gl.pp.personal_sequences).",
        (
            ("genlm_sc.pp.personal", "personal_sequences", frozenset({"genes"})),
            ("genlm_sc.pp.gene_windows", "gene_windows", frozenset()),
        ),
        _haplotypes,
        on_store=False,
        positional=("genotypes",),
        required=("store",),
    ),
    Command(
        "embed",
        "Embed every distinct haplotype of a cohort store with a DNA language model "
        "(gl.tl.embed); the embeddings are written into the store.",
        (("genlm_sc.tl.language_model.embed", "embed", frozenset()),),
        _cohort_tool("embed"),
    ),
    Command(
        "fit-expression",
        "Predict each person's expression of each gene out of fold (gl.tl.fit_expression); "
        "predictions and scores are written into the store.",
        (("genlm_sc.tl.expression.fit", "fit_expression", frozenset()),),
        _cohort_tool("fit_expression"),
        extra=(_table_option("the comparison table (gl.get.expression_results)"),),
    ),
    Command(
        "attribute",
        "Per-base attribution scores of the windows of one or more genes (gl.tl.attribute), "
        "written into the store (read them with gl.get.attribution).",
        (("genlm_sc.tl.attribution.attribute", "attribute", frozenset()),),
        _cohort_tool("attribute"),
    ),
    Command(
        "variant-effects",
        "Score every variant in the windows of one or more genes (gl.tl.variant_effects); "
        "the tables are written into the store.",
        (("genlm_sc.tl.attribution.variant_effects", "variant_effects", frozenset()),),
        _cohort_tool("variant_effects"),
        extra=(_table_option("the variant table (gl.get.variant_effects)"),),
    ),
)
