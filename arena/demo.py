"""The curated demo prompt set shipped in ``arena/demo_data/`` (loaded by ``setup_demo``)."""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.db import transaction

from arena.services import load_prompt_set

DEMO_DATA = Path(__file__).resolve().parent / "demo_data" / "prompts.jsonl"
DEMO_SET_NAME = "ladder-demo"
DEMO_SET_DESCRIPTION = (
    "Curated demo prompts: Python, writing, reasoning, knowledge, several languages."
)


def load_demo_prompt_set(*, pregenerate: bool = False) -> int:
    """Load (idempotently) the demo prompt set; returns the number of prompts in it.

    In pool mode, or with ``pregenerate``, pre-generation of every active contestant's answers
    is queued as well (the worker logs its progress): battles on these prompts then start
    instantly, which matters on 2 CPU cores.
    """
    records = [
        json.loads(line) for line in DEMO_DATA.read_text("utf-8").splitlines() if line.strip()
    ]
    prompt_set, _ = load_prompt_set(
        name=DEMO_SET_NAME, records=records, description=DEMO_SET_DESCRIPTION
    )
    if pregenerate or settings.ARENA_MODE == "pool":
        from arena.tasks import pregenerate_pool

        transaction.on_commit(lambda: pregenerate_pool.delay(prompt_set.pk))
    return prompt_set.prompts.count()
