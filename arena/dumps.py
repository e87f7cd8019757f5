"""Votes in and out in the public arena battle schema (JSON Lines, JSON array or CSV).

Each vote becomes one record: ``model_a``, ``model_b``, ``winner``, ``tstamp`` (unix s), ``judge``
(hashed voter), ``language``, ``turn``, ``anony``, plus ``category``, ``question_id`` and both conversations,
``conversation_a``/``conversation_b`` as lists of ``{role, content}`` (JSON text in CSV). The
export is in vote order, so ``python -m evalcore.ratings`` on it sees exactly what the pair
counts saw. The import loads such a dump (e.g. a public one) and counts every vote on the
leaderboard, so a new deployment can start from existing votes.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from django.db import transaction
from django.utils import timezone

from arena.models import Battle, Vote
from contestants.models import Contestant
from core.text import storable_text
from evalcore.types import Outcome as Result
from leaderboard.services import WINNERS, record_outcome

FIELDS = (
    "model_a",
    "model_b",
    "winner",
    "tstamp",
    "judge",
    "language",
    "turn",
    "anony",
    "category",
    "question_id",
    "conversation_a",
    "conversation_b",
)
CONVERSATION_ROLES = ("system", "user", "assistant")
FORMATS = ("jsonl", "csv")
IMPORT_BATCH_SIZE = 1000
MAX_EXAMPLES = 5
_QUERY_FIELDS = (
    "battle__model_a__name",
    "battle__model_b__name",
    "outcome__result",
    "outcome__tstamp",
    "judge",
    "battle__language",
    "battle__turn",
    "battle__anony",
    "battle__category",
    "battle_id",
    "battle__import_key",
    "battle__prompt",
    "battle__history_a",
    "battle__history_b",
    "battle__answer_a",
    "battle__answer_b",
    "battle__answer_a_at",
    "battle__answer_b_at",
)


# --- Export ---------------------------------------------------------------------------------


def export_records(*, up_to_vote_id: int | None = None) -> Iterator[dict[str, Any]]:
    """Every vote (or those with id <= ``up_to_vote_id``) as a public-schema record, in vote
    order. The bound reproduces the vote log a leaderboard release covered (its last vote id)."""
    votes = Vote.objects.in_vote_order()
    if up_to_vote_id is not None:
        votes = votes.filter(pk__lte=up_to_vote_id)
    rows = votes.values_list(*_QUERY_FIELDS)
    for row in rows.iterator(chunk_size=5000):
        record = dict(zip(FIELDS, row[:9]))
        record["winner"] = Result(record["winner"]).winner  # the stored value, as the schema says
        battle_id, import_key, prompt, history_a, history_b = row[9:14]
        record["question_id"] = _question_id(battle_id, import_key)
        record["conversation_a"] = _conversation(prompt, history_a, row[14], row[16])
        record["conversation_b"] = _conversation(prompt, history_b, row[15], row[17])
        yield record


def _conversation(
    prompt: str, history: list[dict[str, str]], answer: str, answered: Any
) -> list[dict[str, str]]:
    """One side's whole conversation, as arena.conversations.conversation() builds it."""
    if not prompt and not history:
        return []  # imported without its conversation
    messages = [*history, {"role": "user", "content": prompt}]
    if answered is not None:
        messages.append({"role": "assistant", "content": answer})
    return messages


def _question_id(battle_id: uuid.UUID, import_key: str | None) -> str:
    if import_key and import_key.startswith("qid:"):
        return import_key[4:]
    return battle_id.hex


def export_lines(fmt: str, *, up_to_vote_id: int | None = None) -> Iterator[str]:
    """The export as text lines (each ending in a newline) in ``fmt`` ("jsonl" or "csv")."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if fmt == "jsonl":
        for record in export_records(up_to_vote_id=up_to_vote_id):
            yield json.dumps(record, ensure_ascii=False) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIELDS)
    for record in export_records(up_to_vote_id=up_to_vote_id):
        writer.writerow([_csv_value(record[name]) for name in FIELDS])
        yield buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
    yield buffer.getvalue()


def _csv_value(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, list) else value


# --- Import ---------------------------------------------------------------------------------


class InvalidBattleRecord(ValueError):
    """A malformed record; ``field`` names the offending field when there is one."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class Numbered(NamedTuple):
    """A record and the 1-based file line it starts on."""

    line: int
    record: Any


@dataclass
class ImportReport:
    read: int = 0
    imported: int = 0
    already_present: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)
    new_contestants: list[str] = field(default_factory=list)

    def summary(self) -> str:
        skipped = ", ".join(f"{n} {reason}" for reason, n in sorted(self.skipped.items()))
        return (
            f"read {self.read}, imported {self.imported}, already present {self.already_present}"
            f", skipped {sum(self.skipped.values())}" + (f" ({skipped})" if skipped else "")
        )


def read_records(path: Path) -> Iterator[Any]:
    """Records of a dump: ``.csv``, JSON Lines, or one JSON array (``.json``)."""
    for item in read_numbered_records(path):
        yield item.record if isinstance(item, Numbered) else item


def read_numbered_records(path: Path) -> Iterator[Numbered | Any]:
    """Like :func:`read_records`, each CSV or JSON Lines record with its file line."""
    with path.open(encoding="utf-8", newline="") as handle:
        if path.suffix.lower() == ".csv":
            reader = csv.DictReader(handle)
            line = 2  # the header is line 1; DictReader skips blank lines, as counted here
            for row in reader:
                yield Numbered(line, row)
                line = reader.line_num + 1
            return
        head = handle.read(1)
        while head.isspace():
            head = handle.read(1)
        handle.seek(0)
        if head == "[":
            yield from json.load(handle)
            return
        for number, text in enumerate(handle, start=1):
            if text.strip():
                try:
                    yield Numbered(number, json.loads(text))
                except json.JSONDecodeError as error:
                    raise InvalidBattleRecord(f"line {number}: not JSON ({error})") from None


def import_battles(records: Iterable[Any], *, strict: bool = False) -> ImportReport:
    """Store valid anonymous battles as votes and count them; skip (or, ``strict``, refuse) the rest.

    ``records`` are records, or :class:`Numbered` ones (from :func:`read_numbered_records`),
    whose errors then name the file line. The whole import is one transaction: with ``strict``
    a bad record raises and nothing of the file is stored.

    Idempotent: a record's ``question_id``, else a digest of its content and its occurrence
    number, is kept on the battle, so importing the same dump twice adds nothing.
    """
    report = ImportReport()
    batch: list[tuple[str, dict[str, Any]]] = []
    occurrences: Counter[str] = Counter()
    with transaction.atomic():
        for row, item in enumerate(records):
            line, raw = (item.line, item.record) if isinstance(item, Numbered) else (None, item)
            report.read += 1
            try:
                record = clean_record(raw)
            except InvalidBattleRecord as error:
                message = f"record {row}: {error}{_where(line, error.field)}"
                if strict:
                    raise InvalidBattleRecord(message, field=error.field) from None
                report.skipped[str(error).split(":")[0]] += 1
                if len(report.examples) < MAX_EXAMPLES:
                    report.examples.append(message)
                continue
            batch.append((_import_key(raw, record, occurrences), record))
            if len(batch) >= IMPORT_BATCH_SIZE:
                _store_batch(batch, report)
                batch = []
        if batch:
            _store_batch(batch, report)
    return report


def _where(line: int | None, field: str | None) -> str:
    parts = ([f"line {line}"] if line is not None else []) + ([f"field {field!r}"] if field else [])
    return f" ({', '.join(parts)})" if parts else ""


def clean_record(raw: Any) -> dict[str, Any]:
    """A validated record with typed fields (CSV gives strings); raises InvalidBattleRecord."""
    if not isinstance(raw, Mapping):
        raise InvalidBattleRecord("not a record: expected an object with model_a, model_b, winner")
    model_a, model_b = _name(raw, "model_a"), _name(raw, "model_b")
    if model_a == model_b:
        raise InvalidBattleRecord(f"same model on both sides: {model_a!r}", field="model_b")
    winner = raw.get("winner")
    if winner not in WINNERS:
        raise InvalidBattleRecord(
            f"winner unknown: {winner!r}, expected one of {WINNERS}", field="winner"
        )
    anony = _boolean(raw.get("anony", True))
    if not anony:
        raise InvalidBattleRecord("not anonymous: named battles are not rated", field="anony")
    return {
        "model_a": model_a,
        "model_b": model_b,
        "winner": winner,
        "tstamp": _number(raw.get("tstamp")),
        "judge": str(raw.get("judge") or ""),
        "language": str(raw.get("language") or ""),
        "turn": _turn(raw.get("turn")),
        "category": str(raw.get("category") or "")[:50],
        **_conversations(raw.get("conversation_a"), raw.get("conversation_b")),
    }


def _conversations(side_a: Any, side_b: Any) -> dict[str, Any]:
    """Both conversations (absent: empty) and the battle fields that hold them."""
    a, b = _messages(side_a, "conversation_a"), _messages(side_b, "conversation_b")
    if not a and not b:
        return {}
    users = [[m["content"] for m in side if m["role"] == "user"] for side in (a, b)]
    if users[0] != users[1] or not users[0]:
        raise InvalidBattleRecord("conversations differ: both sides need the same user messages")
    fields: dict[str, Any] = {"turn_from_conversation": len(users[0])}
    for side, messages in (("a", a), ("b", b)):
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        fields["prompt"] = messages[last_user]["content"]
        fields[f"history_{side}"] = messages[:last_user]
        after = messages[last_user + 1 :]
        fields[f"answer_{side}"] = after[0]["content"] if after else None
    return fields


def _messages(value: Any, key: str) -> list[dict[str, str]]:
    if value in (None, ""):
        return []
    if isinstance(value, str):  # CSV: JSON text
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidBattleRecord(f"{key} not JSON: {value[:40]!r}") from None
    if not isinstance(value, list):
        raise InvalidBattleRecord(f"{key} not a list of messages: {type(value).__name__}")
    messages = []
    for message in value:
        role = message.get("role") if isinstance(message, Mapping) else None
        content = message.get("content") if isinstance(message, Mapping) else None
        if role not in CONVERSATION_ROLES or not isinstance(content, str):
            raise InvalidBattleRecord(f"{key} message not {{role, content}}: {message!r:.60}")
        messages.append({"role": str(role), "content": content})
    return messages


def _name(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InvalidBattleRecord(f"{key} missing or empty: {value!r}", field=key)
    if len(value) > 100:
        raise InvalidBattleRecord(f"{key} longer than 100 characters: {value[:40]!r}…", field=key)
    return value.strip()


def _number(value: Any) -> float | None:
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise InvalidBattleRecord(f"tstamp not a number: {value!r}", field="tstamp")
    try:
        return float(value)
    except (TypeError, ValueError):
        raise InvalidBattleRecord(f"tstamp not a number: {value!r}", field="tstamp") from None


def _boolean(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() not in ("false", "0", "no")
    return value is None or bool(value)


def _turn(value: Any) -> int:
    try:
        return max(1, int(value)) if value not in (None, "") else 1
    except (TypeError, ValueError):
        raise InvalidBattleRecord(f"turn not an integer: {value!r}", field="turn") from None


def _import_key(raw: Mapping[str, Any], record: dict[str, Any], seen: Counter[str]) -> str:
    question_id = raw.get("question_id")
    if isinstance(question_id, str) and 0 < len(question_id) <= 90:
        return f"qid:{question_id}"
    digest = hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()[:40]
    seen[digest] += 1  # identical records in one dump are distinct votes
    return f"sha:{digest}:{seen[digest]}"


def _store_batch(batch: list[tuple[str, dict[str, Any]]], report: ImportReport) -> None:
    with transaction.atomic():
        present = set(
            Battle.objects.filter(import_key__in=[key for key, _ in batch]).values_list(
                "import_key", flat=True
            )
        )
        names = {r[side] for _, r in batch for side in ("model_a", "model_b")}
        contestants = _contestants(names, report)
        new: list[tuple[Battle, dict[str, Any]]] = []
        for key, record in batch:
            if key in present:
                report.already_present += 1
                continue
            present.add(key)
            new.append((_battle(key, record, contestants), record))
        Battle.objects.bulk_create([battle for battle, _ in new])
        # One outcome (with its counts) per vote, in dump order: the outcome log's order.
        votes = [_vote(battle, record) for battle, record in new]
        Vote.objects.bulk_create(votes)
        report.imported += len(votes)


def _contestants(names: set[str], report: ImportReport) -> dict[str, Contestant]:
    known = {c.name: c for c in Contestant.objects.filter(name__in=names)}
    for name in sorted(names - known.keys()):
        # Models of a public dump have no checkpoint here: on the board, never in a battle.
        known[name] = Contestant.objects.create(
            name=name,
            status=Contestant.Status.RETIRED,
            checkpoint_path="",
            description="Imported from an arena battle dump.",
        )
        report.new_contestants.append(name)
    return known


def _battle(key: str, record: dict[str, Any], contestants: dict[str, Contestant]) -> Battle:
    now = timezone.now()
    battle = Battle(
        model_a=contestants[record["model_a"]],
        model_b=contestants[record["model_b"]],
        status=Battle.Status.READY,
        language=storable_text(record["language"][:50]),
        category=storable_text(record["category"]),
        turn=record["turn"]
        if "turn_from_conversation" not in record
        else max(record["turn"], record["turn_from_conversation"]),
        anony=True,
        import_key=key,
        created_at=now,
        prompt=record.get("prompt", ""),
        history_a=record.get("history_a", []),
        history_b=record.get("history_b", []),
    )
    for side in ("a", "b"):
        answer = record.get(f"answer_{side}")
        if answer is not None:
            setattr(battle, f"answer_{side}", answer)
            setattr(battle, f"answer_{side}_at", now)
    return battle


def _vote(battle: Battle, record: dict[str, Any]) -> Vote:
    outcome_id = record_outcome(
        model_a=battle.model_a,
        model_b=battle.model_b,
        result=Result.from_winner(record["winner"]),
        category=battle.category,
        tstamp=record["tstamp"],
        created_at=battle.created_at,
    )
    return Vote(outcome_id=outcome_id, battle=battle, judge=storable_text(record["judge"][:100]))
