"""lm-evaluation-harness task files (YAML), read and prompted as lm-eval 0.4 does.

Supported: ``output_type`` ``multiple_choice`` (metrics ``acc``, ``acc_norm``) and
``loglikelihood`` (``acc`` = the target is the greedy continuation, ``perplexity``);
``doc_to_text`` / ``doc_to_target`` / ``doc_to_choice`` as field names or Jinja templates (a
sandboxed environment: templates cannot reach Python internals); ``target_delimiter``,
``fewshot_delimiter``, ``description``; ``training_split`` / ``validation_split`` /
``test_split`` / ``fewshot_split``; ``num_fewshot``; ``fewshot_config`` with ``sampler``
(``default`` or ``first_n``) and ``split``; ``dataset_path`` ``json`` or ``csv`` with local
``dataset_kwargs.data_files`` (relative paths are relative to the task file). Any other key is
refused with an error naming it.

Semantics follow lm-eval (``ConfigurableTask``): a field name wins over a template; a target
that renders as digits is a choice index; the few-shot pool is ``fewshot_split``, else the
training, validation, then test split; the eval docs are the test split, else validation. The
few-shot context is ``description + sum(text + target_delimiter + answer + fewshot_delimiter)
+ text``, each choice is scored as ``target_delimiter + choice``. The ``default`` sampler is one
``random.Random(seed)`` drawing ``sample(pool, k)`` per eval doc in order (``k + 1`` and the
eval doc removed when the pool is the eval split), so with lm-eval's fewshot seed (1234) the
prompts are lm-eval's, string for string.
"""

from __future__ import annotations

import ast
import csv
import json
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from jinja2 import StrictUndefined
from jinja2.sandbox import ImmutableSandboxedEnvironment

from evalcore.digests import text_digest

OUTPUT_TYPES = {"multiple_choice": ("acc", "acc_norm"), "loglikelihood": ("acc", "perplexity")}
SAMPLERS = ("default", "first_n")
DATASET_LOADERS = ("json", "csv")
LM_EVAL_FEWSHOT_SEED = 1234  # lm-eval's default --fewshot seed
TOP_KEYS = frozenset(
    {
        "task", "task_alias", "tag", "dataset_path", "dataset_name", "dataset_kwargs",
        "output_type", "training_split", "validation_split", "test_split", "fewshot_split",
        "doc_to_text", "doc_to_target", "doc_to_choice", "target_delimiter",
        "fewshot_delimiter", "description", "num_fewshot", "fewshot_config", "metric_list",
        "metadata",
    }
)  # fmt: skip
FEWSHOT_KEYS = frozenset({"sampler", "split"})
METRIC_KEYS = frozenset({"metric", "aggregation", "higher_is_better"})


class _TaskLoader(yaml.SafeLoader):
    """Safe YAML that reads lm-eval's ``!function`` tags as text (then refused by key)."""


_TaskLoader.add_constructor(
    "!function",
    lambda loader, node: f"!function {loader.construct_scalar(node)}",  # type: ignore[arg-type]
)


class TaskFileError(ValueError):
    """A task file that cannot be run; the message names the file and the key."""


@dataclass(frozen=True)
class LmEvalTask:
    """One task file, validated."""

    name: str
    path: Path
    digest: str
    output_type: str
    data_files: dict[str, list[Path]]
    loader: str
    splits: dict[str, str | None]  # training / validation / test / fewshot -> split name
    doc_to_text: Any
    doc_to_target: Any
    doc_to_choice: Any
    target_delimiter: str
    fewshot_delimiter: str
    description: str
    num_fewshot: int
    sampler: str
    metrics: tuple[str, ...]
    config: dict[str, Any] = field(repr=False)

    @property
    def eval_split(self) -> str:
        """The split scored: test, else validation (lm-eval's ``eval_docs``)."""
        split = self.splits["test"] or self.splits["validation"]
        assert split is not None  # checked by load_task_file
        return split

    @property
    def fewshot_split(self) -> str | None:
        """The few-shot pool: fewshot split, else training, validation, test."""
        for key in ("fewshot", "training", "validation", "test"):
            if self.splits[key]:
                return self.splits[key]
        return None


def load_task_file(path: str | Path) -> LmEvalTask:
    """Read and validate an lm-eval task YAML.

    Raises:
        TaskFileError: On a key Ladder does not support (named), a bad value or a missing file.
    """
    file = Path(path)
    text = file.read_text(encoding="utf-8")
    where = str(file)
    try:
        config = yaml.load(text, Loader=_TaskLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as error:
        raise TaskFileError(f"{where}: not valid YAML: {error}") from error
    if not isinstance(config, dict):
        raise TaskFileError(f"{where}: expected a mapping of task keys")
    _refuse_unknown(config, TOP_KEYS, where)
    output_type = config.get("output_type", "generate_until")
    if output_type not in OUTPUT_TYPES:
        raise TaskFileError(
            f"{where}: output_type {output_type!r} is not supported (use one of "
            f"{', '.join(OUTPUT_TYPES)})"
        )
    fewshot = config.get("fewshot_config") or {}
    _refuse_unknown(fewshot, FEWSHOT_KEYS, f"{where}: fewshot_config")
    sampler = fewshot.get("sampler", "default")
    if sampler not in SAMPLERS:
        raise TaskFileError(f"{where}: fewshot_config.sampler {sampler!r} is not one of {SAMPLERS}")
    splits = {
        "training": config.get("training_split"),
        "validation": config.get("validation_split"),
        "test": config.get("test_split"),
        "fewshot": fewshot.get("split") or config.get("fewshot_split"),
    }
    if not (splits["test"] or splits["validation"]):
        raise TaskFileError(f"{where}: needs a test_split or a validation_split")
    if output_type == "multiple_choice" and config.get("doc_to_choice") is None:
        raise TaskFileError(f"{where}: output_type multiple_choice needs doc_to_choice")
    return LmEvalTask(
        name=str(config.get("task") or file.stem),
        path=file,
        digest=text_digest(text),
        output_type=output_type,
        data_files=_data_files(config, file),
        loader=str(config.get("dataset_path")),
        splits=splits,
        doc_to_text=config.get("doc_to_text", ""),
        doc_to_target=config.get("doc_to_target"),
        doc_to_choice=config.get("doc_to_choice"),
        target_delimiter=str(config.get("target_delimiter", " ")),
        fewshot_delimiter=str(config.get("fewshot_delimiter", "\n\n")),
        description=str(config.get("description") or ""),
        num_fewshot=int(config.get("num_fewshot") or 0),
        sampler=sampler,
        metrics=_metrics(config, output_type, where),
        config=config,
    )


def _refuse_unknown(config: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    if not isinstance(config, Mapping):
        raise TaskFileError(f"{where}: expected a mapping")
    for key, value in config.items():
        if isinstance(value, str) and value.startswith("!function "):
            raise TaskFileError(f"{where}: key {key!r}: Python functions (!function) are not run")
        if key not in allowed:
            raise TaskFileError(
                f"{where}: key {key!r} is not supported by Ladder's task-file reader "
                f"(supported: {', '.join(sorted(allowed))})"
            )


def _data_files(config: Mapping[str, Any], file: Path) -> dict[str, list[Path]]:
    where = str(file)
    loader = config.get("dataset_path")
    if loader not in DATASET_LOADERS:
        raise TaskFileError(
            f"{where}: dataset_path {loader!r} is not supported; use 'json' or 'csv' with "
            "dataset_kwargs.data_files (hub datasets are never downloaded)"
        )
    kwargs = config.get("dataset_kwargs") or {}
    _refuse_unknown(kwargs, frozenset({"data_files"}), f"{where}: dataset_kwargs")
    files = kwargs.get("data_files")
    if not isinstance(files, Mapping) or not files:
        raise TaskFileError(f"{where}: dataset_kwargs.data_files must map split names to files")
    out: dict[str, list[Path]] = {}
    for split, names in files.items():
        paths = [names] if isinstance(names, str) else list(names)
        out[str(split)] = [p if p.is_absolute() else file.parent / p for p in map(Path, paths)]
        for resolved in out[str(split)]:
            if not resolved.is_file():
                raise TaskFileError(f"{where}: data file {str(resolved)!r} does not exist")
    return out


def _metrics(config: Mapping[str, Any], output_type: str, where: str) -> tuple[str, ...]:
    entries = config.get("metric_list") or [{"metric": name} for name in OUTPUT_TYPES[output_type]]
    names = []
    for entry in entries:
        _refuse_unknown(entry, METRIC_KEYS, f"{where}: metric_list entry")
        name = entry.get("metric")
        if name not in OUTPUT_TYPES[output_type]:
            raise TaskFileError(
                f"{where}: metric {name!r} is not supported for {output_type} "
                f"(use {', '.join(OUTPUT_TYPES[output_type])})"
            )
        if entry.get("aggregation", "mean") != "mean" and name != "perplexity":
            raise TaskFileError(f"{where}: metric {name!r}: only aggregation 'mean' is supported")
        names.append(str(name))
    return tuple(names)


# --- data and templates -----------------------------------------------------------------------


def read_split(task: LmEvalTask, split: str) -> list[dict[str, Any]]:
    """The records of ``split`` from the task's local files, in file order.

    Raises:
        TaskFileError: If the task file names no data file for ``split``.
    """
    if split not in task.data_files:
        raise TaskFileError(f"{task.path}: no data_files entry for split {split!r}")
    records: list[dict[str, Any]] = []
    for path in task.data_files[split]:
        records += _read_csv(path) if task.loader == "csv" else _read_json(path)
    return records


def _read_json(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8")
    stripped = text.lstrip()
    if stripped.startswith("["):
        return list(json.loads(stripped))
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows with columns typed as the ``datasets`` csv loader types them (int, float, str)."""
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    columns = list(rows[0]) if rows else []
    for column in columns:
        for cast in (int, float):
            try:
                values = [cast(row[column]) for row in rows]
            except ValueError:
                continue
            for row, value in zip(rows, values, strict=True):
                row[column] = value
            break
    return rows


def _regex_replace(string: str, pattern: str, repl: str, count: int = 0) -> str:
    return re.sub(pattern, repl, string, count=count)


_ENV = ImmutableSandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=True)
_ENV.filters["regex_replace"] = _regex_replace


def render(template: str, doc: Mapping[str, Any]) -> str:
    """A Jinja template rendered on ``doc`` in the sandbox (unknown names are errors)."""
    return _ENV.from_string(template).render(**doc)


@dataclass(frozen=True)
class DocView:
    """lm-eval's ``doc_to_text`` / ``doc_to_target`` / ``doc_to_choice`` for one task."""

    task: LmEvalTask
    features: frozenset[str]

    def text(self, doc: Mapping[str, Any]) -> Any:
        return self._resolve(self.task.doc_to_text, doc, lists=False)

    def target(self, doc: Mapping[str, Any]) -> Any:
        return self._resolve(self.task.doc_to_target, doc, lists=True)

    def _resolve(self, spec: Any, doc: Mapping[str, Any], *, lists: bool) -> Any:
        """A ``doc_to_*`` value: a literal as it stands, a column's value, or a template rendered
        on ``doc`` (digits become a choice index; with ``lists``, ``[...]`` becomes a list)."""
        if not isinstance(spec, str):
            return spec
        if spec in self.features:
            return doc[spec]
        rendered = render(spec, doc)
        if rendered.isdigit() and self.task.doc_to_choice is not None:
            return ast.literal_eval(rendered)
        if lists and len(rendered) >= 2 and rendered[0] == "[" and rendered[-1] == "]":
            try:
                return ast.literal_eval(rendered)
            except (SyntaxError, ValueError):
                return rendered
        return rendered

    def choices(self, doc: Mapping[str, Any]) -> list[str]:
        spec = self.task.doc_to_choice
        if isinstance(spec, list):
            return [str(c) for c in spec]
        if isinstance(spec, dict):
            return [str(c) for c in spec.values()]
        if spec in self.features:
            return list(doc[spec])
        return list(ast.literal_eval(render(str(spec), doc)))

    def answer(self, doc: Mapping[str, Any]) -> str:
        """The answer text of a demonstration (a choice picked by index, or the target)."""
        target = self.target(doc)
        choices = self.choices(doc) if self.task.doc_to_choice is not None else None
        if choices and isinstance(target, int):
            return choices[target]
        return str(target[0] if isinstance(target, list) else target)

    def gold(self, doc: Mapping[str, Any]) -> int:
        """The index of the right choice."""
        target = self.target(doc)
        return target if isinstance(target, int) else self.choices(doc).index(str(target))


def features_of(records: Sequence[Mapping[str, Any]]) -> frozenset[str]:
    """Column names (a field name in a ``doc_to_*`` wins over a template)."""
    return frozenset(key for record in records for key in record)


# --- few-shot sampling ------------------------------------------------------------------------


class LmEvalSampler:
    """lm-eval's ``default`` (seeded ``Random.sample`` per doc) or ``first_n`` sampler."""

    def __init__(self, pool: list[dict[str, Any]], *, seed: int, kind: str = "default") -> None:
        self.pool = pool
        self.kind = kind
        self.rnd = random.Random(seed)

    def sample(self, k: int, eval_doc: dict[str, Any] | None) -> list[dict[str, Any]]:
        """``k`` demonstrations; ``eval_doc`` (when the pool is the eval split) is left out."""
        if k == 0:
            return []
        if self.kind == "first_n":
            pool = [d for d in self.pool if d != eval_doc] if eval_doc is not None else self.pool
            return pool[:k]
        if eval_doc is None:
            return self.rnd.sample(self.pool, k)
        drawn = [d for d in self.rnd.sample(self.pool, k + 1) if d != eval_doc][:k]
        if len(drawn) < k:
            drawn = self.rnd.sample([d for d in self.pool if d != eval_doc], k)
        return drawn


class FixedSampler:
    """Ladder's option: one seeded draw of ``k`` demonstrations shared by every eval doc, so
    all contexts share one demonstration prefix (computed once by the model's prefix cache)."""

    def __init__(self, pool: list[dict[str, Any]], *, seed: int) -> None:
        self.pool = pool
        self.seed = seed
        self._draws: dict[int, list[dict[str, Any]]] = {}

    def sample(self, k: int, eval_doc: dict[str, Any] | None) -> list[dict[str, Any]]:
        if k not in self._draws:
            self._draws[k] = random.Random(f"{self.seed}:{k}").sample(self.pool, k) if k else []
        return [d for d in self._draws[k] if d != eval_doc]


Sampler = LmEvalSampler | FixedSampler
ChatRenderer = Callable[[list[dict[str, str]]], str]
