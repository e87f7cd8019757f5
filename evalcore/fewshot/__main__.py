"""``python -m evalcore.fewshot``: see ``evalcore.fewshot.cli``."""

from __future__ import annotations

import sys

from evalcore.fewshot.cli import main

if __name__ == "__main__":
    sys.exit(main())
