"""Prepare the embedded demo: demo checkpoints (trained on first run), contestants, prompts.

``LADDER_DEMO_MODE``: ``train`` (default; trains the demo models once, then reuses them),
``tiny`` (random-init tiny checkpoints in seconds, for tests), ``none`` (register nothing).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from core.demo import register_demo_contestants


class Command(BaseCommand):
    help = "Train (once) and register the demo contestants and load the demo prompt set."

    def handle(self, *args: Any, **options: Any) -> None:
        mode = settings.LADDER_DEMO_MODE
        if mode == "none":
            self.stdout.write("demo: skipped (LADDER_DEMO_MODE=none)")
            return
        root = Path(settings.LADDER_DEMO_MODELS_DIR)
        names = register_demo_contestants(root, tiny=(mode == "tiny"))
        self.stdout.write(f"demo: {len(names)} active contestants: {', '.join(names)}")
