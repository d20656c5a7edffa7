"""Sphinx configuration: MyST pages, notebooks executed by myst-nb, numpydoc API pages."""

from __future__ import annotations

import os
from datetime import date
from importlib.metadata import version as package_version

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# Progress bars are noise in rendered pages; the tutorials' kernels inherit this.
os.environ.setdefault("TQDM_DISABLE", "1")

project = "genlm_sc"
author = "genlm_sc developers"
copyright = f"{date.today().year}, {author}"
release = package_version("genlm_sc")

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx_copybutton",
]

exclude_patterns = ["_build", "**.ipynb_checkpoints", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# MyST and notebooks ------------------------------------------------------------------
myst_enable_extensions = ["colon_fence", "dollarmath", "deflist"]
myst_heading_anchors = 3
# The tutorials (tutorials/*.ipynb, linked as docs/tutorials) are executed on every build
# that changed them; a failing cell fails the build.
nb_execution_mode = os.environ.get("GL_DOCS_EXECUTE", "cache")
nb_execution_cache_path = os.path.join(os.path.dirname(__file__), "_build", ".jupyter_cache")
nb_execution_timeout = 1800
nb_execution_raise_on_error = True
nb_execution_in_temp = True
nb_merge_streams = True

# API pages ---------------------------------------------------------------------------
autosummary_generate = True
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True}
napoleon_google_docstring = False
napoleon_custom_sections = [("Attributes", "params_style")]
autodoc_typehints = "description"
autodoc_typehints_description_target = "documented_params"

# HTML ----------------------------------------------------------------------------------
html_theme = "sphinx_book_theme"
html_title = "genlm_sc"
html_theme_options = {
    "show_toc_level": 2,
    "navigation_with_keys": False,
}
html_show_sourcelink = False
