"""Wall time of ``import genlm_sc``: this tree against an earlier commit, in one run.

Each variant is imported in a fresh interpreter ``--repeats`` times after one warm-up run
(the "second run": files already in the page cache), alternating between the variants so
that a busy machine slows both alike. The earlier commit is exported with ``git archive``
into a temporary folder and put first on ``PYTHONPATH``; both use this interpreter and its
installed dependencies. Also recorded: which heavy dependencies each variant loads.

    python benchmarks/bench_import.py --before 5a1fed1

Writes ``results/bench_import.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent
HEAVY = ("torch", "transformers", "scanpy", "anndata", "sklearn", "matplotlib", "zarr", "dask")
CODE = (
    "import sys, time; began = time.perf_counter(); import genlm_sc; "
    "print(time.perf_counter() - began); "
    f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
)


def export(commit: str, into: Path) -> Path:
    """The package source of ``commit`` under ``into`` (its ``src`` folder)."""
    archive = into / "source.tar"
    with archive.open("wb") as handle:
        subprocess.run(
            ["git", "-C", str(REPOSITORY), "archive", commit, "src"], stdout=handle, check=True
        )
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    return into / "src"


def import_once(source: Path) -> tuple[float, float, list[str]]:
    """Wall seconds of the whole interpreter run, of the import alone, and what it loaded."""
    environment = {**os.environ, "PYTHONPATH": str(source)}
    began = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CODE], capture_output=True, text=True, env=environment, check=True
    )
    wall = time.perf_counter() - began
    seconds, loaded = done.stdout.strip().split("\n")
    return wall, float(seconds), [m for m in loaded.split(",") if m]


def head() -> str:
    """The short hash of the checked-out commit."""
    done = subprocess.run(
        ["git", "-C", str(REPOSITORY), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="commit to compare against")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "bench_import.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        sources = {"before": export(args.before, Path(folder)), "after": REPOSITORY / "src"}
        runs: dict[str, list] = {name: [] for name in sources}
        for source in sources.values():
            import_once(source)  # warm-up: the timed runs are second runs
        for _ in range(args.repeats):
            for name, source in sources.items():
                runs[name].append(import_once(source))
    result = {
        "before_commit": args.before,
        "after_commit": head(),
        "repeats": args.repeats,
        "python": platform.python_version(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    for name, values in runs.items():
        wall = np.array([v[0] for v in values])
        inner = np.array([v[1] for v in values])
        result[name] = {
            "median_wall_s": float(np.median(wall)),
            "min_wall_s": float(wall.min()),
            "max_wall_s": float(wall.max()),
            "median_import_s": float(np.median(inner)),
            "loads": values[0][2],
        }
    result["speed_up"] = result["before"]["median_wall_s"] / result["after"]["median_wall_s"]
    if runs["after"][0][2] and set(runs["after"][0][2]) & {"torch", "transformers", "scanpy"}:
        print("note: this tree still loads a heavy dependency at import")
    args.out.write_text(json.dumps(result, indent=1))
    for name in sources:
        r = result[name]
        spread = f"{r['min_wall_s']:.2f}–{r['max_wall_s']:.2f}"
        print(
            f"{name}: {r['median_wall_s']:.2f} s wall (median of {args.repeats}; {spread}), "
            f"loads {', '.join(r['loads'])}"
        )
    print(f"{result['speed_up']:.1f}× faster; wrote {args.out}")


if __name__ == "__main__":
    main()
