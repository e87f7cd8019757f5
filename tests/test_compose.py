"""docker-compose.yml is not run here (no Docker engine); check that it names real things."""

from __future__ import annotations

import importlib
import shlex
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent


def load_compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def command_of(service: dict[str, Any]) -> list[str]:
    """The words of a service's command; a ``sh -c "..."`` string is split like the shell."""
    command = service["command"]
    if not isinstance(command, str):
        return list(command)
    words = shlex.split(command)
    return shlex.split(words[2]) if words[:2] == ["sh", "-c"] else words


def test_compose_has_every_service_with_healthchecks_and_named_volumes() -> None:
    compose = load_compose()
    services = compose["services"]
    assert {"postgres", "redis", "web", "worker", "worker-gpu", "beat"} <= set(services)
    for name in ("postgres", "redis", "web", "worker", "worker-gpu"):
        assert "healthcheck" in services[name], name
    assert {"postgres-data", "redis-data", "ladder-data"} <= set(compose["volumes"])


def test_web_migrates_and_serves_the_real_wsgi_module() -> None:
    command = " ".join(command_of(load_compose()["services"]["web"]))
    assert "manage.py migrate" in command
    wsgi = next(word for word in command.split() if word.endswith(":application"))
    module = importlib.import_module(wsgi.split(":")[0])
    assert hasattr(module, "application")


def test_workers_consume_queues_declared_in_settings() -> None:
    from django.conf import settings

    declared = {route["queue"] for route in settings.CELERY_TASK_ROUTES.values()}
    services = load_compose()["services"]
    for name in ("worker", "worker-gpu"):
        argv = command_of(services[name])
        assert argv[:3] == ["celery", "-A", "config"]
        assert importlib.import_module(argv[2]).celery_app is not None
        queues = set(argv[argv.index("-Q") + 1].split(","))
        assert queues <= declared, (name, queues, declared)
    assert "models" in set(
        command_of(services["worker-gpu"])[
            command_of(services["worker-gpu"]).index("-Q") + 1
        ].split(",")
    )


def test_gpu_worker_reserves_an_nvidia_device() -> None:
    devices = load_compose()["services"]["worker-gpu"]["deploy"]["resources"]["reservations"][
        "devices"
    ]
    assert devices[0]["driver"] == "nvidia"
    assert "gpu" in devices[0]["capabilities"]


def test_services_use_the_production_profile_variables() -> None:
    env = load_compose()["x-ladder-env"]
    for variable in ("DATABASE_URL", "REDIS_URL", "SECRET_KEY", "ALLOWED_HOSTS", "DEBUG"):
        assert variable in env
    assert env["DATABASE_URL"].startswith("postgres://")
    assert env["REDIS_URL"].startswith("redis://")


def test_dockerfile_installs_the_pinned_requirements() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install -r requirements.txt" in dockerfile


def test_web_serves_with_the_shared_gunicorn_settings() -> None:
    command = command_of(load_compose()["services"]["web"])
    assert command[command.index("--config") + 1] == "config/gunicorn.py"
    assert (ROOT / "config" / "gunicorn.py").is_file()


def test_dockerfile_builds_the_c_kernels_into_the_image_cache() -> None:
    """The image has no compiler at run time: its kernels are built in a step that has one."""
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "LADDER_KERNEL_CACHE=" in dockerfile
    build = next(line for line in dockerfile.split("RUN ") if "counter_sampler" in line)
    assert "gcc" in build and "assert kernel()" in build and "apt-get purge" in build
