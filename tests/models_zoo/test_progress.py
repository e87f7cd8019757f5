"""Progress off a terminal: a few plain lines, never carriage-return redraws."""

from __future__ import annotations

import pytest

from models_zoo.progress import Progress


def test_log_lines_every_interval_and_at_the_end(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(range(1000), description="work", interval_s=0.0, terminal=False)
    items = list(progress)
    assert items == list(range(1000))
    assert progress.lines[-1].startswith("work: 1000/1000 (100%)")
    assert "done in" in progress.lines[-1]
    assert "\r" not in capsys.readouterr().err


def test_a_slow_interval_writes_only_the_final_line(capsys: pytest.CaptureFixture[str]) -> None:
    progress = Progress(range(5000), description="work", interval_s=3600, terminal=False)
    for step in progress:
        progress.set_postfix(loss=f"{step:.1f}")
    assert len(progress.lines) == 1 and progress.lines[0].endswith("loss=4999.0")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "\r" not in err


def test_disabled_progress_writes_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    assert sum(Progress(range(10), description="x", enabled=False, terminal=False)) == 45
    assert capsys.readouterr().err == ""
