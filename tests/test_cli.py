"""``genlm-sc``: the command line gives what the Python API gives, and fails as pipelines need."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import genlm_sc as gl
from genlm_sc.cli import parser
from genlm_sc.cli.commands import COMMANDS
from genlm_sc.cli.options import api_parameters, parameter_docs

ROOT = Path(__file__).resolve().parents[1]
VERBS = [command.name for command in COMMANDS]
GENES = ["PSMF1", "FKBP1A", "SIRPA"]
WIDTH = 512


def genlm_sc(*args, check: bool = True) -> subprocess.CompletedProcess:
    """Run the command line as a pipeline would, from this checkout."""
    done = subprocess.run(
        [sys.executable, "-m", "genlm_sc.cli", *map(str, args)],
        capture_output=True, text=True, env={"PYTHONPATH": str(ROOT / "src"),
                                             "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    if check:
        assert done.returncode == 0, done.stderr
    return done


def test_the_entry_point_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["scripts"] == {"genlm-sc": "genlm_sc.cli:main"}


def test_help_of_every_verb_loads_no_heavy_module():
    code = (
        "import contextlib, io, sys\nfrom genlm_sc.cli import main\n"
        f"for verb in {[[], *[[v] for v in VERBS]]!r}:\n"
        "    out = io.StringIO()\n"
        "    with contextlib.redirect_stdout(out):\n"
        "        try:\n"
        "            main([*verb, '--help'])\n"
        "        except SystemExit as exit:\n"
        "            assert exit.code == 0, verb\n"
        "    assert out.getvalue().startswith('usage: genlm-sc ' + ' '.join(verb)), verb\n"
        "print(sorted(m for m in ('torch', 'transformers', 'scanpy') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT / "src")})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_options_mirror_the_functions():
    """Names, defaults, choices and help come from the function's own signature and docs."""
    verbs = parser()._subparsers._group_actions[0].choices
    actions = {a.dest: a for a in verbs["fit-expression"]._actions}
    assert actions["n_folds"].option_strings == ["--n-folds"] and actions["n_folds"].default == 5
    assert actions["method"].required and "ridge" in actions["method"].choices
    docs = parameter_docs(gl.tl.fit_expression.__doc__)
    assert docs["n_folds"].startswith("Number of outer folds (random, drawn with random_state)")
    assert actions["n_folds"].help.startswith(docs["n_folds"].replace("%", "%%"))
    embed = {a.dest: a for a in verbs["embed"]._actions}
    assert embed["layer"].default == -1 and embed["pooling"].choices == ("mean", "cls")
    assert embed["trust_remote_code"].default is False
    assert "gl.settings.device" in embed["device"].help  # the global option, not embed's
    assert api_parameters("genlm_sc.tl.language_model.embed", "embed")["device"].default == "auto"
    haplotypes = {a.dest: a for a in verbs["haplotypes"]._actions}
    assert haplotypes["width"].required and haplotypes["store"].required
    assert haplotypes["unphased"].choices == ("error", "as_listed", "random", "reference")
    # a line naming two parameters gives both the same text
    assert parameter_docs(gl.tl.embed.__doc__)["precision"].startswith('"auto" picks')


@pytest.fixture(scope="module")
def shipped(tmp_path_factory, example):
    """Expression simulated on the example people for three genes, as a table on disk."""
    folder = tmp_path_factory.mktemp("cli")
    genes = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=WIDTH, genes=GENES)
    cohort = gl.pp.personal_sequences(example.vcf, fasta=example.fasta, genes=genes,
                                      unphased="random")  # fmt: skip
    gl.datasets.simulate_expression(cohort, n_causal=1, h2=0.5, random_state=0)
    table = pd.DataFrame(cohort.X, index=cohort.obs_names, columns=cohort.var_names)
    table.index.name = "sample"
    table.to_csv(folder / "expression.tsv", sep="\t")
    return folder


def test_each_verb_writes_what_the_python_api_gives(shipped, example):
    from test_embed import conv_checkpoint

    store, model = shipped / "cohort.zarr", conv_checkpoint(shipped / "model")
    genlm_sc("haplotypes", example.vcf, "--fasta", example.fasta, "--annotation",
             example.genes, "--width", WIDTH, "--genes", *GENES, "--unphased", "random",
             "--expression", shipped / "expression.tsv", "--panel", example.panel,
             "--store", store)  # fmt: skip
    genes = gl.pp.gene_windows(example.genes, fasta=example.fasta, width=WIDTH, genes=GENES)
    expected = gl.pp.personal_sequences(
        example.vcf, fasta=example.fasta, genes=genes, unphased="random",
        expression=shipped / "expression.tsv", panel=example.panel,
        store=shipped / "python.zarr",
    )  # fmt: skip
    expected, cohort = gl.read(shipped / "python.zarr"), gl.read(store)
    pd.testing.assert_frame_equal(cohort.var, expected.var)
    pd.testing.assert_frame_equal(cohort.obs, expected.obs)
    np.testing.assert_array_equal(cohort.X, expected.X)
    for gene in GENES:
        pd.testing.assert_frame_equal(gl.get.haplotypes(cohort, gene),
                                      gl.get.haplotypes(expected, gene))  # fmt: skip

    genlm_sc("--no-progress", "embed", store, "--model", model, "--batch-size", 8)
    gl.tl.embed(expected, model=model, batch_size=8, device="cpu", progress=False)
    cohort = gl.read(store)
    stored = gl.get.haplotype_store(cohort)["X_gl"].values
    np.testing.assert_allclose(stored, gl.get.haplotype_store(expected)["X_gl"].values,
                               atol=1e-5)  # fmt: skip
    assert cohort.uns["gl"]["embeddings"]["X_gl"]["n_forward_sequences"] == len(stored)

    table = shipped / "results.tsv"
    genlm_sc("fit-expression", store, "--method", "ridge", "--n-folds", 3, "--table", table)
    gl.tl.fit_expression(expected, method="ridge", n_folds=3)
    cohort = gl.read(store)
    np.testing.assert_allclose(cohort.layers["gl_pred_ridge"], expected.layers["gl_pred_ridge"],
                               atol=1e-4)  # fmt: skip
    np.testing.assert_array_equal(cohort.obs["gl_fold"], expected.obs["gl_fold"])
    written = pd.read_csv(table, sep="\t")
    wanted = gl.get.expression_results(expected)
    assert list(written["gene"]) == list(wanted["gene"])
    np.testing.assert_allclose(written["r"], wanted["r"], atol=1e-4)

    effects = shipped / "effects.csv"
    two = ["FKBP1A", "PSMF1"]  # --gene takes one gene or several, as the function does
    genlm_sc("variant-effects", store, "--gene", *two, "--model", model, "--table", effects)
    genlm_sc("attribute", store, "--gene", "FKBP1A", "--model", model, "--target", "mlm",
             "--method", "grad_x_input")  # fmt: skip
    gl.tl.variant_effects(expected, gene=two, model=model, device="cpu")
    gl.tl.attribute(expected, gene="FKBP1A", model=model, target="mlm", method="grad_x_input",
                    device="cpu")  # fmt: skip
    cohort, written = gl.read(store), pd.read_csv(effects)
    assert list(dict.fromkeys(written["gene"])) == two
    columns = ["variant_id", "position", "ref", "alt", "llr_masked", "embedding_shift"]
    for gene in two:
        wanted = gl.get.variant_effects(expected, gene)
        pd.testing.assert_frame_equal(gl.get.variant_effects(cohort, gene), wanted, atol=1e-4)
        rows = written[written["gene"] == gene].reset_index(drop=True)
        pd.testing.assert_frame_equal(rows[columns], wanted[columns], atol=1e-4)
    key = "gl_grad_x_input_mlm"
    np.testing.assert_allclose(gl.get.attribution(cohort, "FKBP1A", key=key)["attribution"],
                               gl.get.attribution(expected, "FKBP1A", key=key)["attribution"],
                               atol=1e-5)  # fmt: skip


def test_bad_input_exits_1_with_one_line_naming_the_file(tmp_path, example):
    common = ["--fasta", example.fasta, "--annotation", example.genes, "--width", 256,
              "--genes", "PSMF1", "--store", tmp_path / "c.zarr"]  # fmt: skip
    missing = genlm_sc("haplotypes", tmp_path / "absent.vcf.gz", *common, check=False)
    assert missing.returncode == 1
    assert (
        missing.stderr
        == f"genlm-sc haplotypes: error: {tmp_path / 'absent.vcf.gz'}: no such VCF file\n"
    )
    (tmp_path / "bad.vcf").write_text("##fileformat=VCFv4.2\nnot a header\n")
    malformed = genlm_sc("haplotypes", tmp_path / "bad.vcf", *common, check=False)
    assert malformed.returncode == 1
    lines = malformed.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        f"genlm-sc haplotypes: error: {tmp_path / 'bad.vcf'}"
    )
    assert "Traceback" in genlm_sc("--debug", "haplotypes", tmp_path / "bad.vcf", *common,
                                   check=False).stderr  # fmt: skip
    assert not (tmp_path / "c.zarr").exists()


def test_usage_errors_exit_2(tmp_path, capsys):
    from genlm_sc.cli import main

    for argv in (["embed"], ["--device", "gpu", "embed", "s.zarr", "--model", "m"],
                 ["fit-expression", "s.zarr", "--method", "lasso"]):  # fmt: skip
        with pytest.raises(SystemExit) as exit:
            main(argv)
        assert exit.value.code == 2
    assert "settings.device" in capsys.readouterr().err


def test_a_store_that_is_not_there_exits_1(tmp_path, capsys):
    from genlm_sc.cli import main

    assert main(["fit-expression", str(tmp_path / "none.zarr"), "--method", "ridge"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "none.zarr: no such cohort store" in err


def test_interrupted_exits_130(monkeypatch, capsys):
    from genlm_sc import cli
    from genlm_sc.cli import commands

    def interrupted(args, keywords):
        raise KeyboardInterrupt

    monkeypatch.setattr(commands.Command, "__call__", lambda self, args: interrupted(args, {}))
    assert cli.main(["embed", "s.zarr", "--model", "m"]) == 130
    assert capsys.readouterr().err == "genlm-sc embed: interrupted\n"


def test_global_options_set_gl_settings(monkeypatch):
    from genlm_sc import cli
    from genlm_sc.cli import commands

    seen = {}
    monkeypatch.setattr(commands.Command, "__call__",
                        lambda self, args: seen.update(repr=repr(gl.settings)))  # fmt: skip
    try:
        assert cli.main(["--verbosity", "info", "embed", "s.zarr", "--model", "m",
                         "--n-jobs", "2", "--device", "cpu", "--no-progress"]) == 0  # fmt: skip
        assert seen["repr"] == (
            "genlm_sc settings(verbosity=2, progress=False, n_jobs=2, device='cpu')"
        )
        assert cli.main(["--quiet", "embed", "s.zarr", "--model", "m"]) == 0
        assert gl.settings.verbosity == 0
    finally:
        gl.settings.reset()


def test_python_dash_m_genlm_sc_runs_the_command_line():
    done = subprocess.run([sys.executable, "-m", "genlm_sc", "--version"], capture_output=True,
                          text=True, env={"PYTHONPATH": str(ROOT / "src")})  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == f"genlm-sc {gl.__version__}"


def test_every_option_of_every_verb_has_help_text():
    """An API keyword without a numpydoc entry would reach --help with no description."""
    verbs = parser()._subparsers._group_actions[0].choices
    for verb, sub in verbs.items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help and action.help.strip(), (verb, action.dest)
