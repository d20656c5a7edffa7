"""scverse conventions of the public API, in the spirit of scanpy's test_sig_conventions."""

from __future__ import annotations

import inspect
import typing

import pytest

import genlm_sc as gl

#: Tools that take no AnnData, and why.
NO_ANNDATA = {
    "tl.pretrain": "trains a model on a corpus or FASTA and returns its directory",
    "tl.predict": "applies a saved expression model to sequences",
    "tl.predict_classifier": "applies a saved classifier to sequences",
    "tl.scan_motifs": "scans one sequence, as FIMO does",
    "tl.fit_dosages": "PrediXcan on a plain dosage matrix, for data outside a cohort",
}
#: Functions whose leading arguments are data, not options (all other options are
#: keyword-only): name → how many positional parameters.
POSITIONAL = {
    "tl.predict": 2,  # model, sequences
    "tl.predict_classifier": 2,  # model, sequences
    "tl.scan_motifs": 2,  # sequence, motifs
    "tl.fit_dosages": 2,  # dosages, y
    "pp.decontaminate": 2,  # corpus, labelled sets
}
#: One name per idea: names that are spelled otherwise in this API.
RETIRED = {
    "rng": "random_state",
    "seed": "random_state",
    "cv": "n_folds",
    "split_by": "folds_by",
    "n_splits": "n_folds",
    "save": "(plots return Axes; save with matplotlib)",
    "show": "(plots return Axes)",
}


def functions(*modules: str) -> list[tuple[str, typing.Callable]]:
    found = []
    for name in modules:
        module = getattr(gl, name)
        for attribute in module.__all__:
            obj = getattr(module, attribute)
            if inspect.isfunction(obj):
                found.append((f"{name}.{attribute}", obj))
    return found


def public_callables() -> list[tuple[str, typing.Callable]]:
    found = functions("pp", "tl", "pl", "get", "datasets")
    methods = ("add_fasta", "add_variant_windows", "add_haplotypes", "hold_out")
    found += [(f"pp.PretrainingCorpus.{m}", getattr(gl.pp.PretrainingCorpus, m)) for m in methods]
    found.append(("tl.FinetuneOptions", gl.tl.expression.finetune.FinetuneOptions))
    return found


def parameters(function) -> list[inspect.Parameter]:
    return [p for p in inspect.signature(function).parameters.values() if p.name != "self"]


def writes_into_adata(name: str) -> bool:
    return name.startswith("tl.") and name not in NO_ANNDATA


@pytest.mark.parametrize(("name", "function"), functions("tl", "pl", "get"))
def test_adata_comes_first(name, function):
    if name in NO_ANNDATA:
        return
    assert parameters(function)[0].name == "adata", name


@pytest.mark.parametrize(("name", "function"), functions("pp", "tl", "pl", "get", "datasets"))
def test_options_are_keyword_only(name, function):
    allowed = POSITIONAL.get(name, 2 if name.startswith("get.") else 1)
    positional = [
        p.name
        for p in parameters(function)
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    assert len(positional) <= allowed, f"{name}: options {positional[allowed:]} not keyword-only"


@pytest.mark.parametrize(("name", "function"), functions("tl"))
def test_tools_take_key_added_and_copy_and_return_none(name, function):
    if not writes_into_adata(name):
        return
    params = {p.name: p for p in parameters(function)}
    assert "key_added" in params, f"{name} has no key_added"
    assert "copy" in params and params["copy"].default is False, f"{name}: copy=False"
    returned = inspect.signature(function).return_annotation
    assert returned in ("ad.AnnData | None", "AnnData | None"), f"{name} returns {returned}"


@pytest.mark.parametrize(("name", "function"), functions("pl"))
def test_plots_return_axes_and_take_ax(name, function):
    returned = str(inspect.signature(function).return_annotation)
    assert "Axes" in returned or "Figure" in returned, name
    assert "ax" in {p.name for p in parameters(function)}, name


@pytest.mark.parametrize(("name", "function"), public_callables())
def test_one_name_per_idea(name, function):
    for p in parameters(function):
        assert p.name not in RETIRED, f"{name}({p.name}=): call it {RETIRED[p.name]}"
        annotation = str(p.annotation)
        if p.name == "model":  # model= is a checkpoint; an algorithm is method=
            assert "Literal[" not in annotation, f"{name}: model={annotation} is a method"


def test_a_convention_break_is_caught():
    def tool(adata, genes, *, rng=0):
        """A tool written against the conventions."""

    with pytest.raises(AssertionError, match="not keyword-only"):
        test_options_are_keyword_only("tl.tool", tool)
    with pytest.raises(AssertionError, match="no key_added"):
        test_tools_take_key_added_and_copy_and_return_none("tl.tool", tool)
    with pytest.raises(AssertionError, match="random_state"):
        test_one_name_per_idea("tl.tool", tool)

    def first(data, *, ax=None) -> int:
        """A plot that returns no Axes."""

    with pytest.raises(AssertionError):
        test_adata_comes_first("pl.first", first)
    with pytest.raises(AssertionError):
        test_plots_return_axes_and_take_ax("pl.first", first)
