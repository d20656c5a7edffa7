"""Sessions: tests, tests_slow, lint, docs, demo, bench.

Run one with ``nox -s NAME`` (``pip install nox`` first). Each session installs what it
needs into its own virtual environment.
"""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True
PYTHON = "3.11"
# The CPU build of PyTorch, installed before the package so that its ``torch`` range is
# already satisfied and pip does not fetch the CUDA build.
TORCH = "torch==2.13.0"


def install_package(session: nox.Session, target: str) -> None:
    """Install PyTorch's CPU build, then ``target`` (e.g. ``-e .[test]``)."""
    session.install(TORCH)
    session.install(*target.split())


def install_no_deps(session: nox.Session) -> None:
    """The packages of ``[tool.genlm_sc] no-deps`` in pyproject.toml (the fused backbones),
    without their dependencies: they pin transformers<5 (their other dependencies come with
    the ``fusion`` extra)."""
    import tomllib
    from pathlib import Path

    settings = tomllib.loads((Path(__file__).parent / "pyproject.toml").read_text())
    session.install("--no-deps", *settings["tool"]["genlm_sc"]["no-deps"])


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The test suite without the slow tests."""
    install_package(session, "-e .[test,fusion]")
    install_no_deps(session)
    session.run("pytest", "-m", "not slow and not gpu", *session.posargs)


@nox.session(python=PYTHON)
def tests_slow(session: nox.Session) -> None:
    """Only the tests marked slow."""
    install_package(session, "-e .[test,fusion]")
    install_no_deps(session)
    session.run("pytest", "-m", "slow", *session.posargs, success_codes=[0, 5])


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff: lint and formatting."""
    session.install("ruff>=0.6")
    python_files = ["src", "tests", "benchmarks", "docs/conf.py", "docs/readme_figures.py"]
    session.run("ruff", "check", *python_files, "tutorials", "noxfile.py")
    session.run("ruff", "format", "--check", *python_files, "noxfile.py")


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """The documentation: executes the tutorials and fails on any Sphinx warning.

    Writes ``docs/_build/html`` (open ``index.html``); ``nox -s docs -- -E`` rebuilds
    every page, and ``GL_DOCS_EXECUTE=force`` re-executes unchanged notebooks too.
    """
    install_package(session, "-e .[docs]")
    session.run(
        "sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html",
        *session.posargs,
    )  # fmt: skip


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    """The main demo on the shipped example data; writes into ./genlm_sc_demo."""
    install_package(session, ".")
    session.run("python", "-m", "genlm_sc.demo", *(session.posargs or ["genlm_sc_demo"]))


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """Benchmarks against the tools a user would otherwise pick (see benchmarks/README.md)."""
    install_package(session, "-e .[bench]")
    session.run("python", "benchmarks/bench_haplotypes.py", *session.posargs)
