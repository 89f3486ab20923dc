"""``python -m backpackflow`` is the ``backpackflow`` command."""

from backpackflow.cli import main

raise SystemExit(main())
