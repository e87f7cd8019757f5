"""In-context few-shot scoring of a causal LM under the FewNLU Multi-Splits protocol.

``run_fewshot`` is the entry point (the Celery worker calls it); it chains the named steps
``prepare_task`` -> ``build_requests`` -> ``run_model`` -> ``score`` -> ``aggregate``.

Protocol (FewNLU, Zheng et al., ACL 2022, arXiv:2109.12742): the 64 labeled examples
(train + dev32) are split K times into 32 train / 32 dev; on each split the configuration
(pattern, k demonstrations, length normalization) is chosen on the dev half and measured on
``val.jsonl``; we report test mean ± std over splits, the dev-test Spearman correlation over the
candidate configurations, and how mean and std settle as splits are added.

Deviation from lm-evaluation-harness: each (split, pattern, k) uses ONE fixed set of k
demonstrations for all of its docs, drawn from that split's train half (as in the fixed-prompt
set-ups of Zhao et al. 2021, "Calibrate before use", arXiv:2102.09690). The variance over
demonstration sets then shows up as the std over splits, and every context of a (split, config)
shares one demonstration prefix, which ``models_zoo.scoring`` computes once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalcore.fewshot import metrics
from evalcore.fewshot.data import load_task_data, records_to_docs, resolve_data_dir
from evalcore.fewshot.lm import LanguageModel, describe_model, describe_scoring
from evalcore.fewshot.registry import DEMO_SEPARATOR, Doc, TaskSpec, get_task
from evalcore.fewshot.sampler import DemoSampler, Split, make_splits
from evalcore.fewshot.schema import FEWNLU_TASKS, SCHEMA_VERSION

logger = logging.getLogger(__name__)

DEFAULT_SHOTS = (0, 2)
NORMALIZATIONS = ("raw", "length")  # summed log-likelihood; per character (lm-eval acc_norm)
CHUNK_SIZE = 512  # pairs per model call; one progress-bar step


@dataclass(frozen=True)
class PreparedTask:
    """A task's docs and its Multi-Splits partitions."""

    spec: TaskSpec
    pool_docs: list[Doc]
    test_docs: list[Doc]
    splits: list[Split]
    digests: dict[str, str]
    test_records: int
    test_size: int

    def train_docs(self, split: Split) -> list[Doc]:
        """Pool docs on the train side of ``split``."""
        chosen = set(split.train)
        return [doc for doc in self.pool_docs if doc.record in chosen]

    def dev_docs(self, split: Split) -> list[Doc]:
        """Pool docs on the dev side of ``split``."""
        chosen = set(split.dev)
        return [doc for doc in self.pool_docs if doc.record in chosen]


@dataclass
class ScoringUnit:
    """The docs of one (split, config, part) and the request ids of each doc's choices."""

    split: int
    config: dict[str, Any]
    part: str  # "dev" or "test"
    docs: list[Doc]
    request_ids: list[list[int]] = field(default_factory=list)
    choice_chars: list[list[int]] = field(default_factory=list)


@dataclass
class RequestTable:
    """Unique (context, continuation) pairs; identical requests are scored once."""

    pairs: list[tuple[str, str]] = field(default_factory=list)
    ids: dict[tuple[str, str], int] = field(default_factory=dict)

    def add(self, context: str, continuation: str) -> int:
        """The id of the pair, adding it if new."""
        key = (context, continuation)
        if key not in self.ids:
            self.ids[key] = len(self.pairs)
            self.pairs.append(key)
        return self.ids[key]


def run_fewshot(
    model: LanguageModel,
    *,
    tasks: Sequence[str],
    splits: int = 4,
    seed: int = 0,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    progress: bool = False,
    shots: Sequence[int] = DEFAULT_SHOTS,
    model_path: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on FewGLUE tasks with in-context scoring under Multi-Splits.

    Args:
        model: Anything implementing ``LanguageModel.loglikelihood``.
        tasks: Task names (``"rte"``, ``"cb"`` ...).
        splits: K, the number of random train/dev partitions of the 64-example pool.
        seed: Run seed; split seeds and demonstration seeds derive from it.
        data_dir: FewGLUE folder (default: ``$LADDER_FEWGLUE_DIR`` or ``../shared/...``).
        limit: Evaluate only the first ``limit`` test records of each task.
        progress: Show a progress bar.
        shots: Candidate numbers of demonstrations k, chosen per split on dev.
        model_path: Recorded in the results' model block.

    Returns:
        The results document (see ``evalcore.fewshot.schema``).

    Raises:
        ValueError: For unknown tasks, bad ``splits``/``limit``/``shots``.
        FileNotFoundError: If the data directory or a task file is missing.
    """
    if not shots or min(shots) < 0:
        raise ValueError(f"shots must be non-negative numbers of demonstrations, got {shots}")
    started = time.time()
    root = resolve_data_dir(data_dir)
    specs = [get_task(name) for name in tasks]
    tokens_before = getattr(model, "tokens_processed", None)
    table_chars = 0
    results: dict[str, Any] = {}
    for spec in specs:
        prepared = prepare_task(spec, root, splits=splits, seed=seed, limit=limit)
        units, table = build_requests(prepared, shots=shots, seed=seed)
        table_chars += sum(len(c) + len(x) for c, x in table.pairs)
        logliks = run_model(model, table.pairs, progress=progress, description=spec.name)
        candidates = score(spec, units, logliks)
        results[spec.name] = aggregate(prepared, candidates, variants="normalization")
        results[spec.name]["patterns"] = describe_patterns(spec)
    protocol = protocol_block(splits, seed, limit, {"shots": sorted(set(shots))})
    tokens = _tokens_delta(tokens_before, getattr(model, "tokens_processed", None))
    work = {
        "requests_characters": table_chars,
        "tokens_processed": tokens,
        "scoring": describe_scoring(model),
    }
    return build_results(
        "in_context", describe_model(model, model_path), results, protocol, root, started, work
    )


def prepare_task(
    spec: TaskSpec, data_dir: Path, *, splits: int, seed: int, limit: int | None
) -> PreparedTask:
    """Load ``spec``'s files, build its docs and its K Multi-Splits partitions."""
    data = load_task_data(spec, data_dir, limit=limit)
    partitions = make_splits(data.pool, splits=splits, seed=seed, group_by=spec.group_by)
    return PreparedTask(
        spec=spec,
        pool_docs=records_to_docs(spec, data.pool),
        test_docs=records_to_docs(spec, data.test),
        splits=partitions,
        digests=data.digests,
        test_records=len(data.test),
        test_size=data.test_size,
    )


def build_requests(
    prepared: PreparedTask, *, shots: Sequence[int], seed: int
) -> tuple[list[ScoringUnit], RequestTable]:
    """Every (split, pattern, k) x (dev, test) scoring unit and the unique requests behind them.

    Demonstrations for a split come from its train half only, so dev scores never see dev docs.
    """
    table = RequestTable()
    units: list[ScoringUnit] = []
    spec = prepared.spec
    for split in prepared.splits:
        sampler = DemoSampler(split.seed, spec.name)
        train = prepared.train_docs(split)
        parts = {"dev": prepared.dev_docs(split), "test": prepared.test_docs}
        for pattern in spec.patterns:
            for k in sorted(set(shots)):
                demos = sampler.sample(train, k)
                prefix = "".join(pattern.demonstration(d) + DEMO_SEPARATOR for d in demos)
                config = {"pattern": pattern.name, "k": k, "demos": [d.uid for d in demos]}
                for part, docs in parts.items():
                    unit = ScoringUnit(split.index, config, part, docs)
                    for doc in docs:
                        context = prefix + pattern.prompt(doc)
                        conts = [pattern.continuation(doc, c) for c in doc.choices]
                        unit.request_ids.append([table.add(context, c) for c in conts])
                        unit.choice_chars.append([max(1, len(c.strip())) for c in conts])
                    units.append(unit)
    return units, table


def run_model(
    model: LanguageModel,
    pairs: Sequence[tuple[str, str]],
    *,
    progress: bool = False,
    description: str = "",
    chunk_size: int = CHUNK_SIZE,
) -> list[float]:
    """Log-likelihoods of ``pairs``, in order.

    Pairs are sent sorted by context so that requests sharing a demonstration prefix (and all
    choices of one doc) travel in the same call; the model batches within a call.
    """
    order = sorted(range(len(pairs)), key=lambda i: pairs[i])
    out = [0.0] * len(pairs)
    chunks = [order[i : i + chunk_size] for i in range(0, len(order), chunk_size)]
    for chunk in _progress(chunks, progress, description, len(pairs), chunk_size):
        values = model.loglikelihood([pairs[i] for i in chunk])
        if len(values) != len(chunk):
            raise ValueError(f"model returned {len(values)} scores for {len(chunk)} requests")
        for index, value in zip(chunk, values, strict=True):
            out[index] = float(value)
    return out


def score(
    spec: TaskSpec, units: Sequence[ScoringUnit], logliks: Sequence[float]
) -> dict[int, list[dict[str, Any]]]:
    """Per split, one candidate per (pattern, k, normalization) with dev and test metrics."""
    by_key: dict[tuple[int, str, int, str], dict[str, Any]] = {}
    for unit in units:
        for normalization in NORMALIZATIONS:
            preds = [
                _argmax_choice(doc, [logliks[r] for r in ids], chars, normalization)
                for doc, ids, chars in zip(unit.docs, unit.request_ids, unit.choice_chars)
            ]
            key = (unit.split, unit.config["pattern"], unit.config["k"], normalization)
            candidate = by_key.setdefault(
                key, {"config": {**unit.config, "normalization": normalization}}
            )
            candidate[unit.part] = metrics.task_metrics(spec, unit.docs, preds)
    candidates: dict[int, list[dict[str, Any]]] = {}
    for (split, *_), candidate in by_key.items():
        candidates.setdefault(split, []).append(candidate)
    return candidates


def _argmax_choice(doc: Doc, values: list[float], chars: list[int], normalization: str) -> str:
    if normalization == "length":
        values = [value / count for value, count in zip(values, chars, strict=True)]
    best = max(range(len(values)), key=lambda i: (values[i], -i))  # first choice wins ties
    return doc.choices[best]


def aggregate(
    prepared: PreparedTask,
    candidates: dict[int, list[dict[str, Any]]],
    *,
    variants: str | None = None,
) -> dict[str, Any]:
    """Pick each split's configuration on dev and summarise test scores over splits.

    Args:
        prepared: The task and its splits.
        candidates: Per split index, candidates with ``config``, ``dev`` and ``test`` metrics.
        variants: A config key (``"normalization"``) whose values also get a summary with that
            key held fixed (``by_normalization``).

    Returns:
        The task block of the results document.
    """
    spec = prepared.spec
    per_split = [_choose(split, candidates[split.index]) for split in prepared.splits]
    block = _summarise(spec, per_split)
    block.update(
        task_version=spec.version,
        test_records=prepared.test_records,
        test_docs=len(prepared.test_docs),
        test_size=prepared.test_size,
        file_digests=prepared.digests,
        baselines={"majority": _majority_baseline(prepared)},
        splits=per_split,
    )
    if variants:
        values = sorted({c["config"][variants] for cs in candidates.values() for c in cs})
        block[f"by_{variants}"] = {
            value: _summarise(
                spec,
                [
                    _choose(
                        split,
                        [c for c in candidates[split.index] if c["config"][variants] == value],
                    )
                    for split in prepared.splits
                ],
            )
            for value in values
        }
    return block


def _choose(split: Split, candidates: list[dict[str, Any]]) -> dict[str, Any]:
    rows = [
        {
            "config": c["config"],
            "dev_score": metrics.task_score(c["dev"]),
            "test_score": metrics.task_score(c["test"]),
            "test_metrics": c["test"],
        }
        for c in candidates
    ]
    best = max(range(len(rows)), key=lambda i: (rows[i]["dev_score"], -i))
    return {
        "index": split.index,
        "seed": split.seed,
        "train_records": list(split.train),
        "dev_records": list(split.dev),
        "chosen": rows[best]["config"],
        "dev_score": rows[best]["dev_score"],
        "test_score": rows[best]["test_score"],
        "test_metrics": rows[best]["test_metrics"],
        "dev_test_spearman": metrics.spearman(
            [r["dev_score"] for r in rows], [r["test_score"] for r in rows]
        ),
        "candidates": [{k: r[k] for k in ("config", "dev_score", "test_score")} for r in rows],
    }


def _summarise(spec: TaskSpec, per_split: list[dict[str, Any]]) -> dict[str, Any]:
    tests = [s["test_score"] for s in per_split]
    correlations = [s["dev_test_spearman"] for s in per_split if s["dev_test_spearman"] is not None]
    return {
        "metrics": {
            name: metrics.mean_std([s["test_metrics"][name] for s in per_split])
            for name in spec.metrics
        },
        "score": metrics.mean_std(tests),
        "dev_score": metrics.mean_std([s["dev_score"] for s in per_split]),
        "dev_test_spearman": metrics.mean_std(correlations) if correlations else None,
        # FewNLU Fig. 1: how mean and std settle as splits are added.
        "stability": [
            {"splits": n, **metrics.mean_std(tests[:n])} for n in range(1, len(tests) + 1)
        ],
    }


def _majority_baseline(prepared: PreparedTask) -> dict[str, Any]:
    """Predict the train half's most frequent label for every test doc, per split."""
    spec = prepared.spec
    per_split = []
    for split in prepared.splits:
        labels = [doc.label for doc in prepared.train_docs(split)]
        majority = max(sorted(set(labels)), key=labels.count)
        preds = [majority if majority in d.choices else d.choices[0] for d in prepared.test_docs]
        per_split.append(metrics.task_metrics(spec, prepared.test_docs, preds))
    return {
        "metrics": {n: metrics.mean_std([m[n] for m in per_split]) for n in spec.metrics},
        "score": metrics.mean_std([metrics.task_score(m) for m in per_split]),
    }


def describe_patterns(spec: TaskSpec) -> dict[str, Any]:
    """Pattern templates and verbalizers, recorded for reproducibility."""
    return {
        p.name: {"template": p.template, "verbalizer": dict(p.verbalizer)} for p in spec.patterns
    }


def protocol_block(
    splits: int, seed: int, limit: int | None, extra: dict[str, Any]
) -> dict[str, Any]:
    """The ``protocol`` block of the results document."""
    return {
        "name": "multi_splits",
        "splits": splits,
        "split_ratio": 0.5,
        "seed": seed,
        "limit": limit,
        "selection": "dev half task score (FewNLU: mean of the task's metrics)",
        **extra,
    }


def build_results(
    method: str,
    model_block: dict[str, Any],
    task_results: dict[str, Any],
    protocol: dict[str, Any],
    data_dir: Path,
    started: float,
    work: dict[str, Any],
) -> dict[str, Any]:
    """Assemble the results document with its FewNLU average and provenance."""
    from evalcore.fewshot.provenance import collect_provenance

    return {
        "schema_version": SCHEMA_VERSION,
        "method": method,
        "model": model_block,
        "protocol": protocol,
        "tasks": task_results,
        "average": average(task_results),
        "provenance": collect_provenance(data_dir, started, work),
    }


def average(task_results: dict[str, Any]) -> dict[str, Any] | None:
    """The FewNLU average: tasks weighted equally, each by its task score (CB and MultiRC count
    the mean of their two metrics). The std is over split indices of the per-split averages."""
    names = [
        name
        for name, block in task_results.items()
        if name in FEWNLU_TASKS and block.get("kind") != "lm_eval"
    ]
    if not names:
        return None
    splits = min(len(task_results[name]["splits"]) for name in names)
    per_split = [
        sum(task_results[name]["splits"][i]["test_score"] for name in names) / len(names)
        for i in range(splits)
    ]
    result = metrics.mean_std(per_split)
    return {**result, "tasks": names, "complete": set(names) == set(FEWNLU_TASKS)}


def _tokens_delta(before: Any, after: Any) -> int | None:
    if isinstance(before, int) and isinstance(after, int):
        return after - before
    return None


def _progress(
    chunks: list[list[int]], enabled: bool, description: str, total: int, chunk_size: int
) -> Iterable[list[int]]:
    if not enabled:
        yield from chunks
        return
    from tqdm.auto import tqdm

    with tqdm(total=total, desc=description, unit="req") as bar:
        for chunk in chunks:
            yield chunk
            bar.update(len(chunk))
