"""Task declarations for the few-shot runner: plain dataclasses in a plain dict registry.

A task is data: where its files live, how raw JSON labels map to canonical label names (the
encodings differ per task: booleans, strings, 0/1, per-answer labels), which metrics it
reports, and at least two prompt patterns with their verbalizers. The only code per task is a
small ``to_docs`` function that flattens one JSONL record into scoring units (MultiRC: one unit
per answer option) and derives template fields (COPA's connector, WiC's marked word).
"""

from __future__ import annotations

from evalcore.fewshot.spec import DEMO_SEPARATOR, Doc, Pattern, ProbePattern, TaskSpec
from evalcore.fewshot.tasks.superglue import TASKS as BUILTIN_TASKS

__all__ = ["DEMO_SEPARATOR", "Doc", "Pattern", "ProbePattern", "TaskSpec", "get_task", "register"]

REGISTRY: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    """Add ``spec`` to the registry under ``spec.name``.

    Raises:
        ValueError: If a task of that name is already registered.
    """
    if spec.name in REGISTRY:
        raise ValueError(f"task {spec.name!r} is already registered")
    REGISTRY[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    """The registered task called ``name`` (case-insensitive).

    Raises:
        ValueError: If no such task exists; the message lists the known ones.
    """
    key = name.strip().lower()
    if key not in REGISTRY:
        raise ValueError(f"unknown task {name!r}; known tasks: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[key]


def task_names() -> list[str]:
    """Names of all registered tasks, in registration order."""
    return list(REGISTRY)


for _spec in BUILTIN_TASKS:
    register(_spec)
