"""The demo, the README quickstart and the tutorial notebooks run end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
TUTORIALS = sorted((ROOT / "tutorials").glob("*.ipynb"))


def test_demo_runs(tmp_path):
    from genlm_sc.demo import main

    main(str(tmp_path / "demo"), pretrain_steps=4)
    assert (tmp_path / "demo" / "cohort.zarr" / "zarr.json").exists()
    assert (tmp_path / "demo" / "haplotype_diversity.png").stat().st_size > 10_000
    assert (tmp_path / "demo" / "chr20_lm" / "config.json").exists()
    assert (tmp_path / "demo" / "people_umap.png").stat().st_size > 10_000
    assert (tmp_path / "demo" / "attribution.png").stat().st_size > 10_000


def readme_quickstart() -> list[str]:
    """The Python blocks of the README's Quickstart section: the quickstart, then its use."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_readme_quickstart_runs(tmp_path, monkeypatch):
    quickstart, *follow_up = readme_quickstart()
    statements = [line for line in quickstart.splitlines() if line and not line.startswith(" ")]
    assert len(statements) <= 6, "the quickstart is an import and five lines"
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for code in (quickstart, *follow_up):
        exec(compile(code, "README.md", "exec"), namespace)
    people = namespace["people"]
    assert people.n_obs == 503 and people.obsm["X_gl"].shape[0] == 503
    assert "X_umap" in people.obsm and set(people.obs["population"]) == {
        "CEU", "FIN", "GBR", "IBS", "TSI"
    }  # fmt: skip
    assert (tmp_path / "my_lm" / "config.json").exists()


def test_tutorials_are_stored_without_outputs():
    assert len(TUTORIALS) == 5
    for path in TUTORIALS:
        notebook = json.loads(path.read_text())
        assert notebook["metadata"]["kernelspec"]["name"] == "python3"
        for cell in notebook["cells"]:
            if cell["cell_type"] == "code":
                assert not cell["outputs"] and cell["execution_count"] is None, path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", TUTORIALS, ids=[p.stem for p in TUTORIALS])
def test_tutorial_runs(path, tmp_path):
    """Also executed by ``nox -s docs``, which fails on an error in any cell."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    NotebookClient(
        notebook, timeout=1800, resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
