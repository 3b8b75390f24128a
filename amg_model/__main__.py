"""``python -m amg_model``: see :mod:`amg_model.cli`."""

from amg_model.cli import main

raise SystemExit(main())
