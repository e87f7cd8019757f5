"""Ratings pipeline benchmark (issue 16): files of 1.67M votes → ratings, beside arena-rank.

Workload: ``--votes`` (default 1,670,000, the size of the public arena dump) synthetic votes among
``--models`` (130) models in the public battle schema (``model_a, model_b, winner, tstamp, judge,
language, turn, anony``), written as CSV and as JSON Lines. Like the real dump, the comparison
graph is sparse: each model meets the ~50 models nearest to it in release order (≈ 3,000 pairs,
≈ 9,000 pair × outcome cells; the public dump has ≈ 22,000 distinct seat-ordered outcomes).
Strengths rise with release order; answers get style counts (tokens, headers, bold, list items)
and the winner depends on strengths and style. A third file, parquet, holds the first
``--style-votes`` (1M) votes with the flat style columns, for the style-controlled fit.

Every engine measurement runs in a fresh subprocess, so its peak RSS (VmHWM) is its own:

* ``csv`` / ``jsonl``: read, aggregate, Bradley–Terry fit + ``--rounds`` (1,000) bootstrap rounds
  + sandwich intervals; and the CLI end to end (``python -m evalcore.ratings FILE --bootstrap
  1000 --interval sandwich``, interpreter start-up included);
* the same through today's per-row reader (``csv.DictReader`` / ``json.loads`` per line into
  ``BattleTable.from_records``), which the column-wise readers replace;
* ``style``: read the parquet file, then the style-controlled fit (contextual Bradley–Terry with
  sandwich intervals);
* arena-rank (PyPI ``arena-rank``, JAX), installed by this script into a throwaway venv
  (``--arena-rank-venv``, never the project's), on the same files: pandas ``read_csv``,
  ``PairDataset``, BT fit + sandwich; its bootstrap (``--arena-rank-rounds`` rounds of its
  per-round refit in one process, extrapolated to ``--rounds``; its process pool, forked after
  JAX starts, hangs here); and ``ContextualBradleyTerry`` on the same
  standardised style features and the same penalty. Ratings are compared after centring.

With ``--baseline-src DIR`` it instead times the same engine stages and the CLI with the
evalcore package of another source tree (e.g. ``git archive main evalcore``) and with this one,
``--repeat`` runs each, interleaved so both see the same load, and prints medians, CPU times,
peak RSS, and whether the two trees' outputs are byte-identical.

Usage::

    python bench/ratings.py --pipeline            # about 2-3 minutes with arena-rank installed
    python bench/ratings.py --pipeline --votes 200000 --skip-arena-rank   # a quick look
    git archive main evalcore | tar -x -C var/bench-baseline
    python bench/ratings.py --pipeline --reuse-files --baseline-src var/bench-baseline --repeat 3
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

WINNERS = np.array(["model_a", "model_b", "tie", "tie (bothbad)"])
STYLE_TRUTH = np.array([0.35, 0.05, 0.03, 0.08])  # tokens, headers, bold, lists (per sd)
NEIGHBOURS = 25  # each model meets the models within this many places in release order
GOALS = {"csv": 1.5, "jsonl": 2.5, "style": 5.0, "rss_mb": 400.0}


def make_votes(directory: Path, *, votes: int, models: int, style_votes: int, seed: int) -> dict:
    """Write battles.csv, battles.jsonl and styled.parquet; returns sizes."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from evalcore.ratings.style import style_design

    rng = np.random.default_rng(seed)
    strengths = np.linspace(-1.2, 1.2, models) + rng.normal(0, 0.2, models)
    a = rng.integers(0, models, votes)
    offset = rng.integers(1, NEIGHBOURS + 1, votes) * rng.choice([-1, 1], votes)
    b = np.where((a + offset < 0) | (a + offset >= models), a - offset, a + offset)
    mean = np.array([300.0, 1.5, 3.0, 4.0]) * np.exp(0.3 * strengths)[:, None]
    style = rng.poisson(np.stack([mean[a], mean[b]], axis=1)).astype(np.float64)
    eta = strengths[a] - strengths[b] + style_design(style) @ STYLE_TRUTH
    p = 1.0 / (1.0 + np.exp(-eta))
    u = rng.random(votes)
    outcome = np.select([u < 0.8 * p, u < 0.8, u < 0.95], [0, 1, 2], default=3)
    names = np.array([f"model-{i:03d}" for i in range(models)])
    columns = {
        "model_a": names[a],
        "model_b": names[b],
        "winner": WINNERS[outcome],
        "tstamp": np.round(1.7e9 + np.sort(rng.random(votes)) * 3e7, 3),
        "judge": np.char.add("arena_user_", rng.integers(0, 50_000, votes).astype(str)),
        "language": np.array(["English", "Chinese", "German", "French"])[rng.integers(0, 4, votes)],
        "turn": rng.integers(1, 4, votes),
        "anony": np.ones(votes, dtype=bool),
    }
    pacsv.write_csv(pa.table(columns), directory / "battles.csv")
    _write_jsonl(directory / "battles.jsonl", columns)
    flat = {
        f"{f}_{side}": style[:style_votes, k, j]
        for k, side in enumerate("ab")
        for j, f in enumerate(("tokens", "headers", "bold", "lists"))
    }
    head = {name: values[:style_votes] for name, values in columns.items()}
    pq.write_table(pa.table({**head, **flat}), directory / "styled.parquet")
    return {
        name: (directory / name).stat().st_size
        for name in ("battles.csv", "battles.jsonl", "styled.parquet")
    }


def _write_jsonl(path: Path, columns: dict[str, Any]) -> None:
    """One JSON object per line, built with vectorised string operations."""

    def quoted(values: Any) -> Any:
        return np.char.add(np.char.add('"', values.astype(str)), '"')

    parts: list[Any] = []
    for k, (name, values) in enumerate(columns.items()):
        if values.dtype.kind in "US":
            text = quoted(values)
        elif values.dtype.kind == "b":
            text = np.where(values, "true", "false")
        else:
            text = values.astype(str)
        parts.append(np.char.add(("{" if k == 0 else ", ") + f'"{name}": ', text))
    line = parts[0]
    for part in parts[1:]:
        line = np.char.add(line, part)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write("}\n".join(line.tolist()) + "}\n")


def peak_rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def engine_stages(path: str, mode: str, rounds: int) -> dict[str, Any]:
    """Runs inside the subprocess: the timed stages of one mode."""
    start, cpu = time.perf_counter(), time.process_time()
    source = os.environ.get(SOURCE_VARIABLE)
    if source:  # the baseline's evalcore (``--baseline-src``), not this checkout's
        sys.path.insert(0, source)
    from evalcore.ratings import (
        BattleTable,
        PairCounts,
        RatingParams,
        compute_ratings,
        rate_battles,
        read_battles,
    )
    from evalcore.ratings import io as ratings_io

    timings: dict[str, float] = {"import": time.perf_counter() - start}
    clock = time.perf_counter()
    if mode == "per-row":
        file_format = ratings_io.detect_format(path)
        records = ratings_io._read_records(path, file_format)
        if file_format == "csv":
            records = [ratings_io._typed_csv_record(r) for r in records]
        table = BattleTable.from_records(records)
        del records
    else:  # only the columns the ratings need, as the CLI reads them
        table = read_battles(path, attributes=())
    timings["read"] = time.perf_counter() - clock
    out: dict[str, Any] = {"votes": len(table)}
    if mode == "style":
        clock = time.perf_counter()
        result = rate_battles(table, RatingParams(style_control=True, interval="sandwich"))
        timings["fit"] = time.perf_counter() - clock
        out["coefficients"] = dict(result.style_coefficients)
    else:
        clock = time.perf_counter()
        counts = PairCounts.from_battles(table).counts
        timings["aggregate"] = time.perf_counter() - clock
        clock = time.perf_counter()
        params = RatingParams(bootstrap_rounds=rounds, interval="sandwich", seed=0)
        result = compute_ratings(counts, params)
        timings["fit"] = time.perf_counter() - clock
        out["pairs"], out["cells"] = counts.n_pairs, int(np.count_nonzero(counts.counts))
        boot = result.intervals["bootstrap"]
        out["width_bootstrap"] = float(np.mean([hi - lo for lo, hi in boot.values()]))
    sandwich = result.intervals["sandwich"]
    out["width_sandwich"] = float(np.mean([hi - lo for lo, hi in sandwich.values()]))
    out["ratings"] = {row.model: row.rating for row in result.rows}
    timings["total"] = time.perf_counter() - start
    timings["cpu"] = time.process_time() - cpu  # all threads of the process
    return {**out, "timings": timings, "peak_rss_mb": peak_rss_mb()}


SOURCE_VARIABLE = "LADDER_BENCH_EVALCORE_SRC"


def in_subprocess(path: Path, mode: str, rounds: int, source: Path | None = None) -> dict[str, Any]:
    command = [sys.executable, __file__, "--stage", mode, str(path), "--rounds", str(rounds)]
    env = {**os.environ, SOURCE_VARIABLE: str(source) if source else ""}
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    result = json.loads(done.stdout)
    result["wall"] = time.perf_counter() - start
    return result


CLI_WRAPPER = """
import runpy, sys
sys.argv = ["evalcore.ratings", *sys.argv[1:]]
try:
    runpy.run_module("evalcore.ratings", run_name="__main__")
finally:
    with open("/proc/self/status") as status:
        peak = [l for l in status if l.startswith("VmHWM:")][0].split()[1]
    print(f"peak_rss_mb={int(peak) / 1024}", file=sys.stderr)
"""


def cli_end_to_end(
    path: Path, rounds: int, source: Path | None = None, extra: tuple[str, ...] = ()
) -> dict[str, Any]:
    """The CLI in a fresh interpreter: wall seconds, CPU seconds (all threads), peak RSS, and
    the output CSV text (to compare the trees' results byte for byte)."""
    out = path.with_suffix(".ratings.csv")
    arguments = [str(path), "--bootstrap", str(rounds), "--interval", "sandwich", "-o", str(out)]
    arguments += extra
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CLI_WRAPPER, *arguments],
        check=True,
        cwd=source or ROOT,  # ``-c`` puts the working directory first on sys.path
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(source or ROOT)},
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {
        "seconds": elapsed,
        "cpu": cpu,
        "peak_rss_mb": float(done.stderr.rsplit("peak_rss_mb=", 1)[1]),
        "csv": out.read_text(encoding="utf-8"),
    }


ARENA_RANK_SCRIPT = r"""
import json, sys, time
import numpy as np, pandas as pd
csv_path, parquet_path, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
penalty = float(sys.argv[4])
out = {}
t = time.perf_counter()
from arena_rank.models.bradley_terry import BradleyTerry
from arena_rank.models.contextual_bradley_terry import ContextualBradleyTerry
from arena_rank.utils.data_utils import PairDataset, ContextualPairDataset
out["import"] = time.perf_counter() - t
t = time.perf_counter()
df = pd.read_csv(csv_path, usecols=["model_a", "model_b", "winner"])
df["winner"] = df["winner"].replace({"tie (bothbad)": "both_bad"})
out["read"] = time.perf_counter() - t
t = time.perf_counter()
ds = PairDataset.from_pandas(df)
out["dataset"] = time.perf_counter() - t
t = time.perf_counter()
model = BradleyTerry(n_competitors=len(ds.competitors))
res = model.compute_ratings_and_cis(ds, ci_method="sandwich")
out["fit_sandwich"] = time.perf_counter() - t
out["ratings"] = dict(zip(ds.competitors, np.asarray(res["ratings"]).tolist()))
out["width_sandwich"] = float(np.mean(np.asarray(res["rating_upper"]) - np.asarray(res["rating_lower"])))
if rounds:
    # Its own bootstrap forks a process pool after JAX has started, which hangs here; the
    # rounds are timed one after another in this process with its per-round function instead.
    import jax.numpy as jnp
    from arena_rank.models.bradley_terry import fit_single_bootstrap_sample
    rng = np.random.default_rng(0)
    counts = np.asarray(ds.counts)
    fit_single_bootstrap_sample(jnp.asarray(counts), model, ds)  # compile once, untimed
    t = time.perf_counter()
    for _ in range(rounds):
        drawn = rng.multinomial(int(counts.sum()), counts / counts.sum()).astype(np.float64)
        fit_single_bootstrap_sample(jnp.asarray(drawn), model, ds)
    out["bootstrap_rounds"], out["bootstrap"] = rounds, time.perf_counter() - t
sd = pd.read_parquet(parquet_path)
features = [c for c in sd.columns if c.startswith("z")]
t = time.perf_counter()
cds = ContextualPairDataset.from_pandas(sd, feature_cols=features, reweighted=False)
cmodel = ContextualBradleyTerry(n_competitors=len(cds.competitors), n_features=len(features), reg=penalty)
cres = cmodel.compute_ratings_and_cis(cds, ci_method="sandwich")
out["style_fit"] = time.perf_counter() - t
out["style_ratings"] = dict(zip(cds.competitors, np.asarray(cres["ratings"]).tolist()))
out["coefficients"] = np.asarray(cres["coeffs"]).tolist()
print(json.dumps(out))
"""


def ensure_arena_rank(venv: Path) -> Path:
    """The throwaway venv's python, creating the venv and installing arena-rank if needed."""
    python = venv / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    probe = subprocess.run([str(python), "-c", "import arena_rank, pandas, pyarrow"])
    if probe.returncode != 0:
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "arena-rank", "pandas", "pyarrow"],
            check=True,
        )
    return python


def run_arena_rank(python: Path, directory: Path, rounds: int) -> dict[str, Any]:
    """arena-rank on the same files; the style file gets our standardised features."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from evalcore.ratings import RatingParams, read_battles
    from evalcore.ratings.style import STYLE_FEATURES, style_design

    table = read_battles(directory / "styled.parquet")
    assert table.style is not None
    design = style_design(table.style)
    names = np.asarray(table.models)
    frame = {
        "model_a": names[table.model_a],
        "model_b": names[table.model_b],
        "winner": np.array(["model_a", "model_b", "tie", "both_bad"])[table.outcome],
        **{f"z_{name}": design[:, k] for k, name in enumerate(STYLE_FEATURES)},
    }
    pq.write_table(pa.table(frame), directory / "arena_rank_style.parquet")
    penalty = RatingParams().style_penalty
    command = [
        str(python),
        "-c",
        ARENA_RANK_SCRIPT,
        str(directory / "battles.csv"),
        str(directory / "arena_rank_style.parquet"),
        str(rounds),
        str(penalty),
    ]
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["wall"] = time.perf_counter() - start
    return result


def _gap(ours: dict[str, float], theirs: dict[str, float]) -> float:
    names = sorted(ours)
    a = np.array([ours[n] for n in names])
    b = np.array([theirs[n] for n in names])
    return float(np.max(np.abs((a - a.mean()) - (b - b.mean()))))


def report(
    runs: dict[str, Any], cli: dict[str, Any], arena: dict[str, Any] | None, args: Any
) -> str:
    lines = [
        f"{args.votes:,} votes, {args.models} models; {runs['csv']['pairs']:,} pairs, "
        f"{runs['csv']['cells']:,} pair x outcome cells; bootstrap {args.rounds} rounds; "
        f"style fit on {runs['style']['votes']:,} votes",
        "",
        "| run | read (s) | aggregate (s) | fit (s) | in-process total (s) | CPU (s) "
        "| subprocess wall (s) | CLI end to end (s) | peak RSS (MB) | goal |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, label in (
        ("csv", "CSV, column-wise (BT + bootstrap + sandwich)"),
        ("csv-per-row", "CSV, today's per-row reader"),
        ("jsonl", "JSON Lines, column-wise"),
        ("jsonl-per-row", "JSON Lines, today's per-row reader"),
        ("style", "style control, parquet (contextual BT + sandwich)"),
    ):
        run = runs.get(name)
        if run is None:
            continue
        t = run["timings"]
        end_to_end = cli.get(name)
        goal_key = name if name in GOALS else None
        measured = end_to_end["seconds"] if end_to_end else run["wall"]
        goal = ""
        if goal_key:
            met = measured <= GOALS[goal_key] and run["peak_rss_mb"] <= GOALS["rss_mb"]
            goal = f"≤ {GOALS[goal_key]} s, ≤ 400 MB: {'met' if met else 'NOT met'}"
        cli_seconds = f"{end_to_end['seconds']:.2f}" if end_to_end else "-"
        lines.append(
            f"| {label} | {t['read']:.2f} | {t.get('aggregate', float('nan')):.2f} "
            f"| {t['fit']:.2f} | {t['total']:.2f} | {t['cpu']:.2f} | {run['wall']:.2f} "
            f"| {cli_seconds} |"
        )
        lines[-1] += (
            f" {max(run['peak_rss_mb'], (end_to_end or {}).get('peak_rss_mb', 0)):.0f} | {goal} |"
        )
    csv_run = runs["csv"]
    lines += [
        "",
        f"- mean 95% interval width: bootstrap {csv_run['width_bootstrap']:.2f}, sandwich "
        f"{csv_run['width_sandwich']:.2f} rating points",
        f"- style coefficients (per sd): {runs['style']['coefficients']} "
        f"(simulated: {dict(zip(('tokens', 'headers', 'bold', 'lists'), STYLE_TRUTH.tolist()))}, "
        "attenuated by the 20 % ties)",
    ]
    if arena is not None:
        boot = arena.get("bootstrap")
        per_round = boot / arena["bootstrap_rounds"] if boot else float("nan")
        lines += [
            "",
            "| arena-rank (JAX, same files) | seconds |",
            "|---|---:|",
            f"| import | {arena['import']:.2f} |",
            f"| pandas read_csv (3 columns) | {arena['read']:.2f} |",
            f"| PairDataset.from_pandas | {arena['dataset']:.2f} |",
            f"| BT fit + sandwich | {arena['fit_sandwich']:.2f} |",
            f"| bootstrap, {arena.get('bootstrap_rounds', 0)} rounds in one process "
            f"(→ {args.rounds} extrapolated) | {boot or float('nan'):.2f} "
            f"(→ {per_round * args.rounds:,.0f}) |",
            f"| ContextualBradleyTerry fit + sandwich ({runs['style']['votes']:,} votes) "
            f"| {arena['style_fit']:.2f} |",
            f"| whole subprocess | {arena['wall']:.2f} |",
            "",
            f"- largest |ours − arena-rank| BT rating (centred): "
            f"{_gap(csv_run['ratings'], arena['ratings']):.3f} points; style-controlled: "
            f"{_gap(runs['style']['ratings'], arena['style_ratings']):.3f} points",
            f"- arena-rank sandwich mean width {arena['width_sandwich']:.2f} points; "
            f"style coefficients {[round(c, 4) for c in arena['coefficients']]}",
        ]
    lines.append(
        f"- load average after the run: {' '.join(f'{v:.1f}' for v in os.getloadavg())} "
        f"on {os.cpu_count()} CPUs"
    )
    return "\n".join(lines)


def ensure_votes(args: Any) -> None:
    """Write the files, unless ``--reuse-files`` and the stamp says they match the arguments."""
    stamp = args.directory / "stamp.json"
    wanted = {k: getattr(args, k) for k in ("votes", "models", "style_votes", "seed")}
    if args.reuse_files and stamp.exists() and json.loads(stamp.read_text()) == wanted:
        print(f"reusing the files in {args.directory} ({wanted})", flush=True)
        return
    start = time.perf_counter()
    sizes = make_votes(
        args.directory,
        votes=args.votes,
        models=args.models,
        style_votes=args.style_votes,
        seed=args.seed,
    )
    stamp.write_text(json.dumps(wanted))
    print(f"wrote {sizes} in {time.perf_counter() - start:.1f} s", flush=True)


COMPARED = ("csv", "jsonl", "style")


def compare_trees(args: Any) -> str:
    """``--repeat`` runs of every mode with the baseline tree's evalcore and this one's,
    interleaved (baseline, this, baseline, ...) so both see the same machine load; medians."""
    trees = {"baseline": args.baseline_src.resolve(), "this": None}
    files = {
        "csv": args.directory / "battles.csv",
        "jsonl": args.directory / "battles.jsonl",
        "style": args.directory / "styled.parquet",
    }
    runs: dict[tuple[str, str], list[dict[str, Any]]] = {}
    loads = [os.getloadavg()]
    for number in range(args.repeat):
        for mode in COMPARED:
            for tree, source in trees.items():
                stage = "style" if mode == "style" else "columns"
                run = in_subprocess(files[mode], stage, args.rounds, source)
                if mode != "style":
                    run["cli"] = cli_end_to_end(files[mode], args.rounds, source)
                if mode != "style" and source is None and number == 0:
                    # the old sampler, which must reproduce the baseline's bytes
                    legacy = ("--bootstrap-sampler", "1")
                    run["cli_v1"] = cli_end_to_end(files[mode], args.rounds, None, legacy)
                runs.setdefault((tree, mode), []).append(run)
        loads.append(os.getloadavg())
        print(f"run {number + 1} of {args.repeat} done, load {loads[-1]}", flush=True)
    return comparison_report(runs, loads, args)


def comparison_report(
    runs: dict[tuple[str, str], list[dict[str, Any]]], loads: list[Any], args: Any
) -> str:
    def median(values: list[float]) -> str:
        return f"{statistics.median(values):.2f}"

    lines = [
        f"{args.votes:,} votes (CSV, JSON Lines), {args.style_votes:,} (style, parquet); "
        f"bootstrap {args.rounds} rounds + sandwich; {args.repeat} runs each, medians "
        f"(all runs in brackets); baseline: evalcore from {args.baseline_src}",
        "",
        "| mode | tree | read (s) | fit (s) | in-process total (s) | in-process CPU (s) "
        "| CLI end to end (s) | CLI CPU (s) | peak RSS (MB) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in COMPARED:
        for tree in ("baseline", "this"):
            group = runs[(tree, mode)]
            t = [run["timings"] for run in group]
            cli = [run["cli"] for run in group if "cli" in run]
            rss = [
                max(run["peak_rss_mb"], run.get("cli", {}).get("peak_rss_mb", 0)) for run in group
            ]

            def cell(values: list[float]) -> str:
                return f"{median(values)} [{', '.join(f'{v:.2f}' for v in values)}]"

            lines.append(
                f"| {mode} | {tree} | {median([x['read'] for x in t])} "
                f"| {median([x['fit'] for x in t])} | {cell([x['total'] for x in t])} "
                f"| {cell([x['cpu'] for x in t])} "
                f"| {cell([c['seconds'] for c in cli]) if cli else '-'} "
                f"| {cell([c['cpu'] for c in cli]) if cli else '-'} "
                f"| {cell(rss)} |"
            )
    lines.append("")
    for mode in COMPARED:
        base, this = runs[("baseline", mode)][0], runs[("this", mode)][0]
        gap = _gap(base["ratings"], this["ratings"])
        note = f"- {mode}: largest |rating difference| {gap:.3g} points"
        if mode != "style":
            same = base["cli"]["csv"] == this["cli"]["csv"]
            note += f"; CLI output CSV {'byte-identical' if same else 'differs'}"
            if "cli_v1" in this:
                same = base["cli"]["csv"] == this["cli_v1"]["csv"]
                note += f" (with --bootstrap-sampler 1: {'byte-identical' if same else 'DIFFERS'})"
            for key in ("width_bootstrap", "width_sandwich"):
                note += f"; {key} {base[key]:.6f} vs {this[key]:.6f}"
        lines.append(note)
    lines.append(
        "- load average (1, 5, 15 min) before and after each round of runs: "
        + "; ".join(" ".join(f"{v:.1f}" for v in load) for load in loads)
        + f" on {os.cpu_count()} CPUs"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--votes", type=int, default=1_670_000)
    parser.add_argument("--models", type=int, default=130)
    parser.add_argument("--style-votes", type=int, default=1_000_000)
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--directory", type=Path, default=ROOT / "var" / "bench-ratings")
    parser.add_argument("--arena-rank-venv", type=Path, default=ROOT / "var" / "arena-rank-venv")
    parser.add_argument("--arena-rank-rounds", type=int, default=4)
    parser.add_argument("--skip-arena-rank", action="store_true")
    parser.add_argument("--skip-per-row", action="store_true")
    parser.add_argument("--reuse-files", action="store_true", help="keep matching vote files")
    parser.add_argument(
        "--baseline-src",
        type=Path,
        help="compare with the evalcore of this source tree (e.g. a `git archive` of main) "
        "instead of the per-row readers and arena-rank",
    )
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode with --baseline-src")
    parser.add_argument("--stage", nargs=2, metavar=("MODE", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.stage:
        mode, path = args.stage
        print(json.dumps(engine_stages(path, mode, args.rounds)))
        return
    args.directory.mkdir(parents=True, exist_ok=True)
    ensure_votes(args)
    if args.baseline_src:
        print(compare_trees(args))
        return
    csv_path, jsonl_path = args.directory / "battles.csv", args.directory / "battles.jsonl"
    runs = {
        "csv": in_subprocess(csv_path, "columns", args.rounds),
        "jsonl": in_subprocess(jsonl_path, "columns", args.rounds),
        "style": in_subprocess(args.directory / "styled.parquet", "style", args.rounds),
    }
    cli = {
        "csv": cli_end_to_end(csv_path, args.rounds),
        "jsonl": cli_end_to_end(jsonl_path, args.rounds),
    }
    if not args.skip_per_row:
        runs["csv-per-row"] = in_subprocess(csv_path, "per-row", args.rounds)
        runs["jsonl-per-row"] = in_subprocess(jsonl_path, "per-row", args.rounds)
    print("engine runs done", flush=True)
    arena = None
    if not args.skip_arena_rank:
        python = ensure_arena_rank(args.arena_rank_venv)
        arena = run_arena_rank(python, args.directory, args.arena_rank_rounds)
    print(report(runs, cli, arena, args))


if __name__ == "__main__":
    main()
