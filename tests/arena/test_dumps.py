"""Export in the public arena battle schema (vote order) and import of public dumps."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from arena import services
from arena.dumps import FIELDS, export_records, import_battles
from arena.models import Battle, Vote
from arena.voters import Voter
from contestants.models import Contestant
from leaderboard.models import PairCount

PUBLIC_DUMP = [
    {"model_a": "vicuna-13b", "model_b": "koala-13b", "winner": "model_a", "tstamp": 1682351591.1322,
     "judge": "arena_user_973", "language": "English", "turn": 1, "anony": True,
     "question_id": "d0d8c5c3b6ba4d8a8a7d2c1b1f1f0a01"},
    {"model_a": "koala-13b", "model_b": "alpaca-13b", "winner": "tie (bothbad)",
     "tstamp": 1682351600.5, "judge": "arena_user_974", "language": "German", "turn": 2,
     "anony": True},
    {"model_a": "vicuna-13b", "model_b": "alpaca-13b", "winner": "tie", "tstamp": 1682351700.25,
     "judge": "arena_user_973", "language": "English", "turn": 1, "anony": True},
    {"model_a": "vicuna-13b", "model_b": "alpaca-13b", "winner": "tie", "tstamp": 1682351700.25,
     "judge": "arena_user_973", "language": "English", "turn": 1, "anony": True},
]  # fmt: skip
BAD_ROWS = [
    {"model_a": "vicuna-13b", "model_b": "vicuna-13b", "winner": "tie"},
    {"model_a": "vicuna-13b", "model_b": "koala-13b", "winner": "leftvote"},
    {"model_a": "vicuna-13b", "model_b": "koala-13b", "winner": "tie", "anony": False},
    {"model_b": "koala-13b", "winner": "tie"},
    ["not", "a", "record"],
]


def vote_on(make_battle: Callable[..., Battle], winners: list[str]) -> list[Battle]:
    battles = []
    for number, winner in enumerate(winners):
        battle = make_battle(a=number % 3, b=(number + 1) % 3)
        services.record_vote(
            battle_id=battle.pk, winner=winner, voter=Voter(f"anon:{number % 2}", "192.0.2.1")
        )
        battles.append(battle)
    return battles


def test_export_has_every_vote_in_vote_order_in_the_public_schema(
    make_battle: Callable[..., Battle],
) -> None:
    winners = ["model_a", "model_b", "tie", "tie (bothbad)", "model_a"]
    battles = vote_on(make_battle, winners)
    records = list(export_records())
    assert [r["winner"] for r in records] == winners
    assert [r["question_id"] for r in records] == [b.pk.hex for b in battles]
    for record, battle in zip(records, battles):
        assert tuple(record) == FIELDS
        assert (record["model_a"], record["model_b"]) == (battle.model_a.name, battle.model_b.name)
        assert record["anony"] is True and record["turn"] == 1
        assert record["language"] == "English"
        assert record["judge"].startswith("arena_user_")
    tstamps = [r["tstamp"] for r in records]
    assert tstamps == sorted(tstamps) and all(isinstance(t, float) for t in tstamps)


def test_export_api_streams_jsonl_and_csv(
    client: Client, make_battle: Callable[..., Battle]
) -> None:
    vote_on(make_battle, ["model_a", "tie"])
    response = client.get("/api/arena/battles/export.jsonl")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/x-ndjson"
    lines = b"".join(response.streaming_content).decode().splitlines()
    assert [json.loads(line)["winner"] for line in lines] == ["model_a", "tie"]
    response = client.get("/api/arena/battles/export.csv")
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [row["winner"] for row in rows] == ["model_a", "tie"]
    assert list(rows[0]) == list(FIELDS)
    assert client.get("/api/arena/battles/export.xml").status_code == 404


def test_export_command_writes_files_that_the_ratings_cli_reads(
    make_battle: Callable[..., Battle], tmp_path: Path
) -> None:
    vote_on(make_battle, ["model_a", "model_b", "tie", "model_a", "model_b", "model_a"])
    for fmt in ("jsonl", "csv"):
        out = tmp_path / f"export.{fmt}"
        call_command("export_battles", "--output", str(out))
        from evalcore.ratings.io import read_battles

        table = read_battles(out)
        assert len(table) == 6
        assert set(table.models) == {"alpha-7b", "beta-13b", "gamma-1b"}


def test_import_loads_a_public_dump_and_counts_it(db: None, tmp_path: Path) -> None:
    dump = tmp_path / "clean_battle.json"
    dump.write_text(json.dumps(PUBLIC_DUMP))
    out = io.StringIO()
    call_command("import_battles", str(dump), stdout=out)
    assert "imported 4" in out.getvalue()
    assert Vote.objects.count() == 4
    assert set(Contestant.objects.values_list("name", "status")) == {
        ("vicuna-13b", "retired"),
        ("koala-13b", "retired"),
        ("alpaca-13b", "retired"),
    }
    total = sum(row.total for row in PairCount.objects.filter(category=""))
    assert total == 4
    exported = list(export_records())
    assert [r["tstamp"] for r in exported] == [r["tstamp"] for r in PUBLIC_DUMP]
    assert exported[0]["question_id"] == PUBLIC_DUMP[0]["question_id"]
    for original, record in zip(PUBLIC_DUMP, exported):
        for key in ("model_a", "model_b", "winner", "judge", "language", "turn", "anony"):
            assert record[key] == original[key]


def test_import_is_idempotent(db: None) -> None:
    first = import_battles(PUBLIC_DUMP)
    again = import_battles(PUBLIC_DUMP)
    assert (first.imported, again.imported, again.already_present) == (4, 0, 4)
    assert Vote.objects.count() == 4
    assert sum(row.total for row in PairCount.objects.filter(category="")) == 4


def test_import_skips_invalid_records_with_reasons(db: None) -> None:
    report = import_battles([*BAD_ROWS, PUBLIC_DUMP[0]])
    assert report.imported == 1
    assert sum(report.skipped.values()) == len(BAD_ROWS)
    assert "not anonymous" in report.skipped and "winner unknown" in report.skipped
    with pytest.raises(ValueError, match="record 0: same model"):
        import_battles(BAD_ROWS, strict=True)


def test_import_reads_jsonl_and_csv_exports(
    make_battle: Callable[..., Battle], tmp_path: Path
) -> None:
    vote_on(make_battle, ["model_a", "tie", "model_b"])
    for fmt in ("jsonl", "csv"):
        path = tmp_path / f"export.{fmt}"
        call_command("export_battles", "--output", str(path))
        before = list(export_records())
        Vote.objects.filter(battle__import_key__isnull=False).delete()
        Battle.objects.filter(import_key__isnull=False).delete()
        out = io.StringIO()
        call_command("import_battles", str(path), stdout=out)
        assert "imported 3" in out.getvalue()
        copies = list(export_records())[3:]
        strip = ("question_id", "category")
        assert [{k: v for k, v in r.items() if k not in strip} for r in copies] == [
            {k: v for k, v in r.items() if k not in strip} for r in before[:3]
        ]


def test_import_of_a_missing_file_is_a_command_error(db: None) -> None:
    with pytest.raises(CommandError, match="is not a file"):
        call_command("import_battles", "/nonexistent/battles.jsonl")


def test_export_up_to_a_vote_id_stops_where_a_release_stopped(
    make_battle: Callable[..., Battle], tmp_path: Path
) -> None:
    from arena.models import Vote

    vote_on(make_battle, ["model_a", "model_b", "tie", "model_a"])
    ids = list(Vote.objects.in_vote_order().values_list("pk", flat=True))
    assert [r["winner"] for r in export_records(up_to_vote_id=ids[1])] == ["model_a", "model_b"]
    out = tmp_path / "upto.jsonl"
    call_command("export_battles", "--output", str(out), "--up-to-vote-id", str(ids[2]))
    lines = out.read_text().splitlines()
    assert [json.loads(line)["winner"] for line in lines] == ["model_a", "model_b", "tie"]


@pytest.mark.parametrize("suffix", ["jsonl", "csv"])
def test_strict_import_names_line_and_field_and_imports_nothing(
    db: None, tmp_path: Path, suffix: str
) -> None:
    records = [dict(r) for r in PUBLIC_DUMP]
    records[2]["winner"] = "model_z"
    path = tmp_path / f"dump.{suffix}"
    if suffix == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n\n" for r in records))  # blank lines between
        line = 5
    else:
        with path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(records[0]))
            writer.writeheader()
            writer.writerows(records)
        line = 4
    with pytest.raises(
        CommandError, match=rf"record 2: winner unknown.*\(line {line}, field 'winner'\)"
    ):
        call_command("import_battles", str(path), "--strict", stdout=io.StringIO())
    assert Vote.objects.count() == 0 and Battle.objects.count() == 0
    assert not PairCount.objects.exists()
    out = io.StringIO()
    call_command("import_battles", str(path), stdout=out)
    assert f"(line {line}, field 'winner')" in out.getvalue()
    assert Vote.objects.count() == len(records) - 1
