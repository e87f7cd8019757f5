"""``manage.py rebuild_pair_counts [--apply]``: recount the pairs from the outcome log."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from leaderboard import publishing


class Command(BaseCommand):
    help = "Rebuild the pair × outcome counts from the outcome log and report any difference."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--apply", action="store_true", help="rewrite the differing rows")

    def handle(self, *args: Any, **options: Any) -> None:
        differences = publishing.rebuild_pair_counts(apply=options["apply"], progress=True)
        for d in differences[:50]:
            board = d.category or "overall"
            self.stdout.write(
                f"{d.model_a} vs {d.model_b} [{board}]: stored {list(d.stored)}, "
                f"from votes {list(d.rebuilt)}"
            )
        if len(differences) > 50:
            self.stdout.write(f"… and {len(differences) - 50} more")
        if not differences:
            self.stdout.write(self.style.SUCCESS("the pair counts match the vote log"))
        elif options["apply"]:
            self.stdout.write(self.style.SUCCESS(f"rewrote {len(differences)} pair count rows"))
        else:
            self.stdout.write(
                self.style.WARNING(f"{len(differences)} rows differ; run with --apply to fix")
            )
