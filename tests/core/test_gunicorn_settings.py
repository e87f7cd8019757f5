"""config/gunicorn.py: the web server settings shared by compose, `make run` and the bench."""

from __future__ import annotations

import gc
import runpy
from pathlib import Path
from typing import Any

import pytest

SETTINGS = Path(__file__).resolve().parents[2] / "config" / "gunicorn.py"


def load(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name in ("LADDER_WEB_BIND", "LADDER_WEB_WORKERS", "LADDER_WEB_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return runpy.run_path(str(SETTINGS))


def test_defaults_are_one_process_per_core_with_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    settings = load(monkeypatch)
    assert settings["bind"] == ["0.0.0.0:8000"]
    assert settings["workers"] == (os.cpu_count() or 1)
    assert settings["worker_class"] == "gthread" and settings["threads"] >= 1
    assert settings["keepalive"] > 0
    assert settings["control_socket_disable"] is True


def test_environment_overrides_bind_workers_and_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(
        monkeypatch, LADDER_WEB_BIND="127.0.0.1:9", LADDER_WEB_WORKERS="3", LADDER_WEB_THREADS="1"
    )
    assert (settings["bind"], settings["workers"], settings["threads"]) == (["127.0.0.1:9"], 3, 1)


@pytest.mark.parametrize("value", ["0", "-2", "two"])
def test_bad_worker_count_stops_with_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    with pytest.raises(SystemExit) as stop:
        load(monkeypatch, LADDER_WEB_WORKERS=value)
    assert str(stop.value) == (
        "ladder: configuration error: LADDER_WEB_WORKERS must be a positive integer"
    )


def test_worker_start_freezes_the_start_up_objects(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load(monkeypatch)
    try:
        settings["post_worker_init"](None)
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
