"""``python -m genlm_sc``: the ``genlm-sc`` command line."""

from .cli import main

raise SystemExit(main())
