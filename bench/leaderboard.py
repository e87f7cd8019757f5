"""Leaderboard speed: publishing a release, and serving the page and CSV.

    python bench/leaderboard.py [--database-url postgres://postgres@127.0.0.1:5432/ladder_bench_lb]

Creates (drops first) a fresh PostgreSQL database, migrates it, and measures, in one run:

1. publish: 100 models, 1,000,000 votes as pair × outcome counts (plus the same 1,000,000 votes
   as arena ``Battle``/``Vote`` rows with their leaderboard ``Outcome`` rows, so the outcome-log
   position query runs against a real log), 1,000 bootstrap rounds,
   ``publishing.publish_release`` end to end (snapshot read → fit and bootstrap → CSV → release
   + rows in one transaction). Baseline: the naive release that scans
   the raw vote log and aggregates it in Python before the same computation.
2. serve: a 500-model release; ``GET /leaderboard/`` and ``GET /leaderboard/latest.csv`` (and
   the JSON API) through Django's test client, median over repeats. Baseline: recomputing the
   ratings on each page view (one engine call with the release's parameters).

Prints a table; ``--out FILE`` also writes it as Markdown.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_URL = "postgres://postgres@127.0.0.1:5432/ladder_bench_lb"


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database-url", default=DEFAULT_URL)
    parser.add_argument("--models", type=int, default=100)
    parser.add_argument("--votes", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--publish-repeats", type=int, default=3)
    parser.add_argument("--page-models", type=int, default=500)
    parser.add_argument("--page-rounds", type=int, default=100, help="bootstrap of the 500 board")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--no-vote-log", action="store_true", help="skip the 1M Vote rows")
    parser.add_argument("--out", type=Path)
    return parser.parse_args()


def fresh_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        connection.execute(f'CREATE DATABASE "{name}"')


def setup_django(url: str) -> None:
    os.environ.update(
        DATABASE_URL=url,
        DEBUG="false",
        SECRET_KEY="bench",
        ALLOWED_HOSTS="testserver,localhost",
        LADDER_BROKER_DIR=str(ROOT / "var" / "bench-broker"),
        LOG_LEVEL="WARNING",
    )
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = function()
    return time.perf_counter() - started, result


def median_ms(function: Callable[[], Any], repeats: int) -> float:
    function()  # warm-up (template loading, first connection)
    return statistics.median(timed(function)[0] for _ in range(repeats)) * 1000


def synthetic_counts(models: int, votes: int, seed: int) -> list[tuple[int, int, list[int]]]:
    """Pair × outcome counts for ``votes`` votes spread over every pair (BT + ties)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    strength = rng.normal(0.0, 1.0, models)
    pairs = [(i, j) for i in range(models) for j in range(i + 1, models)]
    per_pair = rng.multinomial(votes, np.full(len(pairs), 1 / len(pairs)))
    out = []
    for (i, j), n in zip(pairs, per_pair.tolist()):
        p = 1 / (1 + np.exp(strength[j] - strength[i]))
        cells = rng.multinomial(n, [0.8 * p, 0.8 * (1 - p), 0.12, 0.08]).tolist()
        out.append((i, j, cells))
    return out


def load_board(models: int, votes: int, *, category: str, prefix: str, seed: int) -> list[Any]:
    from contestants.models import Contestant, ContestantEvaluation
    from leaderboard.models import PairCount

    contestants = Contestant.objects.bulk_create(
        [
            Contestant(
                name=f"{prefix}-{i:03d}",
                organization=f"Org {i % 17}",
                license="Apache-2.0" if i % 2 else "MIT",
                checkpoint_path="",
                status="active",
            )
            for i in range(models)
        ]
    )
    ContestantEvaluation.objects.bulk_create(
        ContestantEvaluation(contestant=contestant, fewshot_average=0.5 + i / (4 * models))
        for i, contestant in enumerate(contestants)
    )
    rows = [
        PairCount(
            model_a=contestants[i],
            model_b=contestants[j],
            category=category,
            model_a_wins=c[0],
            model_b_wins=c[1],
            ties=c[2],
            both_bad=c[3],
        )
        for i, j, c in synthetic_counts(models, votes, seed)
    ]
    PairCount.objects.bulk_create(rows, batch_size=5000)
    return contestants


def _copy_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value)


def load_vote_log(contestants: list[Any], votes: int, seed: int) -> None:
    """The same kind of votes as arena Battle + Vote rows and their leaderboard Outcome rows,
    written with COPY."""
    import numpy as np
    from django.db import connection
    from django.db.models import JSONField
    from django.utils import timezone

    from arena.models import Battle, Vote
    from leaderboard.models import Outcome

    rng = np.random.default_rng(seed)
    ids = np.asarray([c.pk for c in contestants])
    a = rng.integers(0, len(ids), votes)
    b = (a + rng.integers(1, len(ids), votes)) % len(ids)
    results = rng.choice(4, votes, p=[0.4, 0.4, 0.12, 0.08])  # evalcore Outcome values
    now = timezone.now()
    battle_columns = [f.column for f in Battle._meta.concrete_fields]
    # COPY's text format takes JSON columns (the chat and style fields of a battle) as JSON text.
    defaults = {
        f.column: _copy_json(f.get_default()) if isinstance(f, JSONField) else f.get_default()
        for f in Battle._meta.concrete_fields
    }
    defaults.update(status="voted", created_at=now)
    battle_ids = [uuid.uuid4() for _ in range(votes)]
    with connection.cursor() as cursor:
        with cursor.copy(  # type: ignore[attr-defined]
            f"COPY {Battle._meta.db_table} ({', '.join(battle_columns)}) FROM STDIN"
        ) as copy:
            for n in range(votes):
                defaults.update(
                    id=battle_ids[n], model_a_id=int(ids[a[n]]), model_b_id=int(ids[b[n]])
                )
                copy.write_row([defaults[c] for c in battle_columns])
        cursor.execute(f"SELECT COALESCE(MAX(id), 0) FROM {Outcome._meta.db_table}")
        (first_id,) = cursor.fetchone()
        outcome_columns = [f.column for f in Outcome._meta.concrete_fields]
        with cursor.copy(  # type: ignore[attr-defined]
            f"COPY {Outcome._meta.db_table} ({', '.join(outcome_columns)}) FROM STDIN"
        ) as copy:
            for n in range(votes):
                row = {
                    "id": first_id + 1 + n,
                    "model_a_id": int(ids[a[n]]),
                    "model_b_id": int(ids[b[n]]),
                    "result": int(results[n]),
                    "category": "",
                    "style": None,
                    "tstamp": float(n),
                    "created_at": now,
                }
                copy.write_row([row[c] for c in outcome_columns])
        cursor.execute(
            f"SELECT setval(pg_get_serial_sequence('{Outcome._meta.db_table}', 'id'), %s)",
            [first_id + votes],
        )
        vote_columns = [f.column for f in Vote._meta.concrete_fields]
        with cursor.copy(  # type: ignore[attr-defined]
            f"COPY {Vote._meta.db_table} ({', '.join(vote_columns)}) FROM STDIN"
        ) as copy:
            for n in range(votes):
                vote = {
                    "outcome_id": first_id + 1 + n,
                    "battle_id": battle_ids[n],
                    "judge": "bench",
                    "user_id": None,
                }
                copy.write_row([vote[c] for c in vote_columns])
        cursor.execute(f"ANALYZE {Outcome._meta.db_table}")
        cursor.execute(f"ANALYZE {Battle._meta.db_table}; ANALYZE {Vote._meta.db_table}")


def bench_publish(args: argparse.Namespace, table: list[list[str]]) -> None:
    from leaderboard import publishing, ratings
    from leaderboard.models import Outcome

    contestants = load_board(args.models, args.votes, category="", prefix="model", seed=1)
    if not args.no_vote_log:
        seconds, _ = timed(lambda: load_vote_log(contestants, args.votes, seed=2))
        print(f"  (loaded {args.votes:,} arena votes in {seconds:.1f} s)", flush=True)
    params = publishing.default_params(bootstrap_rounds=args.rounds, min_votes=0)
    label = f"{args.models} models, {args.votes:,} votes, {args.rounds} rounds"

    times = [
        timed(lambda: publishing.publish_release(params=params, force=True))[0]
        for _ in range(args.publish_repeats)
    ]
    snapshot_s, snapshot = timed(lambda: publishing.read_snapshot(category=""))
    compute_s, _ = timed(lambda: ratings.compute(snapshot.rows, params))
    log_ms = median_ms(Outcome.objects.position, 5)
    table.append(
        [
            f"publish_release end to end ({label})",
            f"{statistics.median(times):.2f} s",
            f"min {min(times):.2f} s of {len(times)}; budget ≤ 15 s",
        ]
    )
    table.append(
        [
            "  of which: read counts + vote-log position",
            f"{snapshot_s * 1000:.0f} ms",
            f"{len(snapshot.rows)} pairs; log position alone {log_ms:.0f} ms",
        ]
    )
    table.append(["  of which: fit + bootstrap", f"{compute_s:.2f} s", "evalcore.ratings"])
    if not args.no_vote_log:
        naive_s, _ = timed(lambda: publishing.count_votes(progress=False))
        table.append(
            [
                "baseline: scan + aggregate the raw vote log (before the same fit)",
                f"{naive_s:.2f} s",
                f"+ fit ≈ {naive_s + compute_s:.2f} s in all",
            ]
        )


def bench_serving(args: argparse.Namespace, table: list[list[str]]) -> None:
    from django.test import Client

    from leaderboard import publishing, ratings

    category = "bench500"
    load_board(args.page_models, args.votes, category=category, prefix="wide", seed=3)
    params = publishing.default_params(bootstrap_rounds=args.page_rounds, min_votes=0)
    publish_s, release = timed(
        lambda: publishing.publish_release(category=category, params=params, force=True)
    )
    client = Client()
    suffix = f"?category={category}"
    checks = {
        "/leaderboard/": b"Release",
        "/leaderboard/latest.csv": b"rank,rank_ub",
        "/api/leaderboards/latest": b"input_digest",
    }
    for path, marker in checks.items():
        response = client.get(path + suffix)
        assert response.status_code == 200 and marker in response.content, path
    label = f"{args.page_models} models"
    for path, name in (
        ("/leaderboard/", "page"),
        ("/leaderboard/latest.csv", "CSV"),
        ("/api/leaderboards/latest", "JSON API"),
    ):
        ms = median_ms(lambda p=path: client.get(p + suffix), args.repeats)
        size = len(client.get(path + suffix).content)
        budget = "; budget ≤ 100 ms" if name != "JSON API" else ""
        table.append(
            [
                f"GET {path} ({label}, median of {args.repeats})",
                f"{ms:.1f} ms",
                f"{size / 1024:.0f} KiB{budget}",
            ]
        )
    rows = publishing.read_snapshot(category=category).rows
    recompute_s, _ = timed(lambda: ratings.compute(rows, params))
    table.append(
        [
            f"baseline: recompute ratings per page view ({label}, {args.page_rounds} rounds)",
            f"{recompute_s * 1000:.0f} ms",
            f"publishing it took {publish_s:.1f} s",
        ]
    )


def render(table: list[list[str]], args: argparse.Namespace) -> str:
    lines = ["| measurement | result | notes |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in table]
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    print(f"fresh database {args.database_url}", flush=True)
    fresh_database(args.database_url)
    setup_django(args.database_url)
    table: list[list[str]] = []
    bench_publish(args, table)
    print(render(table, args), flush=True)
    bench_serving(args, table)
    text = render(table, args)
    print(f"\n{datetime.date.today()}\n{text}")
    if args.out:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
