"""``python -m genlm_sc.cli``: the ``genlm-sc`` command line."""

from . import main

raise SystemExit(main())
