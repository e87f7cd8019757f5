"""Running lm-eval task files through the same request table, model call and results document
as the FewGLUE runner (``evalcore.fewshot.runner``).

``run_task_files`` -> per task ``build_task_requests`` (prompts as lm-eval builds them, plain or
in the model's chat format) -> ``runner.run_model`` -> ``score_task`` (acc, acc_norm,
perplexity as lm-eval computes them) -> one results document whose task blocks carry
``"kind": "lm_eval"``.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalcore.digests import files_digest
from evalcore.fewshot.lm import LanguageModel, describe_model, describe_scoring
from evalcore.fewshot.lmeval import (
    LM_EVAL_FEWSHOT_SEED,
    ChatRenderer,
    DocView,
    FixedSampler,
    LmEvalSampler,
    LmEvalTask,
    Sampler,
    TaskFileError,
    features_of,
    load_task_file,
    read_split,
    render,
)
from evalcore.fewshot.runner import RequestTable, build_results, run_model

SAMPLER_OPTIONS = ("lm_eval", "fixed")


@dataclass
class TaskRequests:
    """One task's eval docs, their contexts and the request ids of each doc's continuations."""

    task: LmEvalTask
    docs: list[dict[str, Any]]
    contexts: list[str] = field(default_factory=list)
    request_ids: list[list[int]] = field(default_factory=list)
    golds: list[int] = field(default_factory=list)
    choice_chars: list[list[int]] = field(default_factory=list)


def build_task_requests(
    task: LmEvalTask,
    table: RequestTable,
    *,
    num_fewshot: int | None = None,
    seed: int = LM_EVAL_FEWSHOT_SEED,
    limit: int | None = None,
    sampler: str = "lm_eval",
    chat: ChatRenderer | None = None,
) -> TaskRequests:
    """Contexts and (context, continuation) requests of the first ``limit`` eval docs.

    Args:
        num_fewshot: Demonstrations per doc (default: the task file's ``num_fewshot``).
        seed: The few-shot sampler's seed (lm-eval's default 1234).
        sampler: ``"lm_eval"`` (the task file's sampler, as lm-eval draws it) or ``"fixed"``.
        chat: Renders chat messages with the model's template; demonstrations become
            alternating user/assistant turns (lm-eval ``--apply_chat_template
            --fewshot_as_multiturn``), and choices are scored without the target delimiter.
    """
    if sampler not in SAMPLER_OPTIONS:
        raise ValueError(f"sampler must be one of {SAMPLER_OPTIONS}, got {sampler!r}")
    k = task.num_fewshot if num_fewshot is None else num_fewshot
    docs = read_split(task, task.eval_split)[:limit]
    pool_split = task.fewshot_split
    pool = read_split(task, pool_split) if k and pool_split else []
    if k and len(pool) < k:
        raise TaskFileError(f"{task.path}: {k} shots asked for, the pool has {len(pool)} docs")
    view = DocView(task, features_of(docs + pool))
    draw: Sampler = (
        FixedSampler(pool, seed=seed)
        if sampler == "fixed"
        else LmEvalSampler(pool, seed=seed, kind=task.sampler)
    )
    exclude = task.splits["fewshot"] == task.splits["test"]  # lm-eval's condition, verbatim
    out = TaskRequests(task, docs)
    for doc in docs:
        demos = draw.sample(k, doc if exclude else None)
        context = _context(view, demos, doc, chat)
        out.contexts.append(context)
        _add_requests(out, view, table, doc, context, chat is not None)
    return out


def _context(
    view: DocView, demos: list[dict[str, Any]], doc: dict[str, Any], chat: ChatRenderer | None
) -> str:
    task = view.task
    description = render_description(task, doc)
    if chat is None:
        shots = "".join(
            f"{view.text(d)}{task.target_delimiter}{view.answer(d)}{task.fewshot_delimiter}"
            for d in demos
        )
        return description + shots + str(view.text(doc))
    messages = [{"role": "system", "content": description}] if description else []
    for demo in demos:
        messages += [
            {"role": "user", "content": str(view.text(demo))},
            {"role": "assistant", "content": view.answer(demo)},
        ]
    messages.append({"role": "user", "content": str(view.text(doc))})
    return chat(messages)


def render_description(task: LmEvalTask, doc: dict[str, Any]) -> str:
    """The task's ``description``, rendered on ``doc`` when it is a template."""
    return render(task.description, doc) if task.description else ""


def _add_requests(
    out: TaskRequests,
    view: DocView,
    table: RequestTable,
    doc: dict[str, Any],
    context: str,
    chat: bool,
) -> None:
    task = view.task
    if task.output_type == "loglikelihood":
        target = str(view.target(doc))
        out.request_ids.append([table.add(context, target)])
        out.golds.append(0)
        out.choice_chars.append([len(target)])
        return
    delimiter = "" if chat else task.target_delimiter
    choices = view.choices(doc)
    out.request_ids.append([table.add(context, f"{delimiter}{c}") for c in choices])
    out.golds.append(view.gold(doc))
    out.choice_chars.append([len(c) for c in choices])


def score_task(
    requests: TaskRequests, logliks: Sequence[float], greedy: Sequence[bool] | None
) -> dict[str, Any]:
    """Per-doc metrics averaged as lm-eval does (stderr = sample std / sqrt(n))."""
    task = requests.task
    values: dict[str, list[float]] = {name: [] for name in task.metrics}
    for ids, gold, chars in zip(requests.request_ids, requests.golds, requests.choice_chars):
        lls = [logliks[i] for i in ids]
        if "acc" in values and task.output_type == "loglikelihood":
            if greedy is None:
                raise ValueError("metric acc of a loglikelihood task needs greedy flags")
            values["acc"].append(float(greedy[ids[0]]))
        elif "acc" in values:
            values["acc"].append(float(_argmax(lls) == gold))
        if "acc_norm" in values:
            values["acc_norm"].append(float(_argmax([v / c for v, c in zip(lls, chars)]) == gold))
        if "perplexity" in values:
            values["perplexity"].append(lls[0])
    return {name: _summary(name, vals) for name, vals in values.items()}


def _argmax(values: list[float]) -> int:
    return max(range(len(values)), key=lambda i: (values[i], -i))  # first maximum, as np.argmax


def _summary(name: str, values: list[float]) -> dict[str, float]:
    if name == "perplexity":
        return {"value": math.exp(min(-statistics.fmean(values), 700.0))}
    mean = statistics.fmean(values)
    std = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std, "stderr": std / math.sqrt(len(values))}


def run_task_files(
    model: LanguageModel,
    paths: Sequence[str | Path],
    *,
    num_fewshot: int | None = None,
    seed: int = LM_EVAL_FEWSHOT_SEED,
    limit: int | None = None,
    sampler: str = "lm_eval",
    chat: bool = False,
    progress: bool = False,
    model_path: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``model`` on lm-eval task files; the results document of ``runner``.

    Raises:
        TaskFileError: On an unsupported or broken task file.
        ValueError: If ``chat`` is asked of a model without ``render_chat``.
    """
    started = time.time()
    renderer = _chat_renderer(model) if chat else None
    tokens_before = getattr(model, "tokens_processed", None)
    blocks: dict[str, Any] = {}
    for path in paths:
        task = load_task_file(path)
        table = RequestTable()
        requests = build_task_requests(
            task,
            table,
            num_fewshot=num_fewshot,
            seed=seed,
            limit=limit,
            sampler=sampler,
            chat=renderer,
        )
        greedy = _greedy(model, table.pairs) if _needs_greedy(task) else None
        logliks = run_model(model, table.pairs, progress=progress, description=task.name)
        blocks[task.name] = _task_block(task, requests, score_task(requests, logliks, greedy))
        blocks[task.name]["num_fewshot"] = task.num_fewshot if num_fewshot is None else num_fewshot
    protocol = {
        "name": "lm_eval_task_files",
        "fewshot_seed": seed,
        "sampler": sampler,
        "limit": limit,
        "chat_format": chat,
    }
    tokens = _tokens_delta(tokens_before, getattr(model, "tokens_processed", None))
    work = {"tokens_processed": tokens, "scoring": describe_scoring(model), "chat_format": chat}
    root = Path(paths[0]).parent if paths else Path(".")
    return build_results(
        "in_context", describe_model(model, model_path), blocks, protocol, root, started, work
    )


def _task_block(
    task: LmEvalTask, requests: TaskRequests, metrics: dict[str, Any]
) -> dict[str, Any]:
    headline = "acc" if "acc" in metrics else next(iter(metrics))
    return {
        "kind": "lm_eval",
        "metrics": metrics,
        "score": _score(metrics[headline]),
        "output_type": task.output_type,
        "task_file": str(task.path),
        "task_file_digest": task.digest,
        "file_digests": {
            split: files_digest(paths) for split, paths in sorted(task.data_files.items())
        },
        "test_docs": len(requests.docs),
        "requests": sum(len(ids) for ids in requests.request_ids),
    }


def _score(summary: dict[str, float]) -> dict[str, float] | None:
    return {"mean": summary["mean"], "std": summary["std"]} if "mean" in summary else None


def _tokens_delta(before: Any, after: Any) -> int | None:
    return after - before if isinstance(before, int) and isinstance(after, int) else None


def _needs_greedy(task: LmEvalTask) -> bool:
    return task.output_type == "loglikelihood" and "acc" in task.metrics


def _greedy(model: LanguageModel, pairs: Sequence[tuple[str, str]]) -> list[bool]:
    method = getattr(model, "greedy", None)
    if method is None:
        raise ValueError("metric acc of a loglikelihood task needs a model with greedy(pairs)")
    return [bool(flag) for flag in method(pairs)]


def _chat_renderer(model: LanguageModel) -> ChatRenderer:
    render_chat = getattr(model, "render_chat", None)
    if render_chat is None:
        raise ValueError("the chat format needs a model with render_chat(messages)")
    return render_chat  # type: ignore[no-any-return]
