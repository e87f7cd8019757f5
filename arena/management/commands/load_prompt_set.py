"""Load a prompt set for the arena pool; optionally queue pre-generation of every answer."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from arena.services import load_prompt_set


class Command(BaseCommand):
    help = "Load prompts (JSON Lines with text, category, language) into a named prompt set."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help='JSON Lines: one {"text": ..., "category": ...} a line')
        parser.add_argument("--name", required=True, help="prompt set name (created if new)")
        parser.add_argument("--category", default="", help="category for prompts without one")
        parser.add_argument(
            "--pregenerate",
            action="store_true",
            help="queue arena.pregenerate_pool: workers answer every prompt with every model",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{str(path)!r} is not a file")
        records = []
        for number, line in enumerate(path.read_text("utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise CommandError(f"{path}:{number}: not JSON ({error})") from None
            if not isinstance(record, dict):
                record = {"text": str(record)}
            record.setdefault("category", options["category"])
            records.append(record)
        try:
            prompt_set, added = load_prompt_set(name=options["name"], records=records)
        except ValueError as error:
            raise CommandError(f"{path}: {error}") from None
        self.stdout.write(f"prompt set {prompt_set.name!r}: {added} new prompts")
        if options["pregenerate"]:
            from arena.tasks import pregenerate_pool

            pregenerate_pool.delay(prompt_set.pk)
            self.stdout.write("queued arena.pregenerate_pool on the models queue")
