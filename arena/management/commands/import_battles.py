"""Load a public arena battle dump (JSON Lines, JSON array or CSV) as votes and pair counts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from arena.dumps import InvalidBattleRecord, import_battles, read_numbered_records


class Command(BaseCommand):
    help = "Import arena battles (model_a, model_b, winner, tstamp, judge, ...); idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help=".jsonl, .json (array or lines) or .csv")
        parser.add_argument(
            "--strict",
            action="store_true",
            help="refuse the file at the first invalid record (nothing is imported)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        path = Path(options["file"])
        if not path.is_file():
            raise CommandError(f"{str(path)!r} is not a file")
        try:
            report = import_battles(read_numbered_records(path), strict=options["strict"])
        except (InvalidBattleRecord, UnicodeDecodeError, ValueError) as error:
            raise CommandError(f"{path}: {error}") from None
        self.stdout.write(report.summary())
        if report.new_contestants:
            self.stdout.write(
                f"{len(report.new_contestants)} new contestants (status retired): "
                + ", ".join(report.new_contestants[:20])
                + (" …" if len(report.new_contestants) > 20 else "")
            )
        for example in report.examples:
            self.stdout.write(f"  skipped {example}")
