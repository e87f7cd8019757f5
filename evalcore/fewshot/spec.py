"""The data types a few-shot task is declared with: docs, prompt patterns, probe patterns, tasks.

Task modules (``evalcore.fewshot.tasks``) build ``TaskSpec`` values from these; the registry
(``evalcore.fewshot.registry``) holds them by name. Kept apart so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

DEMO_SEPARATOR = "\n\n"  # between demonstrations, as lm-evaluation-harness joins shots


@dataclass(frozen=True)
class Doc:
    """One scoring unit: an example (or a MultiRC answer option) with its gold label.

    Attributes:
        uid: Stable id inside its file, e.g. ``"12"`` or ``"3-q1-a4"`` (MultiRC options).
        record: Index of the JSONL record it came from; splits never cut a record in two.
        fields: Template fields (strings) for the patterns.
        label: Canonical gold label, one of ``choices``.
        choices: Candidate labels scored for this doc.
        question: Grouping id for question-level metrics (MultiRC exact match).
    """

    uid: str
    record: int
    fields: Mapping[str, str]
    label: str
    choices: tuple[str, ...]
    question: str = ""


@dataclass(frozen=True)
class Pattern:
    """A prompt pattern for in-context scoring.

    Attributes:
        name: Short stable name recorded in results.
        template: ``str.format`` template over the doc fields; the answer follows it directly.
        verbalizer: Canonical label -> continuation template (formatted with the doc fields),
            including the leading space that separates it from the prompt.
    """

    name: str
    template: str
    verbalizer: Mapping[str, str]

    def prompt(self, doc: Doc) -> str:
        """The prompt text for ``doc`` (no answer)."""
        return self.template.format(**doc.fields)

    def continuation(self, doc: Doc, label: str) -> str:
        """The continuation text that stands for ``label`` on ``doc``."""
        return self.verbalizer[label].format(**doc.fields)

    def demonstration(self, doc: Doc) -> str:
        """The prompt followed by the gold answer, used as an in-context example."""
        return self.prompt(doc) + self.continuation(doc, doc.label)


@dataclass(frozen=True)
class ProbePattern:
    """How a doc becomes text for the frozen-embedding linear probe.

    With ``text_b`` the features are ``[u, v, |u - v|, u * v]`` of the two embeddings
    (the SBERT/InferSent pair features, Reimers & Gurevych 2019); without, the embedding of
    ``text_a`` alone. For option tasks (COPA) ``text_b`` may use ``{choice}``, the option text.
    """

    name: str
    text_a: str
    text_b: str | None = None


@dataclass(frozen=True)
class TaskSpec:
    """A FewGLUE task declared as data.

    Attributes:
        name: Registry key, lower case (``"rte"``).
        directory: Folder name under the data dir (``"RTE"``).
        version: Bumped whenever patterns, verbalizers or doc building change.
        labels: Canonical label names for label tasks; empty for option tasks (COPA).
        metrics: Metric names; the task score is their mean (the SuperGLUE/FewNLU rule).
        patterns: At least two in-context patterns.
        probe_patterns: At least one probe pattern.
        to_docs: Turns one JSONL record (and its index) into docs.
        is_option_task: Choices are per-doc options (COPA) whose text is ``doc.fields[label]``;
            the probe scores them with a binary correct/incorrect classifier.
        group_by: Record field whose equal values must land in the same split half
            (WSC repeats one text with different spans); default: the record itself.
    """

    name: str
    directory: str
    version: int
    labels: tuple[str, ...]
    metrics: tuple[str, ...]
    patterns: tuple[Pattern, ...]
    probe_patterns: tuple[ProbePattern, ...]
    to_docs: Callable[[Mapping[str, Any], int], list[Doc]]
    is_option_task: bool = False
    group_by: Callable[[Mapping[str, Any]], str] | None = None
    positive_label: str = "true"  # for binary F1 (MultiRC F1a)

    def __post_init__(self) -> None:
        if len(self.patterns) < 2:
            raise ValueError(f"task {self.name!r} needs at least two patterns")
        names = [p.name for p in self.patterns]
        if len(set(names)) != len(names):
            raise ValueError(f"task {self.name!r} has duplicate pattern names: {names}")
        if not self.is_option_task:
            for pattern in self.patterns:
                if set(pattern.verbalizer) != set(self.labels):
                    raise ValueError(
                        f"task {self.name!r} pattern {pattern.name!r} verbalizes "
                        f"{sorted(pattern.verbalizer)}, expected {sorted(self.labels)}"
                    )
