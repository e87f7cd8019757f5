"""``manage.py verify_release N [--category C]``: recompute a release and compare the CSV bytes.

Bradley–Terry and Davidson releases are recomputed from their stored counts; Elo releases replay
the outcome log up to their recorded ``last_vote_id`` (see ``leaderboard.publishing``).
"""

from __future__ import annotations

import difflib
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.exceptions import DomainError
from leaderboard import publishing, queries


class Command(BaseCommand):
    help = (
        "Recompute release N from its recorded counts (Elo: the outcome log up to its last vote id)"
        " and parameters; exit 1 on any difference."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("number", help="release number")
        parser.add_argument("--category", default="", help='board category ("" = overall)')

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            release = queries.release_by_number(
                options["number"], options["category"], with_payload="all"
            )
            result = publishing.verify_release(release=release, progress=True)
        except DomainError as error:
            raise CommandError(f"{error.code}: {error.message}") from None
        self.stdout.write(
            f"release {release.number}: digest {'matches' if result.digest_matches else 'DIFFERS'}"
            f", CSV {'byte-identical' if result.csv_matches else 'DIFFERS'}"
            f" ({len(release.csv_text.encode())} bytes)"
        )
        if not result.ok:
            diff = difflib.unified_diff(
                release.csv_text.splitlines(),
                result.recomputed_csv.splitlines(),
                "published",
                "recomputed",
                lineterm="",
                n=0,
            )
            self.stdout.write("\n".join(list(diff)[:40]))
            raise CommandError(f"release {release.number} does not reproduce")
        self.stdout.write(self.style.SUCCESS("reproduced"))
