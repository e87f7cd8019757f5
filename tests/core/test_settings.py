"""A bad setting stops start-up with one clear line naming the variable."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CLEAN = {
    k: v
    for k, v in os.environ.items()
    if k
    not in ("DATABASE_URL", "REDIS_URL", "DEBUG", "SECRET_KEY", "ALLOWED_HOSTS", "OMP_WAIT_POLICY")
}


def start(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=ROOT,
        env={**CLEAN, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"DEBUG": "yes"}, "DEBUG"),
        ({"DATABASE_URL": "mysql://x@localhost/db"}, "DATABASE_URL"),
        ({"DATABASE_URL": "postgres://localhost:notaport/db"}, "DATABASE_URL"),
        ({"REDIS_URL": "http://localhost:6379"}, "REDIS_URL"),
        ({"DEBUG": "false", "ALLOWED_HOSTS": "example.org"}, "SECRET_KEY"),
        ({"DEBUG": "false", "SECRET_KEY": "s3cret"}, "ALLOWED_HOSTS"),
        ({"LADDER_TASK_TIME_LIMIT": "soon"}, "LADDER_TASK_TIME_LIMIT"),
        ({"LADDER_JOB_LEASE_S": "soon"}, "LADDER_JOB_LEASE_S"),
        ({"LADDER_WORKER_DEVICE": "gpu"}, "LADDER_WORKER_DEVICE"),
        ({"LADDER_WORKER_QUANTIZE_INT8": "yes"}, "LADDER_WORKER_QUANTIZE_INT8"),
        (
            {"LADDER_SUBMISSION_MAX_COMPRESSION_RATIO": "lots"},
            "LADDER_SUBMISSION_MAX_COMPRESSION_RATIO",
        ),
        ({"ARENA_MODE": "fast"}, "ARENA_MODE"),
        ({"LADDER_DEMO_MODE": "huge"}, "LADDER_DEMO_MODE"),
    ],
)
def test_bad_setting_gives_one_line_naming_the_variable(env: dict[str, str], variable: str) -> None:
    result = start([sys.executable, "manage.py", "check"], **env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ladder: configuration error:")
    assert variable in lines[0]
    assert "Traceback" not in result.stderr


def test_celery_worker_with_bad_setting_gives_one_line() -> None:
    celery = str(Path(sys.executable).with_name("celery"))
    result = start([celery, "-A", "config", "inspect", "ping"], DEBUG="maybe")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "ladder: configuration error: DEBUG must be 'true' or 'false', got 'maybe'"
    ]


@pytest.mark.parametrize(("given", "expected"), [(None, "PASSIVE"), ("ACTIVE", "ACTIVE")])
def test_a_celery_process_lets_idle_openmp_threads_sleep(given: str | None, expected: str) -> None:
    code = (
        "import os, sys; sys.argv[0] = 'celery'; import config.celery;"
        "print(os.environ['OMP_WAIT_POLICY'])"
    )
    env = {} if given is None else {"OMP_WAIT_POLICY": given}
    result = start([sys.executable, "-c", code], **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == expected


def test_production_profile_uses_postgres_and_redis() -> None:
    code = (
        "from django.conf import settings as s;"
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, s.CACHES['default']['BACKEND'],"
        " s.DATABASES['default']['CONN_HEALTH_CHECKS'])"
    )
    result = start(
        [
            sys.executable,
            "-c",
            f"import django, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings'; {code}",
        ],
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/test",
        REDIS_URL="redis://127.0.0.1:6379/3",
        DEBUG="false",
        SECRET_KEY="k",
        ALLOWED_HOSTS="example.org",
    )
    assert result.returncode == 0, result.stderr
    engine, broker, cache, health_checks = result.stdout.split()
    assert engine == "core.postgresql"  # Django's backend, with a check that costs no round trip
    assert health_checks == "True"
    assert broker == "redis://127.0.0.1:6379/3"
    assert cache.endswith("RedisCache")


def test_celery_routes_model_work_and_rating_work_to_separate_queues() -> None:
    from django.conf import settings

    routes = settings.CELERY_TASK_ROUTES
    assert routes["arena.generate_answers"]["queue"] == "models"
    assert routes["leaderboard.*"]["queue"] == "default"
    assert settings.CELERY_TASK_ACKS_LATE is True
    assert settings.CELERY_WORKER_PREFETCH_MULTIPLIER == 1
    assert settings.CELERY_TASK_TIME_LIMIT > 0


def test_app_settings_are_read_from_the_environment_under_their_own_names() -> None:
    names = [
        "LADDER_JOB_LEASE_S",
        "LADDER_SUBMISSION_ALLOWED_ROOTS",
        "LADDER_WORKER_QUANTIZE_INT8",
        "LADDER_SUBMISSION_STEP_DELAY_S",
        "LADDER_PUE",
        "ARENA_MAX_NEW_TOKENS",
    ]
    code = (
        "import django, json, os; os.environ['DJANGO_SETTINGS_MODULE']='config.settings';"
        "from django.conf import settings as s;"
        f"print(json.dumps([getattr(s, name) for name in {names!r}]))"
    )
    result = start(
        [sys.executable, "-c", code],
        LADDER_JOB_LEASE_S="7",
        LADDER_SUBMISSION_ALLOWED_ROOTS="/srv/a, /srv/b",
        LADDER_WORKER_QUANTIZE_INT8="true",
        LADDER_SUBMISSION_STEP_DELAY_S="1.5",
        LADDER_PUE="1.1",
        ARENA_MAX_NEW_TOKENS="9",
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [7, ["/srv/a", "/srv/b"], True, 1.5, 1.1, 9]


def test_app_settings_have_their_defaults_when_the_environment_is_silent() -> None:
    from django.conf import settings

    assert settings.LADDER_JOB_LEASE_S == 120
    assert settings.LADDER_WORKER_DEVICE == "auto"
    assert settings.LADDER_SUBMISSION_FEWSHOT_TASKS == []
    assert settings.LEADERBOARD_DEFAULT_RATING_PARAMS["method"] == "bt"
    assert settings.LEADERBOARD_RATING_PARAMS == {}


# The launcher starts the processes (and reads its own bind address) before Django is set up.
READS_ENVIRONMENT_BEFORE_DJANGO = {"core/launcher.py"}


def test_apps_read_django_settings_not_the_environment() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for app in ("arena", "contestants", "core", "leaderboard", "submissions")
        for path in sorted((ROOT / app).rglob("*.py"))
        if str(path.relative_to(ROOT)) not in READS_ENVIRONMENT_BEFORE_DJANGO
        and ("os.environ" in path.read_text() or "getenv(" in path.read_text())
    ]
    assert offenders == []
