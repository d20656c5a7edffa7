"""Wall time of the main demo (``python -m genlm_sc.demo``, what ``nox -s demo`` runs).

The demo runs in a fresh interpreter (import time included, installation not), writing
into a temporary folder; the script records the wall time, the machine and which of the
demo's output files were written.

    python benchmarks/bench_demo.py        # -> benchmarks/results/demo.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, os.fspath(HERE))

from bench_haplotypes import machine_info  # noqa: E402

OUTPUTS = ("cohort.zarr", "chr20_lm", "haplotype_diversity.png", "people_umap.png",
           "attribution.png")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "results" / "demo.json")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "genlm_sc_demo"
        start = time.perf_counter()
        run = subprocess.run([sys.executable, "-m", "genlm_sc.demo", os.fspath(out)],
                             capture_output=True, text=True)  # fmt: skip
        seconds = time.perf_counter() - start
        if run.returncode:
            sys.exit(f"the demo failed:\n{run.stdout[-2000:]}\n{run.stderr[-4000:]}")
        written = {name: (out / name).exists() for name in OUTPUTS}
    result = {
        "command": "python -m genlm_sc.demo OUT (what `nox -s demo` runs after installing)",
        "wall_seconds": round(seconds, 1),
        "outputs_written": written,
        "machine": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
