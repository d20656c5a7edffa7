"""``gl.settings``: verbosity, progress, n_jobs and device, read by the functions."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest

import genlm_sc as gl
from genlm_sc._settings import show_progress


@pytest.fixture(autouse=True)
def defaults():
    gl.settings.reset()
    yield
    gl.settings.reset()


def test_defaults_and_reset():
    assert (gl.settings.verbosity, gl.settings.progress) == (1, None)
    assert (gl.settings.n_jobs, gl.settings.device) == (1, "auto")
    gl.settings.verbosity, gl.settings.progress = "debug", False
    gl.settings.n_jobs, gl.settings.device = -1, "cpu"
    assert gl.settings.n_workers >= 1
    gl.settings.reset()
    assert repr(gl.settings) == (
        "genlm_sc settings(verbosity=1, progress=None, n_jobs=1, device='auto')"
    )
    assert logging.getLogger("genlm_sc").level == logging.WARNING


def test_override_restores_what_was_there():
    gl.settings.n_jobs = 3
    with gl.settings.override(n_jobs=2, progress=False):
        assert (gl.settings.n_jobs, gl.settings.progress) == (2, False)
    assert (gl.settings.n_jobs, gl.settings.progress) == (3, None)
    with pytest.raises(ValueError, match="unknown settings"):
        with gl.settings.override(jobs=2):
            pass


@pytest.mark.parametrize(
    ("level", "expected"),
    [(0, logging.ERROR), (1, logging.WARNING), (2, logging.INFO), (3, logging.DEBUG),
     ("info", logging.INFO), ("ERROR", logging.ERROR)],
)  # fmt: skip
def test_verbosity_sets_the_package_logger_level(level, expected):
    gl.settings.verbosity = level
    assert logging.getLogger("genlm_sc").level == expected
    assert logging.getLogger("genlm_sc.pp.personal").getEffectiveLevel() == expected
    assert isinstance(gl.settings.verbosity, int)


def test_info_messages_reach_stderr_without_logging_configured(capsys, monkeypatch):
    monkeypatch.setattr(logging.getLogger(), "handlers", [])  # no logging configured
    gl.settings.verbosity = "info"
    logging.getLogger("genlm_sc.pp.decontamination").info("removed 3 windows")
    gl.settings.verbosity = 0
    logging.getLogger("genlm_sc.pp.decontamination").warning("not shown")
    assert capsys.readouterr().err == "INFO: removed 3 windows\n"


@pytest.mark.parametrize(
    ("name", "value"),
    [("verbosity", 4), ("verbosity", "loud"), ("verbosity", True), ("progress", "yes"),
     ("n_jobs", 0), ("n_jobs", 1.5), ("device", "gpu"), ("device", "cuda:x")],
)  # fmt: skip
def test_bad_values_name_the_setting(name, value):
    with pytest.raises(ValueError, match=f"settings.{name}"):
        setattr(gl.settings, name, value)


def test_unknown_settings_are_refused():
    with pytest.raises(AttributeError, match="no setting 'verbose'"):
        gl.settings.verbose = 2


def test_progress_setting_decides_over_each_functions_argument():
    assert show_progress(None, False) is False and show_progress(True) is True
    gl.settings.progress = False
    assert show_progress(True) is False and show_progress(None, True) is False
    gl.settings.progress = True
    assert show_progress(False) is True


def test_progress_false_silences_a_tqdm_bar(example, monkeypatch):
    import genlm_sc.pp.gene_build as gene_build

    seen = []
    real = gene_build.tqdm

    def spy(*args, **kwargs):
        seen.append(kwargs["disable"])
        return real(*args, **kwargs)

    monkeypatch.setattr(gene_build, "tqdm", spy)
    genes = gl.datasets.example_gene_panel(width=200)[:2].copy()
    build = dict(fasta=example.fasta, genes=genes, unphased="random")
    gl.pp.personal_sequences(example.vcf, progress=True, **build)
    gl.settings.progress = False
    gl.pp.personal_sequences(example.vcf, progress=True, **build)
    assert seen == [False, True]


def test_n_jobs_reaches_the_elastic_net():
    from genlm_sc.tl.expression.regressions import elastic_net_cv

    gl.settings.n_jobs = 2
    assert elastic_net_cv(0).n_jobs == 2


def test_device_setting_reaches_resolve_device(monkeypatch):
    import torch

    from genlm_sc._devices import resolve_device

    assert resolve_device("cpu") == "cpu"
    gl.settings.device = "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cpu"
    gl.settings.device = "auto"
    assert resolve_device("auto") == "cuda"
    gl.settings.device = "cuda:0"
    assert resolve_device("auto") == "cuda:0"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="no CUDA device"):
        resolve_device("auto")


def test_settings_load_no_heavy_module():
    code = (
        "import sys, genlm_sc as gl\n"
        "gl.settings.verbosity = 2; gl.settings.progress = False; gl.settings.device = 'cpu'\n"
        "gl.settings.n_jobs = 2\n"
        "print(sorted(m for m in ('torch', 'transformers', 'scanpy') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
