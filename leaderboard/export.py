"""CSV and JSON forms of a release.

Column order (documented contract, also in the CSV header):

1. the engine's core columns, byte for byte as ``python -m evalcore.ratings`` writes them:
   ``rank, rank_ub, model, rating, ci_lower, ci_upper, votes, win_rate``, and, for releases
   whose parameters use the listing or interval options (``interval``, reweighting,
   preliminary marks, deprecated models), ``interval`` (the method of the bounds:
   ``bootstrap`` or ``sandwich``) and ``preliminary`` (``true``/``false``);
2. the model card facts copied into the release at publish time: ``organization, license,
   fewshot_average, fewshot_std, eval_cost_usd, eval_energy_kwh, eval_co2e_g, parameters,
   training_tokens``.

Empty cells mean "unknown". Floats of the extra columns are written with ``repr`` (the shortest
string that reads back to the same float), so a CSV rebuilt from the stored rows is identical.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

CORE_COLUMNS = ("rank", "rank_ub", "model", "rating", "ci_lower", "ci_upper", "votes", "win_rate")
EXTRA_COLUMNS = (
    "organization",
    "license",
    "fewshot_average",
    "fewshot_std",
    "eval_cost_usd",
    "eval_energy_kwh",
    "eval_co2e_g",
    "parameters",
    "training_tokens",
)
COLUMNS = CORE_COLUMNS + EXTRA_COLUMNS


def format_extra(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def _extras_text(values: Sequence[object]) -> str:
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="").writerow([format_extra(v) for v in values])
    return buffer.getvalue()


def release_csv(core_csv: str, extras: Mapping[str, Sequence[object]]) -> str:
    """Append the extra columns to the engine's CSV, keeping its bytes and line endings.

    ``extras`` maps a model name to its values in :data:`EXTRA_COLUMNS` order.
    """
    lines = core_csv.splitlines(keepends=True)
    if not lines:
        raise ValueError("the engine produced an empty CSV")
    model_column = next(csv.reader([lines[0]])).index("model")
    out = []
    for number, line in enumerate(lines):
        body = line.rstrip("\r\n")
        ending = line[len(body) :] or "\n"
        if number == 0:
            values: Sequence[object] = EXTRA_COLUMNS
        else:
            model = next(csv.reader([body]))[model_column]
            values = extras.get(model, [None] * len(EXTRA_COLUMNS))
        out.append(f"{body},{_extras_text(values)}{ending}")
    return "".join(out)


def core_columns_of(csv_text: str) -> str:
    """Cut the extra columns off again: the exact bytes the engine wrote."""
    out = []
    for line in csv_text.splitlines(keepends=True):
        body = line.rstrip("\r\n")
        fields = next(csv.reader([body]))
        suffix = "," + _extras_text(fields[len(fields) - len(EXTRA_COLUMNS) :])
        if not body.endswith(suffix):
            raise ValueError(f"not a release CSV line: {body!r}")
        out.append(body[: -len(suffix)] + line[len(body) :])
    return "".join(out)


def json_number(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# The CSV's precision (the engine writes ratings with 2 decimals, win rates with 4), so the JSON
# shows exactly the numbers of the reproducible CSV.
JSON_DECIMALS = {"rating": 2, "ci_lower": 2, "ci_upper": 2, "win_rate": 4}


def _json_value(name: str, value: Any) -> Any:
    value = json_number(value)
    decimals = JSON_DECIMALS.get(name)
    if decimals is None or value is None:
        return value
    return round(value, decimals) + 0.0


def row_dicts(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Rows as JSON-ready dicts in :data:`COLUMNS` order."""
    return [{name: _json_value(name, row[name]) for name in COLUMNS} for row in rows]
