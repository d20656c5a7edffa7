"""The demo and the tutorial scripts run end to end on the shipped data."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

TUTORIALS = sorted((Path(__file__).parents[1] / "tutorials").glob("*.py"))


def test_demo_runs(tmp_path):
    from genlm_sc.demo import main

    main(str(tmp_path / "demo"), pretrain_steps=4)
    assert (tmp_path / "demo" / "cohort.zarr" / "zarr.json").exists()
    assert (tmp_path / "demo" / "haplotype_diversity.png").stat().st_size > 10_000
    assert (tmp_path / "demo" / "chr20_lm" / "config.json").exists()
    assert (tmp_path / "demo" / "people_umap.png").stat().st_size > 10_000
    assert (tmp_path / "demo" / "attribution.png").stat().st_size > 10_000


@pytest.mark.parametrize("script", TUTORIALS, ids=[p.name for p in TUTORIALS])
def test_tutorial_runs(script, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    runpy.run_path(str(script), run_name="__main__")
