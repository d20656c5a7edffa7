"""The documentation covers the whole public API and its pages are in the table of contents."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import genlm_sc as gl

DOCS = Path(__file__).parents[1] / "docs"
MODULES = ["io", "pp", "tl", "get", "pl", "models", "datasets"]


@pytest.mark.parametrize("module", MODULES)
def test_every_public_name_has_an_api_page(module):
    api = (DOCS / "api.md").read_text()
    listed = set(re.findall(rf"^\s+{module}\.(\w+)$", api, re.M))
    missing = set(getattr(gl, module).__all__) - listed
    assert not missing, f"add to docs/api.md: {sorted(missing)}"


def test_every_page_and_tutorial_is_in_the_table_of_contents():
    index = (DOCS / "index.md").read_text()
    entries = set(re.findall(r"^([\w/]+)$", index, re.M))
    pages = {p.stem for p in DOCS.glob("*.md") if p.stem != "index"}
    tutorials = {f"tutorials/{p.stem}" for p in (DOCS.parent / "tutorials").glob("*.ipynb")}
    assert pages | tutorials <= entries, sorted((pages | tutorials) - entries)
