"""``manage.py publish_release [--category C] [--force] [--method elo] …``: publish now."""

from __future__ import annotations

import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from core.exceptions import DomainError
from leaderboard import publishing


class Command(BaseCommand):
    help = "Publish a leaderboard release if the input counts changed (or with --force)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--category", default="", help='board category ("" = overall)')
        parser.add_argument("--all", action="store_true", help="every board with counts")
        parser.add_argument("--force", action="store_true", help="publish even if unchanged")
        parser.add_argument("--method", choices=publishing.RELEASE_METHODS)
        parser.add_argument("--bootstrap-rounds", type=int)
        parser.add_argument("--seed", type=int)
        parser.add_argument("--min-votes", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        overrides = {
            key: options[key]
            for key in ("method", "bootstrap_rounds", "seed", "min_votes")
            if options[key] is not None
        }
        categories = publishing.board_categories() if options["all"] else [options["category"]]
        for category in categories:
            started = time.perf_counter()
            try:
                release = publishing.publish_release(
                    category=category,
                    params=publishing.default_params(**overrides),
                    force=options["force"],
                    progress=True,
                )
            except DomainError as error:
                raise CommandError(f"{error.code}: {error.message}") from None
            label = category or "overall"
            if release is None:
                self.stdout.write(f"{label}: unchanged since the latest release; nothing published")
                continue
            self.stdout.write(
                self.style.SUCCESS(
                    f"{label}: published release {release.number} ({release.model_count} models, "
                    f"{release.counted_votes} votes) in {time.perf_counter() - started:.2f} s"
                )
            )
