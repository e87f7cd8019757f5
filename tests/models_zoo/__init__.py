"""Tests of the model zoo (models_zoo/)."""

from __future__ import annotations
