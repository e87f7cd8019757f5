"""The kernel loader: built once into the cache, None (numpy is used) whenever it cannot be."""

from __future__ import annotations

import shutil

import pytest

from evalcore import native

SOURCE = "int ladder_test_add(int a, int b) { return a + b; }\n"


@pytest.fixture(autouse=True)
def fresh(monkeypatch, tmp_path):
    monkeypatch.setattr(native, "_LOADED", {})
    monkeypatch.setenv("LADDER_KERNEL_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("LADDER_NATIVE", raising=False)


@pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler here")
def test_a_source_is_built_once_and_loaded(monkeypatch, tmp_path):
    library = native.load("ladder_test", SOURCE)
    assert library is not None and library.ladder_test_add(2, 3) == 5
    built = list((tmp_path / "cache").glob("ladder_test_*.so"))
    assert len(built) == 1
    native._LOADED.clear()
    assert native.load("ladder_test", SOURCE) is not None  # from the cache
    assert list((tmp_path / "cache").glob("ladder_test_*.so")) == built
    native._LOADED.clear()
    monkeypatch.setenv("CC", "no-such-compiler")  # a built library needs no compiler
    assert native.load("ladder_test", SOURCE) is not None


@pytest.mark.parametrize("compiler", ["no-such-compiler", "false"])
def test_no_compiler_or_a_failing_one_means_none(monkeypatch, compiler, caplog):
    monkeypatch.setenv("CC", compiler)
    assert native.load("ladder_test", SOURCE) is None
    assert "using the plain path" in caplog.text


def test_switched_off_means_none(monkeypatch):
    monkeypatch.setenv("LADDER_NATIVE", "0")
    assert native.load("ladder_test", SOURCE) is None
