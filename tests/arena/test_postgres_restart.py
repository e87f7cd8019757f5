"""Issue 18: PostgreSQL restarts while votes arrive over HTTP (the production profile).

A private, throwaway PostgreSQL cluster (initdb in a temporary folder, its own port and socket
folder) holds the schema and ready battles; gunicorn serves the project with its deployed
settings (``config/gunicorn.py``, ``DEBUG=false``, Redis for the cache and the rate limits).
Client threads vote continuously, one battle per request, while the cluster restarts. Every
answer must be a 2xx with its vote stored or the JSON 503 ``database_unavailable``; no HTML, no
500, no dropped connection. The votes in the database are exactly the battles answered 2xx
(with one outcome and one pair-count increment each), the server answers 2xx again once the
database is back, and a battle whose vote met the outage can be voted afterwards.

The shared PostgreSQL on port 5432 is never touched: only the private cluster restarts.
"""

from __future__ import annotations

import glob
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import free_port, require_or_skip, service_reachable

ROOT = Path(__file__).resolve().parents[2]
WINNERS = ("model_a", "model_b", "tie", "tie (bothbad)")
SERVER_WORKERS = 2
SERVER_THREADS = 2
CLIENTS = 6
PAUSE_S = 0.02  # between one client's votes: a steady stream, not a load test
BATTLES_PER_TEST = 2500
VOTING_BEFORE_S = 1.5
VOTING_AFTER_S = 2.5
OUTAGE_CODE = "database_unavailable"
# (pg_ctl restart mode, whether the clients pause while it restarts): with a pause, no request
# meets the outage and every server thread keeps a dead persistent connection into the new
# server's lifetime.
RESTARTS = [("fast", False), ("immediate", False), ("fast", True)]


def postgres_bin() -> Path | None:
    """The newest installed server's bin folder (Debian's layout), else pg_ctl on PATH."""
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(folder) / "pg_ctl").is_file() and (Path(folder) / "initdb").is_file():
            return Path(folder)
    found = shutil.which("pg_ctl")
    return Path(found).parent if found and shutil.which("initdb") else None


@dataclass
class PrivatePostgres:
    """A cluster of its own: ``folder`` holds the data, the socket and the server log."""

    bin: Path
    folder: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def run(self, tool: str, *args: str) -> None:
        # PostgreSQL refuses to run as root: the cluster belongs to the postgres OS user then.
        as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        result = subprocess.run(
            [*as_owner, str(self.bin / tool), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"{tool} {args}: {result.stdout}{result.stderr}"

    def pg_ctl(self, action: str, *args: str) -> None:
        # fsync=off: a throwaway cluster on a shared disk; a restart, even -m immediate, loses
        # nothing the server wrote (only an operating-system crash would).
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run(
            "pg_ctl", action, "-D", str(self.folder / "data"), "-l", str(self.log), "-w",
            "-t", "30", "-o", options, *args,
        )  # fmt: skip


@pytest.fixture(scope="module")
def private_postgres() -> Iterator[PrivatePostgres]:
    bin_folder = postgres_bin()
    if bin_folder is None:
        require_or_skip("no PostgreSQL server binaries (initdb, pg_ctl) are installed")
    assert bin_folder is not None
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        require_or_skip("running as root without runuser to start PostgreSQL as postgres")
    folder = Path(tempfile.mkdtemp(prefix="ladder-pgfault-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    cluster = PrivatePostgres(bin_folder, folder, free_port())
    started = False
    try:
        cluster.run(
            "initdb", "-D", str(folder / "data"), "-U", "postgres", "--auth=trust",
            "-E", "UTF8", "--no-sync", "--no-instructions",
        )  # fmt: skip
        cluster.pg_ctl("start")
        started = True
        yield cluster
    finally:
        if started:
            try:
                cluster.pg_ctl("stop", "-m", "immediate")
            except AssertionError:  # already down (a failed restart): nothing to stop
                pass
        shutil.rmtree(folder, ignore_errors=True)


@dataclass
class VoteServer:
    port: int
    env: dict[str, str]
    log: Path
    battles: list[str]  # ready battle ids, not yet voted
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_battles(self, count: int) -> list[str]:
        with self.lock:
            taken, self.battles = self.battles[:count], self.battles[count:]
        assert len(taken) == count, "the module seeded too few battles"
        return taken

    def log_tail(self) -> str:
        return self.log.read_text(errors="replace")[-4000:]


def child(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=180, check=False,
    )  # fmt: skip
    assert result.returncode == 0, f"{args}:\n{result.stderr[-3000:]}"
    return result.stdout


@pytest.fixture(scope="module")
def vote_server(private_postgres: PrivatePostgres) -> Iterator[VoteServer]:
    """gunicorn on the private cluster, with the schema and ready battles (bench's seeding)."""
    redis_url = os.environ.get("REDIS_URL")
    if not service_reachable(redis_url, 6379):
        require_or_skip(f"Redis is not reachable at {redis_url}")
    assert redis_url is not None
    var_dir = private_postgres.folder / "var"
    (var_dir / "static").mkdir(parents=True)  # no collectstatic for votes; WhiteNoise is quiet
    port = free_port()
    env = {
        **os.environ,
        "DATABASE_URL": private_postgres.url,
        "REDIS_URL": redis_url,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "PYTHONPATH": str(ROOT),
        "DEBUG": "false",
        "SECRET_KEY": "postgres-restart-test",
        "ALLOWED_HOSTS": "127.0.0.1",
        "LADDER_VAR_DIR": str(var_dir),
        "LADDER_DEMO_MODE": "none",
        # The limits are counted as deployed, with allowances no client of this test reaches.
        "ARENA_VOTE_RATE_PER_HOUR": str(10**9),
        "ARENA_VOTE_RATE_PER_IP_PER_HOUR": str(10**9),
        "LADDER_WEB_BIND": f"127.0.0.1:{port}",
        "LADDER_WEB_WORKERS": str(SERVER_WORKERS),
        "LADDER_WEB_THREADS": str(SERVER_THREADS),
    }
    child(env, "manage.py", "migrate", "--no-input", "-v", "0")
    count = BATTLES_PER_TEST * len(RESTARTS)
    battles = child(env, str(ROOT / "bench" / "arena_votes.py"), "_seed", str(count)).split()
    log = private_postgres.folder / "gunicorn.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [str(Path(sys.executable).with_name("gunicorn")), "--config",
             str(ROOT / "config" / "gunicorn.py"), "config.wsgi:application"],
            cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_until_listening(port, server, log)
        yield VoteServer(port, env, log, battles)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(20)


def wait_until_listening(port: int, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.5):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"gunicorn did not listen on {port}:\n{log.read_text()[-3000:]}")


# --- The client --------------------------------------------------------------------------


@dataclass
class Answer:
    battle_id: str
    winner: str
    sent_at: float  # time.monotonic()
    status: int | None = None  # None: no HTTP answer at all
    content_type: str = ""
    body: bytes = b""
    transport_error: str = ""

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    def is_outage_503(self) -> bool:
        if self.status != 503 or not self.content_type.startswith("application/json"):
            return False
        try:
            error = json.loads(self.body)["error"]
        except (ValueError, KeyError, TypeError):
            return False
        return error.get("code") == OUTAGE_CODE and bool(error.get("message"))

    def describe(self) -> str:
        if self.transport_error:
            return f"{self.battle_id}: no answer ({self.transport_error})"
        return f"{self.battle_id}: {self.status} {self.content_type} {self.body[:200]!r}"


class BrowserLikeVoter:
    """One keep-alive connection with its own voter cookie and CSRF token, as a browser."""

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.connection.request("GET", "/api/arena/session")
        response = self.connection.getresponse()
        body = response.read()
        assert response.status == 200, body[:300]
        cookies = [
            re.match(r"[^;]*", value).group(0)  # type: ignore[union-attr]
            for key, value in response.getheaders()
            if key.lower() == "set-cookie"
        ]
        self.headers = {
            "Accept": "application/json",
            "Content-Type": "application/json",
            "Cookie": "; ".join(cookies),
            "X-CSRFToken": json.loads(body)["csrf_token"],
        }

    def vote(self, battle_id: str, winner: str) -> Answer:
        answer = Answer(battle_id, winner, time.monotonic())
        body = json.dumps({"winner": winner})
        try:
            self.connection.request(
                "POST", f"/api/arena/battles/{battle_id}/vote", body, self.headers
            )
            response = self.connection.getresponse()
            answer.body = response.read()
            answer.status = response.status
            answer.content_type = response.getheader("Content-Type", "")
        except (OSError, http.client.HTTPException) as error:
            answer.transport_error = repr(error)
            self.connection.close()  # the next request opens a new connection
        return answer

    def close(self) -> None:
        self.connection.close()


class Traffic:
    """Lets the test stop the clients between requests and wait until none is in flight."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.paused = False
        self.stopped = False
        self.in_flight = 0

    def enter(self) -> bool:
        """Wait while paused; False once stopped."""
        with self.condition:
            self.condition.wait_for(lambda: not self.paused or self.stopped)
            if self.stopped:
                return False
            self.in_flight += 1
            return True

    def leave(self) -> None:
        with self.condition:
            self.in_flight -= 1
            self.condition.notify_all()

    def pause(self) -> None:
        with self.condition:
            self.paused = True
            assert self.condition.wait_for(lambda: self.in_flight == 0, 30)

    def resume(self) -> None:
        with self.condition:
            self.paused = False
            self.condition.notify_all()

    def stop(self) -> None:
        with self.condition:
            self.stopped = True
            self.condition.notify_all()


def vote_continuously(
    port: int, battles: list[str], traffic: Traffic, answers: list[Answer], seed: int
) -> None:
    rng = random.Random(seed)
    voter = BrowserLikeVoter(port)
    try:
        for battle_id in battles:
            if not traffic.enter():
                return
            try:
                answers.append(voter.vote(battle_id, rng.choice(WINNERS)))
            finally:
                traffic.leave()
            time.sleep(PAUSE_S)
    finally:
        voter.close()


# --- What the database holds -------------------------------------------------------------


@dataclass
class Stored:
    voted_battles: list[str]  # one entry per vote row
    outcomes: int
    pair_count_total: int


def stored(cluster: PrivatePostgres) -> Stored:
    """Read straight from the private cluster (the test process's Django points elsewhere)."""
    import psycopg

    from arena.models import Vote
    from leaderboard.models import Outcome, PairCount

    def column(model: type, name: str) -> str:
        return str(model._meta.get_field(name).column)  # type: ignore[attr-defined]

    counts = " + ".join(
        f"coalesce(sum({column(PairCount, name)}), 0)"
        for name in ("model_a_wins", "model_b_wins", "ties", "both_bad")
    )
    with psycopg.connect(cluster.url, autocommit=True) as connection:
        voted = connection.execute(
            f"SELECT {column(Vote, 'battle')}::text FROM {Vote._meta.db_table}"
        ).fetchall()
        (outcomes,) = connection.execute(
            f"SELECT count(*) FROM {Outcome._meta.db_table}"
        ).fetchone()  # type: ignore[misc]
        (pairs,) = connection.execute(
            f"SELECT {counts} FROM {PairCount._meta.db_table} "
            f"WHERE {column(PairCount, 'category')} = ''"
        ).fetchone()  # type: ignore[misc]
    return Stored([row[0] for row in voted], int(outcomes), int(pairs))


def wait_for_answers(answers: list[list[Answer]], minimum: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if sum(answer.ok for client in answers for answer in list(client)) >= minimum:
            return
        time.sleep(0.05)


@pytest.mark.integration
@pytest.mark.parametrize(("mode", "idle"), RESTARTS)
def test_votes_during_a_postgres_restart_are_stored_2xx_or_a_json_503(
    vote_server: VoteServer, private_postgres: PrivatePostgres, mode: str, idle: bool
) -> None:
    before = stored(private_postgres)
    battles = vote_server.take_battles(BATTLES_PER_TEST)
    per_client = [battles[i::CLIENTS] for i in range(CLIENTS)]
    answers: list[list[Answer]] = [[] for _ in range(CLIENTS)]
    traffic = Traffic()
    clients = [
        threading.Thread(
            target=vote_continuously,
            args=(vote_server.port, per_client[i], traffic, answers[i], i),
            daemon=True,
        )
        for i in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    try:
        wait_for_answers(answers, 20, 20)
        time.sleep(VOTING_BEFORE_S)
        if idle:
            traffic.pause()
        restart_began = time.monotonic()
        private_postgres.pg_ctl("restart", "-m", mode)
        restarted = time.monotonic()
        traffic.resume()
        time.sleep(VOTING_AFTER_S)
    finally:
        traffic.stop()
        for client in clients:
            client.join(60)
    everything = sorted((a for client in answers for a in client), key=lambda a: a.sent_at)
    ok = [answer for answer in everything if answer.ok]
    refused = [answer for answer in everything if not answer.ok]
    context = f"\n--- gunicorn log ---\n{vote_server.log_tail()}"

    # Every answer is a 2xx or the JSON 503 of the outage: no HTML, no 500, no dropped socket.
    wrong = [answer.describe() for answer in refused if not answer.is_outage_503()]
    assert not wrong, (
        f"{len(wrong)} of {len(everything)} answers:\n" + "\n".join(wrong[:10]) + context
    )
    assert ok and ok[0].sent_at < restart_began, "no vote succeeded before the restart"
    during = [a for a in refused if restart_began <= a.sent_at < restarted]
    assert idle or during, f"no request met the {mode} restart ({len(everything)} answers)"

    # Once the database is back every vote succeeds: no thread fails on a connection that the
    # old server closed (core.postgresql checks it before a request reuses it).
    late = [a for a in everything if a.sent_at >= restarted]
    assert len(late) >= 20 and all(a.ok for a in late), [a.describe() for a in late if not a.ok]
    assert not idle or not refused, [a.describe() for a in refused]

    # The votes stored are exactly the battles answered 2xx, each once, each counted once.
    after = stored(private_postgres)
    assert len(after.voted_battles) - len(before.voted_battles) == len(ok)
    assert sorted(set(after.voted_battles) - set(before.voted_battles)) == sorted(
        a.battle_id for a in ok
    )
    assert len(set(after.voted_battles)) == len(after.voted_battles), "a battle has two votes"
    assert after.outcomes == after.pair_count_total == len(after.voted_battles)

    # A battle whose vote met the outage is still votable, and its vote counts once.
    voter = BrowserLikeVoter(vote_server.port)
    retried = [voter.vote(a.battle_id, a.winner) for a in refused]
    voter.close()
    assert all(answer.status == 201 for answer in retried), [a.describe() for a in retried]
    final = stored(private_postgres)
    assert len(final.voted_battles) == len(after.voted_battles) + len(refused)
    assert len(set(final.voted_battles)) == len(final.voted_battles)
    assert final.outcomes == final.pair_count_total == len(final.voted_battles)
    print(
        f"{mode} restart: {len(everything)} votes sent, {len(ok)} 2xx, {len(refused)} JSON 503 "
        f"(idle: {idle}), the restart took {restarted - restart_began:.2f} s"
    )
