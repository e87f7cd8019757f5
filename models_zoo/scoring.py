"""Log-likelihood scoring of token sequences for ``models_zoo.serving``: a prefix tree over KV caches.

A request is ``(tokens, count)``: the model input is ``tokens[:-1]`` and the last ``count``
tokens are the continuation whose log-probabilities are summed.

Fast path (each step is tested against the plain path, ``prefix_cache=False``):

1. Requests whose model input is identical (the choices of one doc when each answer is one
   token; in general context + continuation[:-1]) share ONE forward pass, as in
   lm-evaluation-harness's one-token-continuation grouping.
2. Inputs are sorted and walked as a prefix tree: a run of inputs sharing a long token prefix
   (the demonstration block of a (split, config), then, below it, one doc's prompt under its
   several multi-token answers, or a MultiRC paragraph) has that prefix run once, batch 1, and
   is scored on the extended KV cache, recursively. No prompt token is computed twice.
3. The remaining suffixes of a node are batched by similar length (padding under
   1/``PADDING_SLACK``) up to ``batch_size`` rows and a token budget; they are right-padded,
   which needs no attention mask under causal attention because no real position reads a pad.
4. Only the positions that score a continuation token go through the LM head, so the
   (batch x time x vocab) logits tensor is never materialised.

Invariant mode (``chunk_tokens`` > 0, the default of ``models_zoo.serving``): floating-point
kernels give bits that depend on shapes (a prefix run as one pass or as two, a row padded or
not, a head over 1 or 8 rows), so a score would move with the other requests of a call, the
batch size and, on resume, with what was already cached. Here every input is cut at fixed
multiples of ``chunk_tokens`` and at the end of its context; each chunk runs on the cache of
the chunks before it, and is shared by every input with the same tokens up to its end (the
choices of one doc share their whole context). Chunks of equal width at equal depth run as rows
of one pass, each row on its own cache (at k = 0, the contexts of different docs), and the
scored positions of a whole call go through the head together: on CPU (the tests check it) a
GEMM row, an attention row and a layer-norm row come out the same whatever the other rows, once
a pass has ``MIN_HEAD_ROWS`` rows. Each request then gets the same per-row arithmetic whatever
else is scored with it: fp32 results are bit-identical for any batch size, order or subset, and
equal to the request scored alone (``tests/models_zoo/test_scoring.py``, also on random token
requests). Two shapes are made canonical so that more chunks share a pass, each fixed by the
chunk alone: a context's tail (from a boundary to the context's end) is right-padded to a
multiple of ``TAIL_ALIGN`` tokens (its real tokens never read the pads), and a last chunk that
starts after a context's end (at k = 0, each doc's first answer token) waits for others of its
width and runs on its cache right-padded to the next boundary past its depth, under an
attention mask, beside chunks from other depths (on CPU, for GPT-2 and Llama, each row reads
its own cache in place instead, and last chunks of one width share a pass whatever their depth:
``models_zoo.ragged_attention``). Chunks are walked in waves of ``WAVE_PASSES`` passes, so
the next level's chunks of several passes share passes too, and in every chunk pass the last
layer runs its MLP only at the positions whose states are read (``mlp_only_at``; at k = 0
about one position per row). A pass copies its rows' caches into one buffer with room for what
follows; on CPU for GPT-2 and Llama, rows that go on with full chunks keep their pass's row
order, so the next pass writes into the same buffers in place (``_continue_in_place``) and a
long context is not copied again at every chunk. The cost: contexts that share only a
demonstration block recompute up to ``chunk_tokens`` - 1 of its tokens, and the pads (8 % of
the positions run at k = 0 on the bench, bench/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import copy
import functools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

from models_zoo import ragged_attention

# A batch's padding stays under 1/PADDING_SLACK of its tokens: on CPU, padded positions cost
# as much as real ones and batching gains little, so similar lengths matter more than size.
PADDING_SLACK = 8
TOKEN_BUDGET = 8192  # maximum padded tokens per forward batch
# CPU GEMMs of few rows take other kernels (other rounding) than longer ones, whose rows are
# independent of the row count: head inputs (and the last layer's MLP rows) are padded to at
# least this many rows. Where the short kernels end depends on the CPU and on K: on an AMD EPYC
# (MKL's AVX2 path) 4 rows were enough; on an Intel Xeon with AVX-512, MKL 2024.2 (torch
# 2.13.0) gives a row the bits of a long GEMM from 3 rows at K = 64, 6 at K = 128, 11 at
# K = 256 and 16 from K = 384 up to 4096 (measured for M up to 8192, one thread).
MIN_HEAD_ROWS = 16
HEAD_ROWS = 512  # scored positions queued before invariant mode runs them through the head
# Invariant mode right-pads a chunk that ends short of a boundary (a context's tail) to a
# multiple of this many tokens, so that tails of different widths share a pass.
TAIL_ALIGN = 16
# Invariant mode runs up to this many passes of one width and depth before walking their
# children, so that the next level's chunks (at k = 0, the tails of different docs) fill passes
# from several batches; it bounds the caches held at once.
WAVE_PASSES = 4

Request = tuple[list[int], int]  # (context + continuation tokens, continuation length)


@dataclass(frozen=True)
class _Sequence:
    """One unique model input and the requests scored on it."""

    tokens: tuple[int, ...]
    requests: tuple[tuple[int, tuple[int, ...]], ...]  # (request index, continuation tokens)
    context_end: int = 0  # where the requests' context ends: a chunk boundary of its own

    @property
    def free_prefix(self) -> int:
        """How many leading positions no request reads a prediction from."""
        return len(self.tokens) - max(len(cont) for _, cont in self.requests)


class PrefixTreeScorer:
    """Scores requests on a causal LM, sharing every common token prefix through KV caches.

    Args:
        model: A transformers causal LM (``base_model`` + output embeddings).
        cache_argument: The forward argument that takes a cache (``past_key_values``/``cache``).
        prefix_cache: Run shared prefixes once; off gives the plain batched path.
        split_head: Run only the scored positions through the LM head.
        min_prefix_tokens: Fewest recomputed tokens a shared prefix must save to get its own pass.
        chunk_tokens: Invariant mode's chunk length (0: the batched prefix tree; needs
            ``prefix_cache`` and ``split_head``).
        ragged: On CPU, where the model allows it (``models_zoo.ragged_attention``), invariant
            mode's last chunks read their rows' caches in place and its passes read
            grouped-query heads in place; off: a padded cache copy and transformers' SDPA.
    """

    def __init__(
        self,
        model: Any,
        *,
        cache_argument: str,
        prefix_cache: bool = True,
        split_head: bool = True,
        min_prefix_tokens: int = 32,
        pad_token: int = 0,
        chunk_tokens: int = 0,
        ragged: bool = True,
    ) -> None:
        self.model = model
        self.device = next(model.parameters()).device
        self.cache_argument = cache_argument
        self.prefix_cache = prefix_cache
        self.split_head = split_head
        self.min_prefix_tokens = min_prefix_tokens
        self.pad_token = pad_token
        self.chunk_tokens = chunk_tokens if prefix_cache and split_head else 0
        self.ragged = ragged and ragged_attention.supports(model)
        config = model.config
        self.max_positions: int | None = getattr(config, "n_positions", None) or getattr(
            config, "max_position_embeddings", None
        )
        self.tokens_processed = 0
        self.greedy: list[bool] = []  # per request of the last ``score``: every token argmax
        # Invariant mode's head queue: states of scored positions, their targets and owners.
        self._head_states: list[torch.Tensor] = []
        self._head_targets: list[int] = []
        self._head_owners: list[int] = []
        # Invariant mode's last chunks that start off a chunk boundary, by (width, padded
        # cache length): run together on right-padded caches (see ``_defer_last_chunks``).
        self._last_chunks: dict[tuple[int, int], list[_Chunk]] = {}
        self._serial = 0  # chunk passes run so far (orders the rows that go on)

    def score(
        self, requests: Sequence[Request], *, batch_size: int, token_budget: int = TOKEN_BUDGET
    ) -> list[float]:
        """Summed continuation log-probabilities, one per request (0.0 for an empty one)."""
        out = [0.0] * len(requests)
        self.greedy = [True] * len(requests)
        sequences = _sequences(requests)
        with torch.inference_mode():
            if self.chunk_tokens:
                self._walk_chunks([(sequences, None)], 0, out, batch_size)
                for key in sorted(self._last_chunks):
                    self._run_last_chunks(self._last_chunks.pop(key), key, out)
                self._flush_head(out)
            else:
                self._score_node(sequences, 0, None, out, (batch_size, token_budget))
        return out

    def _walk_chunks(
        self,
        nodes: list[tuple[list[_Sequence], Any]],
        depth: int,
        out: list[float],
        batch_size: int,
    ) -> None:
        """Invariant mode: run the next chunk of each input of ``nodes`` (sequences sharing
        ``tokens[:depth]``, with its cache) up to the next multiple of ``chunk_tokens``, or to
        its context's end if that comes first, once per distinct token content and node; queue
        the positions that fall in it for the head, and walk the inputs that go on, on the
        extended caches. The boundaries depend on an input's own tokens only. Chunks of equal
        width run as rows of one batch whichever node they come from (each row reads its own
        node's cache): rows are computed independently once a pass has ``MIN_HEAD_ROWS``
        tokens, so short batches get copies of a row."""
        by_width: dict[int, list[tuple[tuple[int, ...], list[_Sequence], Any]]] = {}
        for sequences, cache in nodes:
            groups: dict[tuple[int, ...], list[_Sequence]] = {}
            for sequence in sequences:
                end = (depth // self.chunk_tokens + 1) * self.chunk_tokens
                if depth < sequence.context_end < end:
                    end = sequence.context_end  # the choices of one context share all of it
                groups.setdefault(sequence.tokens[depth:end], []).append(sequence)
            for chunk, members in groups.items():
                width = self._padded_width(len(chunk), depth)
                by_width.setdefault(width, []).append((chunk, members, cache))
        for width, items in sorted(by_width.items()):
            items = self._defer_last_chunks(items, depth, out, batch_size)
            batches = self._batches(items, depth, width, batch_size)
            for start in range(0, len(batches), WAVE_PASSES):
                children = []
                for batch in batches[start : start + WAVE_PASSES]:
                    children += self._run_chunks(batch, depth, width, out)
                for end in sorted({end for end, _, _ in children}):
                    level = [(members, cache) for e, members, cache in children if e == end]
                    self._walk_chunks(level, end, out, batch_size)

    def _batches(
        self,
        items: list[tuple[tuple[int, ...], list[_Sequence], Any]],
        depth: int,
        width: int,
        batch_size: int,
    ) -> list[list[tuple[tuple[int, ...], list[_Sequence], Any]]]:
        """The passes of ``items`` (chunks of one width at ``depth``), up to ``batch_size`` rows
        each. With ``self.ragged``, full chunks (the ones that go on) run in the row order of
        the pass they continue, never two such passes in one, and those at depth 0 longest
        first: a pass's rows that go on with full chunks are then the leading rows of its
        cache buffers, and the next pass writes into those buffers in place
        (:func:`_continue_in_place`) instead of copying every row's cache again (a copy that
        grows with the square of the context; the pass after depth 0 copies once, with room
        for the rest). Row order does not change a row's bits."""
        if not (self.ragged and width == self.chunk_tokens and depth % width == 0):
            items = sorted(items, key=lambda item: item[0])
            return [items[i : i + batch_size] for i in range(0, len(items), batch_size)]

        def order(item: tuple[tuple[int, ...], list[_Sequence], Any]) -> tuple[Any, ...]:
            chunk, members, cache = item
            if cache is None:  # depth 0: the longest inputs first
                return (0, -max(len(s.tokens) for s in members), chunk)
            parent, row = getattr(cache, "_ladder_row", (None, 0))
            return (getattr(parent, "_ladder_serial", -1), row, chunk)

        batches: list[list[tuple[tuple[int, ...], list[_Sequence], Any]]] = []
        previous = None
        for item in sorted(items, key=order):
            parent = getattr(item[2], "_ladder_row", (None,))[0]
            if not batches or len(batches[-1]) >= batch_size or parent is not previous:
                batches.append([])
            batches[-1].append(item)
            previous = parent
        return batches

    def _padded_width(self, width: int, depth: int) -> int:
        """The width a chunk of ``width`` tokens at ``depth`` runs at: a chunk that starts on a
        boundary and ends short of the next one (a context's tail) is right-padded to a
        multiple of ``TAIL_ALIGN`` (at most ``chunk_tokens``). It depends on the chunk alone;
        its real tokens never read the padding (causal attention)."""
        if depth % self.chunk_tokens or not TAIL_ALIGN:
            return width
        padded = min(-(-width // TAIL_ALIGN) * TAIL_ALIGN, self.chunk_tokens)
        if self.max_positions is not None:  # learned position embeddings end there
            padded = min(padded, self.max_positions - depth)
        return max(padded, width)

    def _defer_last_chunks(
        self,
        items: list[tuple[tuple[int, ...], list[_Sequence], Any]],
        depth: int,
        out: list[float],
        batch_size: int,
    ) -> list[tuple[tuple[int, ...], list[_Sequence], Any]]:
        """Take out of ``items`` the chunks that start off a chunk boundary (after a context's
        end) and end every member; returns the others. The chunks taken wait for others of the
        same width and padded cache length (the depth rounded up past the next boundary, so it
        depends on the chunk alone) from other depths, and run as rows of one pass on caches
        right-padded to that length (``_run_last_chunks``): at k = 0, the first continuation
        token of every doc in a few passes instead of one pass per doc."""
        if depth % self.chunk_tokens == 0:
            return items
        kept = []
        length = (depth // self.chunk_tokens + 1) * self.chunk_tokens
        for chunk, members, cache in items:
            if any(len(s.tokens) > depth + len(chunk) for s in members):
                kept.append((chunk, members, cache))
                continue
            # Ragged passes read caches of any length: one key per width.
            key = (len(chunk), 0 if self.ragged else length)
            waiting = self._last_chunks.setdefault(key, [])
            waiting.append(_Chunk(chunk, members, cache, depth))
            if len(waiting) >= max(batch_size, TOKEN_BUDGET // (length + len(chunk))):
                self._run_last_chunks(self._last_chunks.pop(key), key, out)
        return kept

    def _run_last_chunks(
        self, chunks: list[_Chunk], key: tuple[int, int], out: list[float]
    ) -> None:
        """One pass over last chunks of one width from different depths: row ``i`` reads its
        node's cache, right-padded with zeros to ``length`` (more than its depth, so the
        attention mask always masks something and keeps one kernel), or read in place in a
        ragged pass (``self.ragged``; ``length`` 0), and sits at positions ``depth_i ..``;
        queues the scored positions for the head."""
        width, length = key
        chunks = sorted(chunks, key=lambda c: (c.tokens, c.depth))
        rows = max(len(chunks), -(-MIN_HEAD_ROWS // width))  # at least MIN_HEAD_ROWS tokens
        padded = chunks + [chunks[0]] * (rows - len(chunks))
        ids = torch.tensor([c.tokens for c in padded], device=self.device)
        depths = torch.tensor([c.depth for c in padded], device=self.device)
        kwargs = {
            "input_ids": ids,
            "position_ids": depths[:, None] + torch.arange(width, device=self.device),
        }
        caches = [c.cache for c in padded]
        if self.ragged:  # each row reads its own cache in place (models_zoo.ragged_attention)
            kwargs[self.cache_argument] = ragged_attention.ragged_cache(caches[0], caches)
        else:
            columns = torch.arange(length + width, device=self.device)
            # (rows, length + width): a row's own cache, not its padding, and the new tokens
            mask = (columns[None, :] < depths[:, None]) | (columns[None, :] >= length)
            kwargs[self.cache_argument] = _padded_caches(caches, length, width)
            kwargs["attention_mask"] = mask.long()
        scored = [_scored(list(c.members), c.depth, width) for c in chunks]
        result = self._forward(kwargs, scored, width)
        self.tokens_processed += width * len(chunks)
        for row, positions in enumerate(scored):
            self._queue_positions(result.last_hidden_state[row], positions, out)

    def _run_chunks(
        self,
        items: list[tuple[tuple[int, ...], list[_Sequence], Any]],
        depth: int,
        width: int,
        out: list[float],
    ) -> list[tuple[int, list[_Sequence], Any]]:
        """One forward pass over chunks of (padded) ``width`` (each on its own node's cache);
        returns the nodes one level down: where they start, the members that go on, and
        their row of the new cache, cut to the chunk's real tokens."""
        rows = max(len(items), -(-MIN_HEAD_ROWS // width))  # at least MIN_HEAD_ROWS tokens
        padded = items + [items[0]] * (rows - len(items))
        ids = torch.full((rows, width), self.pad_token, dtype=torch.long)
        for row, (chunk, _, _) in enumerate(padded):
            ids[row, : len(chunk)] = torch.tensor(chunk)
        caches = [cache for _, _, cache in padded] if depth else None
        # With ``self.ragged``, buffers get room for the rows' whole remaining inputs, so the
        # passes that go on can write into them in place (see ``_batches``).
        room = width
        if self.ragged:
            room = max(max(len(s.tokens) for s in m) - depth for _, m, _ in items)
        kwargs = self._inputs(ids.to(self.device), depth, caches, reserve=width, room=room)
        scored = [_scored(members, depth, len(chunk)) for chunk, members, _ in items]
        result = self._forward(kwargs, scored, width)
        self.tokens_processed += sum(len(chunk) for chunk, _, _ in items)
        child_cache = getattr(result, "cache", None) or result.past_key_values
        self._serial += 1
        child_cache._ladder_serial = self._serial
        children = []
        for row, (chunk, members, _) in enumerate(items):
            end = depth + len(chunk)
            self._queue_positions(result.last_hidden_state[row], scored[row], out)
            longer = [s for s in members if len(s.tokens) > end]
            if longer:
                children.append((end, longer, _row_cache(child_cache, row, end)))
        return children

    def _forward(self, kwargs: dict[str, Any], scored: list[_Scored], width: int) -> Any:
        """The base model's pass (with a cache) over ``kwargs``' rows of ``width``, whose last
        layer runs its MLP only at the positions whose states are read (``scored``, row by
        row; see :func:`mlp_only_at`), with ``models_zoo.ragged_attention``'s attention where
        ``self.ragged``."""
        flat = [row * width + column for row, s in enumerate(scored) for column in s[0]]
        if flat:  # at least MIN_HEAD_ROWS rows: GEMM rows then do not depend on the row count
            flat += flat[:1] * (MIN_HEAD_ROWS - len(flat))
        # On CPU, GPT-2 and Llama: ragged last chunks and grouped-query heads read in place.
        attention = ragged_attention.ragged_pass(self.model) if self.ragged else None
        with mlp_only_at(self.model.base_model, flat), attention or contextlib.nullcontext():
            return self.model.base_model(**kwargs, use_cache=True)

    def _queue_positions(self, hidden: torch.Tensor, scored: _Scored, out: list[float]) -> None:
        """Queue one chunk's states (``hidden``, from its first position) at the ``scored``
        columns, with their targets and owners; the head runs over many chunks at once."""
        cols, targets, owners = scored
        if cols:
            self._head_states.append(hidden[list(cols)])
            self._head_targets += targets
            self._head_owners += owners
            if len(self._head_targets) >= HEAD_ROWS:
                self._flush_head(out)

    def _flush_head(self, out: list[float]) -> None:
        """Run the queued states through the LM head (in one GEMM of at least
        ``MIN_HEAD_ROWS`` rows, whose rows do not depend on the row count) and score them."""
        if not self._head_states:
            return
        states = torch.cat(self._head_states)
        if len(states) < MIN_HEAD_ROWS:
            states = torch.cat([states, states[:1].expand(MIN_HEAD_ROWS - len(states), -1)])
        logits = self.model.get_output_embeddings()(states)
        targets, owners = self._head_targets, self._head_owners
        self._add(logits[: len(targets)], targets, owners, out)
        self._head_states, self._head_targets, self._head_owners = [], [], []

    def _score_node(
        self,
        sequences: list[_Sequence],
        depth: int,
        cache: Any,
        out: list[float],
        limits: tuple[int, int],
    ) -> None:
        """Score sequences sharing ``tokens[:depth]``, whose KV states are in ``cache``.

        A run of sequences sharing enough further tokens gets those tokens run once, batch 1,
        and is scored recursively on the extended cache; the rest are scored in batches here.
        """
        leaves: list[_Sequence] = []
        for run, shared in _runs(sequences, depth):
            saved = (len(run) - 1) * (shared - depth)  # tokens not recomputed
            if self.prefix_cache and len(run) > 1 and saved >= self.min_prefix_tokens:
                child = self._extend(cache, run[0].tokens[depth:shared], depth)
                self._score_node(run, shared, child, out, limits)
            else:
                leaves.extend(run)
        for batch in _batches(leaves, depth, *limits):
            self._score_batch(batch, depth, cache, out)

    def _extend(self, cache: Any, tokens: tuple[int, ...], start: int) -> Any:
        """A new cache holding ``cache`` followed by the KV states of ``tokens``."""
        caches = None if cache is None else [cache]
        kwargs = self._inputs(torch.tensor([tokens], device=self.device), start, caches)
        result = self.model.base_model(**kwargs, use_cache=True)
        self.tokens_processed += len(tokens)
        return getattr(result, "cache", None) or result.past_key_values

    def _inputs(
        self,
        ids: torch.Tensor,
        start: int,
        caches: list[Any] | None,
        reserve: int = 0,
        room: int = 0,
    ) -> dict[str, Any]:
        """Forward arguments for ``ids`` (rows, width) at positions ``start ..``; row ``i``
        continues ``caches[i]`` (batch-1 caches of length ``start``), or no cache. With
        ``reserve`` (the width), the stacked cache has room for the pass's new positions (a
        copy gets ``room`` if that is more)."""
        kwargs: dict[str, Any] = {"input_ids": ids}
        if caches is not None:
            # The forward pass appends to the cache it is given: each call gets its own copy,
            # or the buffers the rows' caches are views of, where it may write in place.
            kwargs[self.cache_argument] = _stack_caches(caches, reserve, room)
            rows, width = ids.shape
            positions = torch.arange(start, start + width, device=self.device)
            kwargs["position_ids"] = positions.unsqueeze(0).expand(rows, width)
        return kwargs

    def _score_batch(
        self, batch: list[_Sequence], depth: int, cache: Any, out: list[float]
    ) -> None:
        width = max(len(s.tokens) for s in batch) - depth
        ids = torch.full((len(batch), width), self.pad_token, dtype=torch.long)
        for row, sequence in enumerate(batch):
            suffix = sequence.tokens[depth:]
            ids[row, : len(suffix)] = torch.tensor(suffix)
        caches = None if cache is None else [cache] * len(batch)
        kwargs = self._inputs(ids.to(self.device), depth, caches)
        kwargs["use_cache"] = cache is not None
        self.tokens_processed += sum(len(s.tokens) - depth for s in batch)
        rows, cols, targets, owners = _targets(batch, depth)
        if self.split_head:
            hidden = self.model.base_model(**kwargs).last_hidden_state
            logits = self.model.get_output_embeddings()(hidden[rows, cols])
        else:
            logits = self.model(**kwargs).logits[rows, cols]
        self._add(logits[: len(targets)], targets, owners, out)

    def _add(
        self, logits: torch.Tensor, targets: list[int], owners: list[int], out: list[float]
    ) -> None:
        """Add each row's target log-probability to its owner; note non-greedy tokens."""
        logprobs = torch.log_softmax(logits.float(), dim=-1)
        index = torch.tensor(targets, device=self.device)
        picked = logprobs[torch.arange(len(targets), device=index.device), index]
        hits = (logprobs.argmax(dim=-1) == index).tolist()
        for owner, value, hit in zip(owners, picked.tolist(), hits, strict=True):
            out[owner] += value
            self.greedy[owner] = self.greedy[owner] and hit


@dataclass(frozen=True)
class _Chunk:
    """A last chunk waiting for a padded pass: its tokens, the inputs it ends, their cache."""

    tokens: tuple[int, ...]
    members: list[_Sequence]
    cache: Any  # batch-1 cache of the ``depth`` tokens before the chunk
    depth: int


_Scored = tuple[list[int], list[int], list[int]]  # a chunk's scored columns, targets, owners


def _scored(members: list[_Sequence], start: int, width: int) -> _Scored:
    """The columns of a chunk of ``width`` at positions ``start ..`` whose states predict
    continuation tokens of ``members``, with those tokens and their requests."""
    cols, targets, owners = [], [], []
    for sequence in members:
        end = len(sequence.tokens)  # the input position after the last one
        for index, cont in sequence.requests:
            for offset, token in enumerate(cont):
                position = end - len(cont) + offset
                if start <= position < start + width:
                    cols.append(position - start)
                    targets.append(token)
                    owners.append(index)
    return cols, targets, owners


def _last_layer(base_model: Any) -> Any:
    """The last decoder layer of a transformers base model, if it has a position-wise
    ``mlp`` (GPT-2's ``h``, Llama's ``layers``), else ``None``."""
    layers = getattr(base_model, "layers", None) or getattr(base_model, "h", None)
    if not isinstance(layers, torch.nn.ModuleList) or not len(layers):
        return None
    layer = layers[-1]
    return layer if isinstance(getattr(layer, "mlp", None), torch.nn.Module) else None


@contextmanager
def mlp_only_at(base_model: Any, positions: list[int] | torch.Tensor) -> Iterator[None]:
    """Within the block, the last decoder layer's MLP runs only at ``positions`` (flat indices
    into its (rows, width) input), in one GEMM; the other positions get zeros. Their states
    are never read: the next chunks need only that layer's KV states, computed before its MLP,
    and the MLP is position-wise, so each state read is the full pass's. A model without a
    plain ``mlp`` module in its last layer (or one whose forward is already patched, by
    offload hooks, say) runs unchanged."""
    layer = _last_layer(base_model)
    if layer is None or "forward" in vars(layer.mlp):
        yield
        return
    mlp = layer.mlp
    mlp.forward = functools.partial(_mlp_rows, mlp.forward, positions)
    try:
        yield
    finally:
        del mlp.forward


def _mlp_rows(
    forward: Any, positions: list[int] | torch.Tensor, hidden: torch.Tensor
) -> torch.Tensor:
    out = hidden.new_zeros(hidden.shape)
    if len(positions) == 0:
        return out
    index = torch.as_tensor(positions, device=hidden.device)
    flat = hidden.reshape(-1, hidden.shape[-1])
    out.view(-1, hidden.shape[-1])[index] = forward(flat[index])
    return out


def _sequences(requests: Sequence[Request]) -> list[_Sequence]:
    """Group requests by model input (all tokens but the last) and context length, sorted."""
    groups: dict[tuple[tuple[int, ...], int], list[tuple[int, tuple[int, ...]]]] = {}
    for index, (tokens, count) in enumerate(requests):
        if count <= 0:
            continue
        if count >= len(tokens):
            raise ValueError(f"request {index}: {count} continuation tokens need a context")
        key = (tuple(tokens[:-1]), len(tokens) - count)
        groups.setdefault(key, []).append((index, tuple(tokens[-count:])))
    return [_Sequence(t, tuple(reqs), end) for (t, end), reqs in sorted(groups.items())]


def _runs(sequences: list[_Sequence], depth: int) -> list[tuple[list[_Sequence], int]]:
    """Split sorted ``sequences`` (all sharing ``tokens[:depth]``) into runs, each with the
    number of leading tokens every member shares and no member reads a prediction from."""
    runs: list[tuple[list[_Sequence], int]] = []
    for sequence in sequences:
        if runs:
            run, shared = runs[-1]
            common = _common_prefix(run[-1].tokens, sequence.tokens, start=depth)
            joined = min(shared, common, sequence.free_prefix)
            if joined > depth:
                run.append(sequence)
                runs[-1] = (run, joined)
                continue
        runs.append(([sequence], sequence.free_prefix))
    return runs


def _batches(
    sequences: list[_Sequence], depth: int, batch_size: int, token_budget: int
) -> list[list[_Sequence]]:
    """Sequences sorted by length (ties by tokens), cut into batches of at most ``batch_size``
    rows and ``token_budget`` padded tokens whose padding stays under 1/``PADDING_SLACK``."""
    ordered = sorted(sequences, key=lambda s: (-len(s.tokens), s.tokens))
    batches: list[list[_Sequence]] = []
    for sequence in ordered:
        length = len(sequence.tokens) - depth
        if batches and len(batches[-1]) < batch_size:
            width = len(batches[-1][0].tokens) - depth
            fits = (len(batches[-1]) + 1) * width <= token_budget
            if fits and length * PADDING_SLACK >= width * (PADDING_SLACK - 1):
                batches[-1].append(sequence)
                continue
        batches.append([sequence])
    return batches


def _targets(
    batch: list[_Sequence], prefix: int
) -> tuple[list[int], list[int], list[int], list[int]]:
    """Flat (row, column) positions that predict each continuation token, with owners."""
    rows, cols, targets, owners = [], [], [], []
    for row, sequence in enumerate(batch):
        end = len(sequence.tokens) - prefix  # column after the last input token
        for index, cont in sequence.requests:
            for offset, token in enumerate(cont):
                rows.append(row)
                cols.append(end - len(cont) + offset)
                targets.append(token)
                owners.append(index)
    return rows, cols, targets, owners


def _copy_cache(cache: Any, rows: int = 1) -> Any:
    """A copy of a batch-1 ``DynamicCache`` broadcast to ``rows`` rows, sharing its tensors.

    DynamicLayer.update rebinds ``torch.cat`` results rather than writing into the old tensors,
    so a shallow copy of the layer objects suffices, and an ``expand`` view (no copy, unlike
    ``batch_repeat_interleave``) broadcasts the prefix: the concatenation copies it once.
    """
    clone = copy.copy(cache)
    clone.layers = [copy.copy(layer) for layer in cache.layers]
    for layer in clone.layers:
        assert layer.keys.shape[0] == 1, "prefix caches are built with batch 1"
        if rows > 1:
            layer.keys = layer.keys.expand(rows, -1, -1, -1)
            layer.values = layer.values.expand(rows, -1, -1, -1)
    return clone


class _ReservedLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys and values are the leading positions of buffers with room
    for the next pass: ``update`` writes the new positions in place where ``DynamicLayer``
    concatenates, so a pass over stacked row caches copies them once instead of twice (on
    CPU, a tenth of a small model's k = 0 scoring went to such copies, bench/RESULTS.md,
    issue 17). Layer objects over the same buffers (a pass, and the pass that continues its
    leading rows in place, :func:`_continue_in_place`) share ``written``. New positions that
    do not fit, or would start short of what is written, fall back to the concatenation."""

    def __init__(
        self,
        keys: torch.Tensor,
        values: torch.Tensor,
        length: int,
        written: list[int] | None = None,
    ) -> None:
        super().__init__()
        self._buffers = keys, values  # (B, H, length + reserved, D)
        self._filled = length
        # Positions written into the buffers, shared by every layer object over them: a
        # write must start there, so that no view another cache holds is overwritten.
        self.written = written if written is not None else [length]
        self.keys, self.values = keys[:, :, :length], values[:, :, :length]
        self.device, self.is_initialized = keys.device, True

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self._buffers
        end = self._filled + key_states.shape[-2]
        fits = end <= keys.shape[-2] and key_states.shape[0] == keys.shape[0]
        if not fits or self.written[0] != self._filled:
            return super().update(key_states, value_states, *args, **kwargs)
        keys[:, :, self._filled : end] = key_states
        values[:, :, self._filled : end] = value_states
        self._filled = self.written[0] = end
        self.keys, self.values = keys[:, :, :end], values[:, :, :end]
        return self.keys, self.values


def _reserved_cache(
    template: Any,
    fill: Callable[[int, torch.Tensor, torch.Tensor], None],
    rows: int,
    length: int,
    reserve: int,
) -> Any:
    """A copy of ``template`` (a ``DynamicCache``) whose layers hold ``rows`` rows of ``length``
    positions, written by ``fill(index, keys, values)`` into fresh (rows, H, length, D) views,
    with room for ``reserve`` more (:class:`_ReservedLayer`); other layer kinds (sliding
    windows) keep their class and get the concatenation."""
    clone = copy.copy(template)
    clone.layers = []
    for index, layer in enumerate(template.layers):
        H, D, Dv = layer.keys.shape[1], layer.keys.shape[3], layer.values.shape[3]
        reserved = reserve if type(layer) in (DynamicLayer, _ReservedLayer) else 0
        keys = layer.keys.new_empty(rows, H, length + reserved, D)  # (B, H, length + r, D)
        values = layer.values.new_empty(rows, H, length + reserved, Dv)
        fill(index, keys[:, :, :length], values[:, :, :length])
        if reserved:
            clone.layers.append(_ReservedLayer(keys, values, length))
        else:
            new = copy.copy(layer)
            new.keys, new.values = keys, values
            clone.layers.append(new)
    return clone


def _stack_caches(caches: list[Any], reserve: int = 0, room: int = 0) -> Any:
    """One ``DynamicCache`` whose rows are the given batch-1 caches (of equal length), for a
    pass whose rows come from different nodes; rows of one cache are ``expand`` views. With
    ``reserve``, the layers have room for that many new positions (:class:`_ReservedLayer`):
    the buffers the caches are the leading rows of, where that is so
    (:func:`_continue_in_place`), else a copy with room for ``max(reserve, room)``."""
    if not reserve:
        if all(cache is caches[0] for cache in caches):
            return _copy_cache(caches[0], len(caches))
        clone = copy.copy(caches[0])
        clone.layers = [copy.copy(layer) for layer in caches[0].layers]
        for index, layer in enumerate(clone.layers):
            layer.keys = torch.cat([cache.layers[index].keys for cache in caches])
            layer.values = torch.cat([cache.layers[index].values for cache in caches])
        return clone
    in_place = _continue_in_place(caches, reserve)
    if in_place is not None:
        return in_place

    def fill(index: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        for row, cache in enumerate(caches):
            keys[row] = cache.layers[index].keys[0]
            values[row] = cache.layers[index].values[0]

    length = caches[0].layers[0].keys.shape[2]
    return _reserved_cache(caches[0], fill, len(caches), length, max(reserve, room))


def _continue_in_place(caches: list[Any], reserve: int) -> Any:
    """A ``DynamicCache`` over rows ``0 .. n-1`` of the buffers of the pass whose rows
    ``caches`` are (:func:`_row_cache`), in that order and all of that pass's length, if
    nothing was written past it and ``reserve`` more positions fit; else ``None``."""
    rows: list[tuple[Any, int]] = [getattr(cache, "_ladder_row", (None, -1)) for cache in caches]
    parent = rows[0][0]
    if parent is None:
        return None
    if any(p is not parent for p, _ in rows) or [r for _, r in rows] != list(range(len(rows))):
        return None
    length = caches[0].layers[0].keys.shape[2]
    layers = []
    for layer in parent.layers:
        if type(layer) is not _ReservedLayer or layer.written[0] != length:
            return None
        keys, values = layer._buffers
        if keys.shape[2] < length + reserve:
            return None
        layers.append(_ReservedLayer(keys[: len(rows)], values[: len(rows)], length, layer.written))
    clone = copy.copy(parent)
    clone.layers = layers
    return clone


def _padded_caches(caches: list[Any], length: int, reserve: int = 0) -> Any:
    """One ``DynamicCache`` whose row ``i`` is batch-1 cache ``caches[i]`` followed by zeros
    up to ``length`` positions (the caller masks them), with room for ``reserve`` more."""

    def fill(index: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        for row, cache in enumerate(caches):  # each byte written once: the cache, then zeros
            depth = cache.layers[index].keys.shape[2]
            keys[row, :, :depth] = cache.layers[index].keys[0]
            values[row, :, :depth] = cache.layers[index].values[0]
            keys[row, :, depth:] = 0
            values[row, :, depth:] = 0

    return _reserved_cache(caches[0], fill, len(caches), length, reserve)


def _row_cache(cache: Any, row: int, length: int) -> Any:
    """A batch-1 view of the first ``length`` positions of one row of a ``DynamicCache``
    (the next pass copies it on append); a :class:`_ReservedLayer` becomes a plain one."""
    clone = copy.copy(cache)
    clone.layers = []
    for layer in cache.layers:
        if type(layer) is _ReservedLayer:
            new: Any = DynamicLayer()
            new.device, new.is_initialized = layer.device, True
        else:
            new = copy.copy(layer)
        new.keys = layer.keys[row : row + 1, :, :length]
        new.values = layer.values[row : row + 1, :, :length]
        clone.layers.append(new)
    clone._ladder_row = (cache, row)  # where it lives, for _continue_in_place
    return clone


def _common_prefix(a: tuple[int, ...], b: tuple[int, ...], start: int = 0) -> int:
    limit = min(len(a), len(b))
    index = start
    while index < limit and a[index] == b[index]:
        index += 1
    return index
