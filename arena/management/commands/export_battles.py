"""Write every vote in the public arena battle schema (JSON Lines or CSV), in vote order."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from arena.dumps import FORMATS, export_lines


class Command(BaseCommand):
    help = "Export all arena votes as JSON Lines or CSV (public arena battle schema)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--output", "-o", help="file to write (default: standard output)")
        parser.add_argument(
            "--format", choices=FORMATS, help="default: from the file's extension, else jsonl"
        )
        parser.add_argument(
            "--up-to-vote-id",
            type=int,
            default=None,
            help="only votes with id <= N (a leaderboard release records its last vote id)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        output = options["output"]
        fmt = options["format"] or ("csv" if output and output.endswith(".csv") else "jsonl")
        lines = export_lines(fmt, up_to_vote_id=options["up_to_vote_id"])
        if output is None:
            sys.stdout.writelines(lines)
            return
        path = Path(output)
        if not path.parent.is_dir():
            raise CommandError(f"--output: folder {str(path.parent)!r} does not exist")
        count = -1 if fmt == "csv" else 0  # the CSV header is not a vote
        with path.open("w", encoding="utf-8", newline="") as handle:
            for line in lines:
                handle.write(line)
                count += line.count("\n")
        self.stderr.write(f"exported {count} votes to {path}")
