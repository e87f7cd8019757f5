"""Arena votes load test: votes/s and latency through the HTTP API, nothing lost or doubled.

For each scenario the script makes a fresh database, migrates it, pre-creates ready battles
(answers filled in, no model needed), starts gunicorn on 127.0.0.1 with the deployed settings
(``config/gunicorn.py``), and drives ``POST /api/arena/battles/{id}/vote`` from an asyncio
HTTP/1.1 keep-alive client (one voter cookie and CSRF token per connection, as a browser sends
them). The load is open-loop: request i is due at ``start + i / rate`` and its latency is
counted from that moment, so a slow server cannot hide queueing (no coordinated omission).
Afterwards it checks that the votes in the database equal the 2xx answers and that the pair
counts add up to the votes.

Scenarios: ``postgres``, the production profile (gunicorn + PostgreSQL + Redis for the cache
and the rate limits: the goal, >= 500 votes/s for 60 s, p99 <= 100 ms), and ``sqlite``, the
embedded profile (SQLite, locmem), as the baseline. The rate limits are on, as deployed, with
allowances no voter of the test reaches (``--no-rate-limits`` switches them off).

    .venv/bin/python bench/arena_votes.py --scenario postgres   # the goal: 500 votes/s, 60 s
    .venv/bin/python bench/arena_votes.py                       # both scenarios, 60 s each
    .venv/bin/python bench/arena_votes.py --scenario postgres --rate 800 --duration 30
    .venv/bin/python bench/arena_votes.py --rate 0             # closed loop: as fast as it goes
    .venv/bin/python bench/arena_votes.py --workers 2 --threads 1   # other gunicorn layouts

CPU per vote is counted for gunicorn, the bench's PostgreSQL backends, redis-server and the
load generator; ``cpu_probe_ms`` times a fixed pure-Python loop before and after the run,
since the speed of this shared virtual machine's cores varies by up to 2x over a day.

Only 127.0.0.1 is ever contacted. PostgreSQL comes from ``--database-url`` (default
``postgres://postgres@127.0.0.1:5432/postgres``); the database ``ladder_bench`` is dropped and
re-created there. Redis is ``--redis-url`` (default database 14 of 127.0.0.1:6379); the test
leaves only rate-limit counters there, which expire within the hour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import runpy
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONFIG = ROOT / "config" / "gunicorn.py"
WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
CONTESTANTS = 8
GOAL_VOTES_PER_S = 500
GOAL_P99_MS = 100
GOAL_DURATION_S = 60
# Battles are seeded for at most this many votes per second in closed-loop runs.
CLOSED_LOOP_MAX_RATE = 3000
WARMUP_MAX_RATE = 3000
SETTINGS_OVERRIDES = """\
from config.settings import *  # noqa: F403 - the project settings, plus the bench overrides

# The limits are counted as deployed, but 64 voters at 500 votes/s never reach them.
ARENA_VOTE_RATE_PER_HOUR = 10**9
ARENA_VOTE_RATE_PER_IP_PER_HOUR = 10**9
# Keep each thread's PostgreSQL backend for the whole run (production reconnects once a
# minute), so the backends' CPU counters cover every vote.
DATABASES["default"]["CONN_MAX_AGE"] = None  # noqa: F405
"""
NO_RATE_LIMITS = """
ARENA_RATE_LIMITS_ENABLED = False
"""


# --- Database set-up (runs in a child process with the scenario's environment) --------------


def seed(count: int) -> None:
    """Create contestants and ``count`` ready battles; prints their ids, one a line."""
    import django

    django.setup()
    from django.utils import timezone

    from arena.models import Battle
    from contestants.models import Contestant

    contestants = [
        Contestant.objects.create(
            name=f"bench-model-{i}", checkpoint_path="/none", status=Contestant.Status.ACTIVE
        )
        for i in range(CONTESTANTS)
    ]
    rng = random.Random(0)
    now = timezone.now()
    battles = []
    for _ in range(count):
        a, b = rng.sample(contestants, 2)
        battles.append(
            Battle(
                prompt="Why is the sky blue?",
                model_a=a,
                model_b=b,
                answer_a="Rayleigh scattering.",
                answer_b="Reflections of the sea.",
                answer_a_at=now,
                answer_b_at=now,
                status=Battle.Status.READY,
                ready_at=now,
                language="English",
                category=rng.choice(["", "coding"]),
            )
        )
    Battle.objects.bulk_create(battles, batch_size=2000)
    sys.stdout.write("\n".join(str(battle.pk) for battle in battles) + "\n")


def audit() -> None:
    """Print the vote count, votes per battle and the pair-count totals as JSON."""
    import django

    django.setup()
    from django.db.models import Count, Sum

    from arena.models import Battle, Vote
    from leaderboard.models import Outcome, PairCount

    totals = PairCount.objects.filter(category="").aggregate(
        a=Sum("model_a_wins"), b=Sum("model_b_wins"), t=Sum("ties"), x=Sum("both_bad")
    )
    pair_total = sum(value or 0 for value in totals.values())
    coding = Vote.objects.filter(battle__category="coding").count()
    coding_pairs = PairCount.objects.filter(category="coding").aggregate(
        a=Sum("model_a_wins"), b=Sum("model_b_wins"), t=Sum("ties"), x=Sum("both_bad")
    )
    doubled = (
        Vote.objects.values("battle").annotate(n=Count("pk")).filter(n__gt=1).count()
    )  # impossible by the unique constraint; checked anyway
    report = {
        "votes": Vote.objects.count(),
        "outcomes": Outcome.objects.count(),
        "voted_battles": Battle.objects.filter(vote__isnull=False).count(),
        "pair_count_total": pair_total,
        "coding_votes": coding,
        "coding_pair_total": sum(value or 0 for value in coding_pairs.values()),
        "battles_with_two_votes": doubled,
    }
    sys.stdout.write(json.dumps(report) + "\n")


# --- Scenario plumbing --------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    env: dict[str, str]


def base_env(settings_dir: Path) -> dict[str, str]:
    var_dir = settings_dir / "var"
    # No collectstatic for a votes run; an empty static root keeps WhiteNoise from warning.
    (var_dir / "static").mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(
        PYTHONPATH=f"{settings_dir}{os.pathsep}{ROOT}",
        DJANGO_SETTINGS_MODULE="ladder_bench_settings",
        DEBUG="false",  # DEBUG keeps every SQL query in memory: never benchmark with it
        SECRET_KEY="arena-votes-bench",
        ALLOWED_HOSTS="127.0.0.1",
        LOG_LEVEL="WARNING",
        LADDER_VAR_DIR=str(var_dir),
    )
    return env


def postgres_scenario(
    database_url: str, redis_url: str, database: str, settings_dir: Path
) -> Scenario:
    import psycopg

    if not re.fullmatch(r"[a-z_][a-z0-9_]*", database):
        raise SystemExit(f"--bench-database must be a plain lower-case name, got {database!r}")
    with psycopg.connect(database_url, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        connection.execute(f"CREATE DATABASE {database}")
    url = urlparse(database_url)._replace(path=f"/{database}").geturl()
    env = {**base_env(settings_dir), "DATABASE_URL": url, "REDIS_URL": redis_url}
    return Scenario("postgres", env)


def sqlite_scenario(settings_dir: Path) -> Scenario:
    path = settings_dir / "bench.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return Scenario("sqlite", {**base_env(settings_dir), "LADDER_SQLITE_PATH": str(path)})


def child(scenario: Scenario, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args],
        cwd=ROOT,
        env=scenario.env,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise SystemExit(f"{scenario.name}: {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return result.stdout


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_gunicorn(
    scenario: Scenario, port: int, workers: int, threads: int
) -> subprocess.Popen[bytes]:
    """gunicorn with the deployed settings (config/gunicorn.py), on 127.0.0.1."""
    env = {
        **scenario.env,
        "LADDER_WEB_BIND": f"127.0.0.1:{port}",
        "LADDER_WEB_WORKERS": str(workers),
        "LADDER_WEB_THREADS": str(threads),
    }
    argv = [
        str(Path(sys.executable).with_name("gunicorn")),
        "--config",
        str(GUNICORN_CONFIG),
        "--log-level",
        "warning",
        "config.wsgi:application",
    ]
    process = subprocess.Popen(argv, cwd=ROOT, env=env, start_new_session=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"{scenario.name}: gunicorn did not listen on port {port}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)


# --- The load generator ----------------------------------------------------------------------


@dataclass
class Results:
    statuses: dict[int, int] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    due_s: list[float] = field(default_factory=list)  # when each answered vote was due
    start: float = 0.0
    errors: int = 0
    sent: int = 0
    late_start: int = 0  # requests that could not even start within 1 s of being due
    elapsed_s: float = 0.0

    @property
    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection acting as one browser (its own cookies).

    Callback-driven (no task or stream reader per request), so the load generator takes as
    little as it can of the CPU it shares with the server.
    """

    def __init__(
        self, port: int, on_idle: Callable[[Connection | None], None] | None = None
    ) -> None:
        self.port = port
        self.on_idle = on_idle  # called with the connection when it is free, None when lost
        self.in_flight = False
        self.transport: Any = None  # an asyncio or uvloop transport
        self.buffer = bytearray()
        self.reply: asyncio.Future[tuple[int, bytes, bytes]] | None = None
        self.vote_head = b""
        self.due = 0.0
        self.results: Results | None = None

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, "127.0.0.1", self.port)
        self.reply = loop.create_future()
        self.send(f"GET /api/arena/session HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n\r\n")
        status, headers, body = await self.reply
        if status != 200:
            raise RuntimeError(f"session: HTTP {status}: {body[:200]!r}")
        text = headers.decode("latin-1")
        cookies = re.findall(r"^set-cookie: ([^=]+=[^;]*)", text, re.MULTILINE | re.IGNORECASE)
        token = json.loads(body)["csrf_token"]
        self.vote_head = (
            f"Host: 127.0.0.1:{self.port}\r\nAccept: application/json\r\n"
            f"Content-Type: application/json\r\nCookie: {'; '.join(cookies)}\r\n"
            f"X-CSRFToken: {token}\r\n"
        ).encode()

    def vote(self, due: float, battle_id: str, body: bytes, results: Results) -> None:
        self.due, self.results, self.in_flight = due, results, True
        self.send(
            b"POST /api/arena/battles/%s/vote HTTP/1.1\r\n%sContent-Length: %d\r\n\r\n%s"
            % (battle_id.encode(), self.vote_head, len(body), body)
        )

    def send(self, request: str | bytes) -> None:
        assert self.transport is not None
        self.transport.write(request.encode() if isinstance(request, str) else request)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        headers = bytes(self.buffer[:end])
        found = re.search(rb"^content-length: *(\d+)", headers, re.MULTILINE | re.IGNORECASE)
        length = int(found.group(1)) if found else 0
        if len(self.buffer) < end + 4 + length:
            return
        body = bytes(self.buffer[end + 4 : end + 4 + length])
        del self.buffer[: end + 4 + length]
        status = int(headers.split(b" ", 2)[1])
        if self.reply is not None and not self.reply.done():  # the session request
            self.reply.set_result((status, headers, body))
            return
        assert self.results is not None
        self.in_flight = False
        self.results.latencies_ms.append((time.perf_counter() - self.due) * 1000)
        self.results.due_s.append(self.due - self.results.start)
        self.results.statuses[status] = self.results.statuses.get(status, 0) + 1
        if self.on_idle is not None:
            self.on_idle(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.in_flight and self.results is not None:
            self.results.errors += 1  # the server dropped the connection: no answer
            self.in_flight = False
            if self.on_idle is not None:
                self.on_idle(None)

    async def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


async def drive(
    port: int, battle_ids: list[str], *, rate: float, duration: float, connections: int
) -> Results:
    """Send votes on idle connections as they fall due; a vote waits when all are busy."""
    results = Results()
    idle: deque[Connection] = deque()
    waiting: deque[tuple[float, str]] = deque()
    rng = random.Random(1)
    bodies = [json.dumps({"winner": winner}).encode() for winner in WINNERS]
    finished = asyncio.Event()

    def send(connection: Connection, due: float, battle_id: str) -> None:
        if time.perf_counter() - due > 1.0:
            results.late_start += 1
        connection.vote(due, battle_id, rng.choice(bodies), results)

    def on_idle(connection: Connection | None) -> None:
        nonlocal alive
        if connection is None:
            alive -= 1
        elif waiting:
            send(connection, *waiting.popleft())
            return
        else:
            idle.append(connection)
        if alive == 0:
            raise SystemExit("the server dropped every connection")
        if closing and len(idle) == alive:
            finished.set()

    closing = False
    pool = [Connection(port, on_idle) for _ in range(connections)]
    alive = len(pool)
    await asyncio.gather(*(c.open() for c in pool))
    idle.extend(pool)
    ids = iter(battle_ids)
    start = results.start = time.perf_counter()
    index, total = 0, int(rate * duration)
    while True:
        now = time.perf_counter()
        if (rate > 0 and index >= total) or (rate <= 0 and now - start >= duration):
            break
        if rate > 0:  # open loop: a vote is due every 1/rate seconds, whatever the server does
            due = start + index / rate
            await asyncio.sleep(max(0.0, due - now))  # yields to the answers even when late
        else:  # closed loop: a vote as soon as a connection is idle
            if not idle:
                await asyncio.sleep(0.001)
                continue
            due = now
        battle_id = next(ids, None)
        if battle_id is None:
            raise SystemExit("out of battles; seed more (CLOSED_LOOP_MAX_RATE)")
        index += 1
        results.sent += 1
        if idle:
            send(idle.popleft(), due, battle_id)
        else:
            waiting.append((due, battle_id))
    closing = True
    if len(idle) < alive or waiting:
        await finished.wait()
    results.elapsed_s = time.perf_counter() - start
    await asyncio.gather(*(c.close() for c in pool))
    return results


def run_loop(main: Coroutine[Any, Any, Results]) -> Results:
    """The load generator on uvloop (libuv, in C), the cheapest event loop for the CPU it
    shares with the server; asyncio's own loop where uvloop is not installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    return uvloop.run(main)


def cpu_seconds(server: subprocess.Popen[bytes], database: str) -> tuple[float, float, float]:
    """CPU seconds used so far by gunicorn (master and workers), by the bench's PostgreSQL
    backends (their process title names the database) and by redis-server."""
    import psutil

    def used(process: psutil.Process) -> float:
        try:
            times = process.cpu_times()
        except psutil.Error:
            return 0.0
        return float(times.user + times.system)

    root = psutil.Process(server.pid)
    web = used(root) + sum(used(child) for child in root.children(recursive=True))
    processes = list(psutil.process_iter(["name", "cmdline"]))
    database = sum(
        used(process)
        for process in processes
        if (process.info["name"] or "").startswith("postgres")
        and f" {database} " in " ".join(process.info["cmdline"] or [])
    )
    cache = sum(used(p) for p in processes if (p.info["name"] or "").startswith("redis-server"))
    return web, database, cache


def cpu_probe_ms() -> float:
    """The best of 5 runs of a fixed pure-Python loop: how fast this machine's cores are now."""
    best = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        table = {str(number): number for number in range(200_000)}
        sum(table.values())
        best = min(best, time.perf_counter() - start)
    return round(best * 1000, 1)


def windowed_p99(results: Results, window_s: float = 10.0) -> list[float]:
    """p99 latency of the votes due in each ``window_s`` of the run: shows a slow stretch."""
    windows: dict[int, list[float]] = {}
    for due, latency in zip(results.due_s, results.latencies_ms, strict=True):
        windows.setdefault(int(due // window_s), []).append(latency)
    return [round(percentile(windows[key], 99), 1) for key in sorted(windows)]


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def run_scenario(scenario: Scenario, args: argparse.Namespace) -> dict[str, object]:
    child(scenario, "manage.py", "migrate", "--no-input", "-v", "0")
    # The measured run takes ids from the front, the warm-up its own from the back.
    warmup_ids = int(WARMUP_MAX_RATE * args.warmup)
    battles = int((args.rate or CLOSED_LOOP_MAX_RATE) * args.duration * 1.1) + warmup_ids
    battle_ids = child(scenario, __file__, "_seed", str(battles)).split()
    port = free_port()
    deployed = runpy.run_path(str(GUNICORN_CONFIG))
    workers, threads = args.workers or deployed["workers"], args.threads or deployed["threads"]
    server = start_gunicorn(scenario, port, workers, threads)
    try:
        warm = Results()
        if args.warmup:  # fills connection pools and caches; its votes are counted apart
            warm = run_loop(
                drive(port, battle_ids[-warmup_ids:], rate=0, duration=args.warmup, connections=8)
            )
        probe_before = cpu_probe_ms()
        web_before, db_before, cache_before = cpu_seconds(server, args.bench_database)
        client_before = os.times()
        load_before = os.getloadavg()[0]
        results = run_loop(
            drive(
                port,
                battle_ids,
                rate=args.rate,
                duration=args.duration,
                connections=args.connections,
            )
        )
        client_after = os.times()
        web_after, db_after, cache_after = cpu_seconds(server, args.bench_database)
        load_after = os.getloadavg()[0]
        probe_after = cpu_probe_ms()
    finally:
        stop(server)
    client_cpu = (client_after.user - client_before.user) + (
        client_after.system - client_before.system
    )
    audit_report = json.loads(child(scenario, __file__, "_audit"))
    latencies = results.latencies_ms
    return {
        "scenario": scenario.name,
        "rate_target": args.rate,
        "duration_target_s": args.duration,
        "duration_s": round(results.elapsed_s, 1),
        "sent": results.sent,
        "statuses": dict(sorted(results.statuses.items())),
        "transport_errors": results.errors,
        "late_start": results.late_start,
        "votes_per_s": round(results.ok / results.elapsed_s, 1),
        "p50_ms": round(percentile(latencies, 50), 1),
        "p95_ms": round(percentile(latencies, 95), 1),
        "p99_ms": round(percentile(latencies, 99), 1),
        "max_ms": round(max(latencies), 1) if latencies else None,
        "mean_ms": round(statistics.fmean(latencies), 1) if latencies else None,
        "p99_ms_per_10s": windowed_p99(results),
        "ok_2xx": results.ok,
        "db": audit_report,
        # Every 2xx answer is one vote in the database with one outcome, and each is in the
        # pair counts.
        "nothing_lost_or_doubled": audit_report["votes"] == results.ok + warm.ok
        and audit_report["outcomes"] == audit_report["votes"]
        and audit_report["pair_count_total"] == audit_report["votes"]
        and audit_report["coding_pair_total"] == audit_report["coding_votes"]
        and audit_report["battles_with_two_votes"] == 0,
        "warmup_2xx": warm.ok,
        "web_cpu_ms_per_vote": round((web_after - web_before) * 1000 / max(1, results.ok), 2),
        "db_cpu_ms_per_vote": round((db_after - db_before) * 1000 / max(1, results.ok), 2),
        "redis_cpu_ms_per_vote": round((cache_after - cache_before) * 1000 / max(1, results.ok), 2),
        "client_cpu_ms_per_vote": round(client_cpu * 1000 / max(1, results.ok), 2),
        "cpu_probe_ms": [probe_before, probe_after],
        "load_average_1m": [round(load_before, 1), round(load_after, 1)],
        "gunicorn": f"{workers} workers x {threads} threads ({deployed['worker_class']})",
        "rate_limits": not args.no_rate_limits,
        "cores": os.cpu_count(),
    }


def main(argv: list[str] | None = None) -> int:
    raw = sys.argv[1:] if argv is None else argv
    if raw and raw[0] == "_seed":
        seed(int(raw[1]))
        return 0
    if raw and raw[0] == "_audit":
        audit()
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=("postgres", "sqlite", "both"), default="both")
    parser.add_argument("--rate", type=float, default=500, help="votes/s offered; 0 = closed loop")
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, help="gunicorn processes (config/gunicorn.py)")
    parser.add_argument("--threads", type=int, help="threads per process (config/gunicorn.py)")
    parser.add_argument("--warmup", type=float, default=3, help="seconds of closed-loop warm-up")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/postgres"),
    )
    parser.add_argument(
        "--bench-database", default="ladder_bench", help="dropped and re-created for each run"
    )
    parser.add_argument(
        "--redis-url", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    )
    parser.add_argument(
        "--no-rate-limits", action="store_true", help="switch the vote rate limits off"
    )
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(raw)
    names = ("postgres", "sqlite") if args.scenario == "both" else (args.scenario,)
    reports = []
    with tempfile.TemporaryDirectory(prefix="arena-bench-") as folder:
        settings_dir = Path(folder)
        overrides = SETTINGS_OVERRIDES + (NO_RATE_LIMITS if args.no_rate_limits else "")
        (settings_dir / "ladder_bench_settings.py").write_text(overrides)
        for name in names:
            if name == "postgres":
                scenario = postgres_scenario(
                    args.database_url, args.redis_url, args.bench_database, settings_dir
                )
            else:
                scenario = sqlite_scenario(settings_dir)
            report = run_scenario(scenario, args)
            reports.append(report)
            print(json.dumps(report), flush=True)
    print(summary_table(reports), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(reports, indent=2))
    return 0 if all(report["nothing_lost_or_doubled"] for report in reports) else 1


def summary_table(reports: list[dict[str, Any]]) -> str:
    """One row per scenario; the goal (GOAL_*) is judged for the open-loop PostgreSQL run."""
    lines = [
        "| scenario | offered | votes/s | p50 ms | p95 ms | p99 ms | worst 10 s p99 ms | "
        "2xx | DB votes - warm-up | lost or doubled | CPU ms/vote web + db + redis + load gen "
        "| cpu probe ms | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for report in reports:
        offered = f"{report['rate_target']:g}/s" if report["rate_target"] else "closed loop"
        cpu = " + ".join(
            str(report[f"{part}_cpu_ms_per_vote"]) for part in ("web", "db", "redis", "client")
        )
        if report["scenario"] != "postgres" or not report["rate_target"]:
            goal = "-"
        else:
            # Offered at the goal's rate for its duration, every vote answered 2xx, and a p99
            # within the goal (so the server kept up: open-loop latencies count any backlog).
            met = (
                report["rate_target"] >= GOAL_VOTES_PER_S
                and report["duration_target_s"] >= GOAL_DURATION_S
                and report["ok_2xx"] == report["sent"]
                and report["p99_ms"] <= GOAL_P99_MS
                and report["nothing_lost_or_doubled"]
            )
            goal = "met" if met else "missed"
        lines.append(
            f"| {report['scenario']} | {offered} | {report['votes_per_s']} | {report['p50_ms']} "
            f"| {report['p95_ms']} | {report['p99_ms']} | {max(report['p99_ms_per_10s'])} "
            f"| {report['ok_2xx']} | {report['db']['votes'] - report['warmup_2xx']} "
            f"| {'no' if report['nothing_lost_or_doubled'] else 'YES'} | {cpu} "
            f"| {report['cpu_probe_ms'][0]} -> {report['cpu_probe_ms'][1]} | {goal} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
