"""``genlm-sc``: the command line for pipelines, mirroring the Python API.

Each verb runs one function of the API on a cohort store (see ``docs/cli.md``)::

    genlm-sc haplotypes cohort.vcf.gz --fasta ref.fa.gz --annotation genes.gtf \\
        --width 4096 --store cohort.zarr
    genlm-sc embed cohort.zarr --model model/
    genlm-sc fit-expression cohort.zarr --method elastic_net --table results.tsv

Exit status: 0 on success, 2 for a wrong command line, 1 for bad input (a message of one
line, ``genlm-sc <verb>: error: ...``; ``--debug`` shows the traceback), 130 when
interrupted.
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence

from .._settings import VERBOSITY, settings
from .._version import __version__
from .commands import COMMANDS

__all__ = ["main", "parser"]

PROG = "genlm-sc"
#: Errors that mean bad input (files, stores, options the function refuses, a missing optional
#: package), not a bug.
BAD_INPUT = (ValueError, OSError, LookupError, ImportError)


def _global_options(defaults: bool) -> argparse.ArgumentParser:
    """The options mapping to ``gl.settings``, accepted before or after the verb."""
    keep = {} if defaults else {"default": argparse.SUPPRESS}
    group = argparse.ArgumentParser(add_help=False)
    options = group.add_argument_group("global options (gl.settings)")
    levels = [str(i) for i in range(4)] + list(VERBOSITY)
    options.add_argument("--verbosity", choices=levels, metavar="LEVEL",
                         help="Logging: 0-3 or error, warning, info, debug "
                         "(gl.settings.verbosity; default: 1, warning).", **keep)  # fmt: skip
    options.add_argument("--quiet", action="store_true",
                         help="Errors only and no progress bars.", **keep)  # fmt: skip
    options.add_argument("--no-progress", dest="progress", action="store_false",
                         help="No progress bars (gl.settings.progress = False).",
                         **({"default": None} if defaults else keep))  # fmt: skip
    options.add_argument("--n-jobs", type=int, metavar="N",
                         help="Worker processes or threads; -1: every CPU (gl.settings.n_jobs; "
                         "default: 1).", **keep)  # fmt: skip
    options.add_argument("--device", metavar="DEVICE",
                         help="auto, cpu, cuda, cuda:N or mps, for every step that runs a model "
                         "(gl.settings.device; default: auto).", **keep)  # fmt: skip
    options.add_argument("--debug", action="store_true",
                         help="Show the full traceback of an error.", **keep)  # fmt: skip
    return group


def parser() -> argparse.ArgumentParser:
    """The parser of ``genlm-sc`` and its verbs."""
    top = argparse.ArgumentParser(
        prog=PROG,
        description="Genotypes to DNA-language-model representations and predictions: "
        "each verb runs one function of the Python API (import genlm_sc as gl) on a cohort "
        "store. Options follow the functions' own names.",
        parents=[_global_options(defaults=True)],
    )
    top.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    verbs = top.add_subparsers(title="verbs", dest="verb", required=True, metavar="VERB")
    for command in COMMANDS:
        sub = verbs.add_parser(
            command.name, help=command.summary, description=command.summary,
            parents=[_global_options(defaults=False)],
        )  # fmt: skip
        command.add_to(sub)
    return top


def _apply_settings(args: argparse.Namespace) -> None:
    if args.verbosity is not None:
        level = args.verbosity
        settings.verbosity = int(level) if level.isdigit() else level
    if args.quiet:
        settings.verbosity, settings.progress = 0, False
    if args.progress is False:
        settings.progress = False
    if args.n_jobs is not None:
        settings.n_jobs = args.n_jobs
    if args.device is not None:
        settings.device = args.device


def _one_line(err: BaseException) -> str:
    text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``genlm-sc`` with ``argv`` (default: the process's arguments); returns the exit
    status."""
    cli = parser()
    args = cli.parse_args(argv)  # exits with 2 on a wrong command line
    try:
        _apply_settings(args)
    except ValueError as err:
        cli.error(str(err))
    try:
        args.command(args)
    except KeyboardInterrupt:
        print(f"{PROG} {args.verb}: interrupted", file=sys.stderr)
        return 130
    except BAD_INPUT as err:
        if args.debug:
            traceback.print_exc()
        print(f"{PROG} {args.verb}: error: {_one_line(err)}", file=sys.stderr)
        return 1
    return 0
