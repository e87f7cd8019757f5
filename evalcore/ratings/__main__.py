"""``python -m evalcore.ratings``: see :mod:`evalcore.ratings.cli`."""

from __future__ import annotations

import sys

from evalcore.ratings.cli import main

if __name__ == "__main__":
    sys.exit(main())
