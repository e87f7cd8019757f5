"""Release services: publish, verify and rebuild (the write side of the leaderboard).

Kept apart from ``services.py`` (the hot path: ``record_outcome`` and the counting rule) so the
two can evolve independently; views, the API, tasks and commands call these functions. Both
read only the leaderboard's own tables: the outcome log (``Outcome``) and ``PairCount``.

Two inputs, one release format. Bradley–Terry and Davidson only need the pair × outcome counts:
they are sufficient statistics, so those releases are computed from the ``PairCount`` rows (kept
up to date in each outcome's transaction, cheap at any size) and store them (``input_counts``),
and re-running needs nothing but the release row. Online Elo is order-dependent: the same counts
in another order give other ratings, and its bootstrap replays resampled battle sequences, so
counts cannot reproduce it. An Elo release therefore reads the outcome log itself: every outcome
of its board with id <= ``last_vote_id`` (an outcome id, which is its arena vote's id too), in
id order, handed to the engine's ``rate_battles``. The engine replays them stably sorted by
``tstamp`` (equal times in log order, outcomes without one last), exactly as
``python -m evalcore.ratings --method elo`` does on the arena's export, which is in vote order
too (the arena stamps its own votes as it stores them, so the two orders all but agree).
Outcomes are append-only and never edited, and :func:`settled_position` waits until every id up
to ``last_vote_id`` has committed, so that prefix is fixed forever: ``verify_release`` re-reads
it, and later outcomes cannot change it. ``input_digest`` is then the engine's digest of the
ordered battle sequence, and ``input_counts`` the counts of the same battles (for the charts and
model pages). What an Elo release does not survive is a rename of a contestant (the log names
models through the live contestant rows): its verification then reports a different digest.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from contestants.models import Contestant
from core.exceptions import DomainError
from core.queue import enqueue
from evalcore.errors import EmptyInputError, EvalcoreError
from evalcore.ratings import BattleTable, RatingParams
from evalcore.ratings.sampling import CURRENT_SAMPLER
from leaderboard import ratings, services
from leaderboard.exceptions import NothingToPublish, UnknownPublishJob, from_engine
from leaderboard.export import EXTRA_COLUMNS, release_csv
from leaderboard.models import (
    Outcome,
    PairCount,
    PublishJob,
    Release,
    ReleaseRow,
    ReleaseSequence,
)
from leaderboard.ratings import Computed, CountRow
from leaderboard.summaries import changes_since, heatmap_data
from leaderboard.version import code_version

logger = logging.getLogger(__name__)
RELEASE_METHODS = ("bt", "davidson", "elo")


def default_params(**overrides: Any) -> RatingParams:
    """The house parameters, then the deployment's, then ``overrides`` (see config/settings.py).

    Raises:
        DomainError: ``invalid_parameter`` naming the bad field.
    """
    merged = {
        # New releases draw their bootstrap with the current sampler; a recorded release
        # without the key used version 1 (RatingParams.from_dict), so it still verifies.
        "bootstrap_sampler": CURRENT_SAMPLER,
        **settings.LEADERBOARD_DEFAULT_RATING_PARAMS,
        **settings.LEADERBOARD_RATING_PARAMS,
        **overrides,
    }
    try:
        params = ratings.params_from_dict(merged)
    except EvalcoreError as error:
        raise from_engine(error) from None
    if params.method not in RELEASE_METHODS:
        message = f"must be one of {', '.join(RELEASE_METHODS)}; got {params.method!r}"
        raise DomainError(
            f"`method` {message}", code="invalid_parameter", fields={"method": message}
        )
    return params


@dataclass(frozen=True)
class Snapshot:
    """The counts of one board and the outcome-log position they cover, read consistently.

    ``battles`` holds the board's ordered battles up to ``last_vote_id`` for online Elo (then
    ``rows`` are their counts); it is None for the count-based methods.
    """

    category: str
    rows: list[CountRow]
    vote_count: int
    last_vote_id: int | None
    battles: BattleTable | None = None
    # The same battles with their answers' style features, for the style-controlled view; None
    # while the vote log keeps no style features.
    styled: BattleTable | None = None

    def digest(self, params: RatingParams) -> str:
        if self.battles is not None:
            return ratings.battles_digest(self.battles, params)
        return ratings.input_digest(self.rows)

    def compute(self, params: RatingParams, *, progress: bool = False) -> Computed:
        if self.battles is not None:
            return ratings.compute_battles(self.battles, params, progress=progress)
        return ratings.compute(self.rows, params, progress=progress)


def read_snapshot(*, category: str) -> Snapshot:
    """Read the pair counts and the outcome log's position in one consistent view.

    Outcomes update the counts in their own transaction, so one snapshot of both is exact:
    REPEATABLE READ on PostgreSQL (each statement would otherwise see its own snapshot); an
    SQLite transaction already sees one state of the file.
    """
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        if outermost and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        rows = PairCount.objects.filter(category=category).values_list(
            "model_a__name", "model_b__name", "model_a_wins", "model_b_wins", "ties", "both_bad"
        )
        canonical = [_canonical(row) for row in rows if sum(row[2:]) > 0]
        vote_count, last_vote_id = Outcome.objects.position()
        styled = _styled_battles(category) if settings.LEADERBOARD_STYLE_VIEW else None
    return Snapshot(category, sorted(canonical), vote_count, last_vote_id, styled=styled)


def _styled_battles(category: str) -> BattleTable | None:
    """The board's outcomes that carry their answers' style features (None if there are none),
    read in the snapshot's transaction so they are the outcomes its counts hold."""
    rows = (
        Outcome.objects.on_board(category)
        .filter(style__isnull=False)
        .in_log_order()
        .values_list("model_a__name", "model_b__name", "result", "style")
    )
    try:
        return ratings.styled_table(rows.iterator(chunk_size=20_000))
    except EmptyInputError:
        return None
    except EvalcoreError as error:
        raise from_engine(error) from None


def read_vote_sequence(*, category: str, up_to: int | None = None) -> Snapshot:
    """The board's battles from the outcome log, in log order, up to outcome id ``up_to``.

    Without ``up_to`` the sequence ends at the newest outcome whose id, and every lower id, has
    settled (committed or rolled back), so re-reading up to the same id later gives the same
    battles. A board without outcomes gives empty ``rows`` and no ``battles``.

    Raises:
        DomainError: an outcome the engine refuses (its code names the field).
    """
    if up_to is None:
        vote_count, last_vote_id = settled_position()
    else:
        vote_count, last_vote_id = Outcome.objects.up_to(up_to).position()
    battles = []
    if last_vote_id is not None:
        battles = list(Outcome.objects.up_to(last_vote_id).on_board(category).battles())
    if not battles:
        return Snapshot(category, [], vote_count, last_vote_id)
    try:
        table = ratings.battle_table(battles)
    except EvalcoreError as error:
        raise from_engine(error) from None
    return Snapshot(category, ratings.battle_counts(table), vote_count, last_vote_id, table)


def settled_position() -> tuple[int, int | None]:
    """The outcome log's (count, newest id), once every outcome with a lower id has committed
    (or rolled back).

    On PostgreSQL an outcome takes its id from a sequence when its statement runs, so a slow
    voting transaction can commit id 10 after id 11 is visible; a release reading "ids <= 11"
    would then miss an outcome that a later re-run sees. A SHARE lock on the outcome table waits
    for the writing transactions in flight and holds off new ones for the one aggregate query
    (milliseconds). SQLite runs one writer at a time, so its ids already commit in order.
    """
    # Outside a transaction (task, command) the lock ends with this block; inside one it lasts
    # until that one commits.
    with transaction.atomic():
        if connection.vendor == "postgresql":
            table = connection.ops.quote_name(Outcome._meta.db_table)
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {table} IN SHARE MODE")
        return Outcome.objects.position()


def _canonical(row: tuple[str, str, int, int, int, int]) -> CountRow:
    a, b, *cells = row
    if b < a:  # a renamed contestant can leave a pair out of name order
        w, lo, t, bb = services.mirrored_counts((cells[0], cells[1], cells[2], cells[3]))
        return (b, a, w, lo, t, bb)
    return (a, b, cells[0], cells[1], cells[2], cells[3])


def publish_release(
    *,
    category: str = "",
    params: RatingParams | None = None,
    force: bool = False,
    progress: bool = False,
) -> Release | None:
    """Publish a new release of ``category`` if its inputs (or parameters) changed.

    The inputs are the pair counts, or for ``method="elo"`` the ordered outcome log (module doc).

    Returns the new release, or None when nothing changed and ``force`` is false.

    Raises:
        NothingToPublish: the board has no votes.
        DomainError: the engine cannot rate the data with these parameters.
    """
    params = params or default_params()
    if params.method == "elo":  # order-dependent: the outcome log, not the counts (module doc)
        snapshot = read_vote_sequence(category=category)
    else:
        snapshot = read_snapshot(category=category)
    if not snapshot.rows:
        label = f"category {category!r}" if category else "the overall board"
        raise NothingToPublish(f"{label} has no votes yet", fields={"category": category})
    try:
        if not force and _is_current(category, snapshot.digest(params), params):
            return None
        computed = snapshot.compute(params, progress=progress)
    except EvalcoreError as error:
        raise from_engine(error) from None
    return _write_release(snapshot=snapshot, params=params, computed=computed, force=force)


def _is_current(category: str, digest: str, params: RatingParams) -> bool:
    latest = Release.objects.light().latest_for(category)
    return latest is not None and (latest.input_digest, latest.params) == (
        digest,
        params.to_dict(),
    )


def _write_release(
    *, snapshot: Snapshot, params: RatingParams, computed: Computed, force: bool
) -> Release | None:
    """Create the release and all its rows in one transaction, under the category's lock."""
    facts = _contestant_facts([row.model for row in computed.rows])
    csv_text = release_csv(computed.core_csv, facts)
    style_view: dict[str, Any] = {}
    if snapshot.styled is not None:
        styled_facts = _contestant_facts(list(snapshot.styled.models))
        try:
            style_view = ratings.compute_style_view(snapshot.styled, params, styled_facts)
        except EvalcoreError as error:
            # Too few styled outcomes to fit (say, a model that never lost among them): the
            # default table is published all the same, without a style-controlled one.
            logger.info("no style view for %r: %s: %s", snapshot.category, error.code, error)
    with transaction.atomic():
        sequence = _locked_sequence(snapshot.category)
        # Re-checked under the lock: a concurrent publisher may have just published this digest.
        if not force and _is_current(snapshot.category, computed.input_digest, params):
            return None
        previous = Release.objects.light().latest_for(snapshot.category)
        previous_rows = list(previous.rows.values("model", "rank", "rating")) if previous else []
        release = Release.objects.create(
            number=sequence.last_number + 1,
            category=snapshot.category,
            created_at=timezone.now(),
            method=params.method,
            params=params.to_dict(),
            input_digest=computed.input_digest,
            input_counts=ratings.canonical_counts_json(snapshot.rows),
            vote_count=snapshot.vote_count,
            last_vote_id=snapshot.last_vote_id,
            counted_votes=sum(sum(row[2:]) for row in snapshot.rows),
            model_count=len(computed.rows),
            code_version=code_version(),
            csv_text=csv_text,
            changes=changes_since(previous and previous.number, previous_rows, computed.rows),
            charts=heatmap_data(snapshot.rows, computed.rows, scale=params.scale, base=params.base),
            diagnostics=computed.diagnostics,
            style_view=style_view,
        )
        ReleaseRow.objects.bulk_create(
            [_release_row(release, n, row, facts) for n, row in enumerate(computed.rows)],
            batch_size=500,
        )
        sequence.last_number = release.number
        sequence.save(update_fields=["last_number"])
    logger.info("published %s (%d models)", release, release.model_count)
    return release


def _locked_sequence(category: str) -> ReleaseSequence:
    ReleaseSequence.objects.get_or_create(category=category)
    return ReleaseSequence.objects.select_for_update().get(category=category)


def _contestant_facts(names: list[str]) -> dict[str, list[object]]:
    found = (
        Contestant.objects.with_evaluation().filter(name__in=names).values("name", *EXTRA_COLUMNS)
    )
    return {row["name"]: [row[column] for column in EXTRA_COLUMNS] for row in found}


def _release_row(
    release: Release, position: int, row: ratings.CoreRow, facts: dict[str, list[object]]
) -> ReleaseRow:
    extra = dict(zip(EXTRA_COLUMNS, facts.get(row.model, [None] * len(EXTRA_COLUMNS))))
    extra["organization"] = extra["organization"] or ""
    extra["license"] = extra["license"] or ""
    return ReleaseRow(
        release=release,
        position=position,
        below_min_votes=row.below_min_votes,
        preliminary=row.preliminary,
        rank=row.rank,
        rank_ub=row.rank_ub,
        model=row.model,
        rating=row.rating,
        ci_lower=row.ci_lower,
        ci_upper=row.ci_upper,
        votes=row.votes,
        win_rate=row.win_rate,
        **extra,
    )


def board_categories() -> list[str]:
    """The overall board first, then every category that has counts."""
    found = PairCount.objects.exclude(category="").values_list("category", flat=True)
    return [""] + sorted(set(found))


def publish_all_if_changed() -> list[Release]:
    """The beat job: publish every board whose counts or parameters changed."""
    published = []
    for category in board_categories():
        try:
            release = publish_release(category=category)
        except DomainError as error:
            # Expected while a board is young (no votes, nobody above min_votes yet).
            logger.info("not publishing %r: %s: %s", category, error.code, error.message)
            continue
        except Exception:
            # One board's failure must not block the others; the traceback is logged.
            logger.exception("publishing category %r failed", category)
            continue
        if release is not None:
            published.append(release)
    return published


def request_publish(
    *,
    category: str = "",
    force: bool = False,
    overrides: dict[str, Any] | None = None,
    requested_by: Any = None,
) -> PublishJob:
    """Record a publish request and queue it once this transaction commits."""

    default_params(**(overrides or {}))  # validate now, so a bad request fails with a 400
    job = PublishJob.objects.create(
        category=category,
        force=force,
        params=overrides or {},
        requested_by=requested_by if getattr(requested_by, "pk", None) else None,
    )
    transaction.on_commit(lambda: enqueue("leaderboard.run_publish_job", job.pk))
    return job


def run_publish_job(*, job_id: int, progress: bool = False) -> PublishJob:
    """Run a queued publish job; a job that already ran is left as it is (idempotent)."""
    claimed = PublishJob.objects.filter(pk=job_id, status=PublishJob.Status.QUEUED).update(
        status=PublishJob.Status.RUNNING, started_at=timezone.now()
    )
    job = PublishJob.objects.filter(pk=job_id).first()
    if job is None:
        raise UnknownPublishJob(f"no publish job with id {job_id}", fields={"job_id": job_id})
    if not claimed:
        return job
    try:
        release = publish_release(
            category=job.category,
            params=default_params(**job.params),
            force=job.force,
            progress=progress,
        )
    except Exception as error:
        _fail(job, error)
        if not isinstance(error, DomainError):
            raise
        return job
    job.status = PublishJob.Status.PUBLISHED if release else PublishJob.Status.UNCHANGED
    job.release, job.finished_at = release, timezone.now()
    job.message = f"published {release}" if release else "the input counts have not changed"
    job.save(update_fields=["status", "release", "finished_at", "message"])
    return job


def _fail(job: PublishJob, error: Exception) -> None:
    job.status = PublishJob.Status.FAILED
    job.error_code = error.code if isinstance(error, DomainError) else "internal_error"
    job.message = error.message if isinstance(error, DomainError) else type(error).__name__
    job.finished_at = timezone.now()
    job.save(update_fields=["status", "error_code", "message", "finished_at"])


@dataclass(frozen=True)
class Verification:
    """Result of recomputing a release from what it recorded."""

    release: Release
    digest_matches: bool
    csv_matches: bool
    recomputed_csv: str

    @property
    def ok(self) -> bool:
        return self.digest_matches and self.csv_matches


def verify_release(*, release: Release, progress: bool = False) -> Verification:
    """Recompute ``release`` from its recorded inputs and parameters; compare the CSV bytes.

    The inputs are its stored counts, or for Elo the outcome log up to its ``last_vote_id``.

    Raises:
        DomainError: the recorded parameters are invalid, or the engine refuses the inputs
            (``empty_input`` when an Elo release's outcomes are not in the log).
    """
    try:
        params = ratings.params_from_dict(release.params)
        snapshot = _recorded_input(release, params)
        digest = snapshot.digest(params)
        computed = snapshot.compute(params, progress=progress)
    except EvalcoreError as error:
        raise from_engine(error) from None
    stored = release.rows.order_by("position").values("model", *EXTRA_COLUMNS)
    facts = {row["model"]: [row[column] for column in EXTRA_COLUMNS] for row in stored}
    csv_text = release_csv(computed.core_csv, facts)
    return Verification(
        release=release,
        digest_matches=digest == release.input_digest,
        csv_matches=csv_text.encode() == release.csv_text.encode(),
        recomputed_csv=csv_text,
    )


def _recorded_input(release: Release, params: RatingParams) -> Snapshot:
    if params.method != "elo":
        rows = ratings.counts_from_json(release.input_counts)
        return Snapshot(release.category, rows, release.vote_count, release.last_vote_id)
    if release.last_vote_id is None:
        raise EmptyInputError("the release records no outcome-log position to replay up to")
    snapshot = read_vote_sequence(category=release.category, up_to=release.last_vote_id)
    if snapshot.battles is None:
        raise EmptyInputError(
            f"the outcome log has no outcomes up to id {release.last_vote_id} on this board"
        )
    return snapshot


@dataclass(frozen=True)
class CountDifference:
    model_a: str
    model_b: str
    category: str
    stored: tuple[int, int, int, int]
    rebuilt: tuple[int, int, int, int]


ZERO = (0, 0, 0, 0)


def rebuild_pair_counts(*, apply: bool = False, progress: bool = False) -> list[CountDifference]:
    """Recount every pair from the outcome log and list where the stored counts differ.

    An outcome counts on the overall board and, when it has one, on its category's board
    (``services.counted``). With ``apply`` the differing rows are rewritten in the same
    transaction that read the outcomes; on PostgreSQL the counts table is first locked against
    writers, so a vote arriving meanwhile waits and then increments the rebuilt counts.
    """
    with transaction.atomic():
        if apply and connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute(f'LOCK TABLE "{PairCount._meta.db_table}" IN EXCLUSIVE MODE')
        rebuilt = count_votes(progress=progress)
        stored = {
            (a, b, category): (w, lo, t, bb)
            for a, b, category, w, lo, t, bb in PairCount.objects.values_list(
                "model_a__name",
                "model_b__name",
                "category",
                "model_a_wins",
                "model_b_wins",
                "ties",
                "both_bad",
            )
        }
        differences = [
            CountDifference(*key, stored.get(key, ZERO), rebuilt.get(key, ZERO))
            for key in sorted(set(stored) | set(rebuilt))
            if stored.get(key, ZERO) != rebuilt.get(key, ZERO)
        ]
        if apply and differences:
            _apply_counts(differences)
    return differences


def count_votes(*, progress: bool) -> dict[tuple[str, str, str], tuple[int, int, int, int]]:
    """Pair × outcome counts per (model_a, model_b, board) recounted from the whole outcome log,
    with the arena's own rule (``services.counted``)."""
    from tqdm import tqdm

    totals: dict[tuple[str, str, str], list[int]] = {}
    count, _ = Outcome.objects.position()
    outcomes = Outcome.objects.for_counting()
    for a, b, result, category in tqdm(outcomes, total=count, disable=not progress, unit="vote"):
        rows = services.counted(
            model_a=a, model_b=b, names=(a, b), result=result, category=category
        )
        for first, second, board, oriented in rows:
            cells = totals.setdefault((first, second, board), [0, 0, 0, 0])
            for index, add in enumerate(services.increments(oriented)):
                cells[index] += add
    return {key: (v[0], v[1], v[2], v[3]) for key, v in totals.items()}


def _apply_counts(differences: list[CountDifference]) -> None:
    names = {d.model_a for d in differences} | {d.model_b for d in differences}
    ids = dict(Contestant.objects.filter(name__in=names).values_list("name", "pk"))
    for d in differences:
        values = dict(zip(("model_a_wins", "model_b_wins", "ties", "both_bad"), d.rebuilt))
        PairCount.objects.update_or_create(
            model_a_id=ids[d.model_a],
            model_b_id=ids[d.model_b],
            category=d.category,
            defaults=values,
        )
