"""The house: data flows one way between the package's floors, without circles."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

import genlm_sc

PACKAGE = Path(genlm_sc.__file__).parent
#: floor → floors it must never import (directly or inside a function).
FORBIDDEN = {
    "io": {"pp", "models", "store", "get", "tl", "pl", "datasets"},
    "pp": {"models", "get", "tl", "pl", "datasets"},
    "models": {"pp", "store", "get", "tl", "pl", "datasets"},
    "store": {"pp", "models", "get", "tl", "pl", "datasets"},
    "get": {"models", "tl", "pl", "datasets"},
    "tl": {"pl", "datasets"},
    "pl": {"datasets"},
}
#: Modules at the package root that every floor may use (they import no floor).
BASEMENT = {
    "_dna",
    "_devices",
    "_distributed",
    "_provenance",
    "_quiet",
    "_settings",
    "_version",
}
MAX_LINES = 560


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Modules of the package that ``name`` imports anywhere in its code."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # "from pkg import mod" imports the module pkg.mod; otherwise the module pkg
            targets = [f"{stem}.{a.name}" if f"{stem}.{a.name}" in known else stem
                       for a in node.names]  # fmt: skip
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def graph() -> dict[str, set[str]]:
    found = modules()
    return {name: imports_of(name, path, set(found)) for name, path in found.items()}


def floor(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def back_arrows(edges: dict[str, set[str]]) -> list[str]:
    bad = []
    for source, targets in edges.items():
        for target in targets:
            if floor(target) in FORBIDDEN.get(floor(source), set()):
                bad.append(f"{source} -> {target}")
            if floor(source) in BASEMENT and floor(target) not in BASEMENT:
                bad.append(f"{source} -> {target}")
            if target == "genlm_sc" and source not in ("genlm_sc.demo",):
                bad.append(f"{source} -> the package root")
    return sorted(bad)


def circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (a package's ``__init__``
    re-exporting its own modules is not a circle: those edges are left out)."""
    inner = {
        s: {t for t in ts if not (s.startswith(f"{t}.") and modules_path(t).name == "__init__.py")}
        for s, ts in edges.items()
    }
    index, low, on_stack, stack, groups = {}, {}, set(), [], []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in inner.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(inner):
        if node not in index:
            visit(node)
    return groups


def modules_path(name: str) -> Path:
    return modules()[name]


def test_data_flows_one_way():
    assert back_arrows(graph()) == []


def test_no_import_circles():
    assert circles(graph()) == []


def test_a_back_arrow_and_a_circle_are_caught():
    edges = graph()
    edges["genlm_sc.io.fasta"] = edges["genlm_sc.io.fasta"] | {"genlm_sc.pp.personal"}
    assert back_arrows(edges) == ["genlm_sc.io.fasta -> genlm_sc.pp.personal"]
    edges = graph()
    edges["genlm_sc.get"] = edges["genlm_sc.get"] | {"genlm_sc.tl.language_model.embed"}
    assert back_arrows(edges) == ["genlm_sc.get -> genlm_sc.tl.language_model.embed"]
    assert circles(edges) == [["genlm_sc.get", "genlm_sc.tl.language_model.embed"]]


@pytest.mark.parametrize("name", sorted(modules()))
def test_modules_stay_small(name):
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{name} has {lines} lines; split it by what it computes"


def third_party_imports() -> set[str]:
    """Top-level names of the modules outside the standard library that the package imports."""
    found = set()
    for path in modules().values():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"genlm_sc", "__future__"}


def test_every_imported_distribution_is_declared():
    settings = tomllib.loads((PACKAGE.parents[1] / "pyproject.toml").read_text())
    project = settings["project"]
    requirements = [*project["dependencies"]]
    requirements += [r for extra in project["optional-dependencies"].values() for r in extra]
    requirements += settings["tool"]["genlm_sc"]["no-deps"]  # installed with --no-deps
    declared = {re.match(r"[A-Za-z0-9_.-]+", r).group().lower().replace("_", "-")
                for r in requirements}  # fmt: skip
    distributions = packages_distributions()
    undeclared = {
        name: found
        for name in third_party_imports()
        if not (found := {d.lower().replace("_", "-") for d in distributions.get(name, [name])})
        & declared
    }
    assert undeclared == {}, f"imported but not in pyproject.toml: {undeclared}"


HEAVY = ("torch", "transformers", "scanpy")


def test_reading_genotypes_loads_neither_torch_nor_scanpy():
    """``import genlm_sc`` and building haplotypes start without the heavy dependencies."""
    import subprocess

    code = (
        "import sys, genlm_sc as gl\n"
        "example = gl.datasets.chr20_example()\n"
        "genes = gl.datasets.example_gene_panel(width=1000)[:2].copy()\n"
        "gl.pp.personal_sequences(example.vcf, fasta=example.fasta, genes=genes,\n"
        "                         unphased='random')\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("floor", ["", ".tl", ".pl", ".pp", ".models", ".datasets"])
def test_every_public_name_resolves(floor):
    """Names loaded on first use (``lazy_loader``) point at real modules and objects."""
    import importlib

    module = importlib.import_module("genlm_sc" + floor)
    assert set(module.__all__) <= set(dir(module)), "dir() must list every public name"
    for name in module.__all__:
        assert getattr(module, name) is not None, f"genlm_sc{floor}.{name}"
