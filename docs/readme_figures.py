"""Copy the figures of the tutorial cells tagged ``readme-figure`` into ``docs/images``.

Run after ``nox -s docs``, which executes the tutorials and keeps their outputs in its
notebook cache:

    python docs/readme_figures.py

Each tagged cell's PNG output becomes ``docs/images/tutorial_<name>.png``, where
``<name>`` is the notebook's file name without its number (``01_gene_function`` →
``tutorial_gene_function.png``).
"""

from __future__ import annotations

import base64
from pathlib import Path

from jupyter_cache import get_cache

DOCS = Path(__file__).resolve().parent
CACHE = DOCS / "_build" / ".jupyter_cache"


def executed_notebooks() -> dict[Path, list[dict]]:
    """The cells of the latest execution of each tutorial, from the docs build's cache."""
    cache = get_cache(CACHE)
    latest = {}
    for record in sorted(cache.list_cache_records(), key=lambda r: r.created):
        latest[Path(record.uri)] = record.pk
    return {uri: cache.get_cache_bundle(pk).nb.cells for uri, pk in latest.items()}


def main() -> None:
    notebooks = executed_notebooks() if CACHE.exists() else {}
    if not notebooks:
        raise SystemExit(f"no executed tutorials in {CACHE}; run `nox -s docs` first")
    for path, cells in sorted(notebooks.items()):
        tagged = [c for c in cells if "readme-figure" in c.get("metadata", {}).get("tags", [])]
        images = [
            o["data"]["image/png"]
            for c in tagged
            for o in c.get("outputs", [])
            if "image/png" in o.get("data", {})
        ]
        if images:
            name = path.stem.split("_", 1)[1]
            target = DOCS / "images" / f"tutorial_{name}.png"
            target.write_bytes(base64.b64decode(images[-1]))
            print(f"wrote {target.relative_to(DOCS.parent)}")


if __name__ == "__main__":
    main()
