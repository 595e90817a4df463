"""Every bound endcredits enforces, with its unit in its name. Relationships are checked at import."""

from __future__ import annotations

from collections.abc import Iterable

from endcredits.errors import ValidationError, invariant

# Money -------------------------------------------------------------------------------------------
MICROUNITS_PER_UNIT = 10**8
"""1 microunit = 10^-8 of a currency's major unit (a microcent of a dollar). Fixed forever."""

SUBUNIT_BITS = 32
"""Carry-forward precision: a microunit is split into 2^32 subunits while residuals accrue."""

SUBUNITS_PER_MICROUNIT = 1 << SUBUNIT_BITS

AMOUNT_MICROUNITS_MAX = 10**30 - 1
"""Largest amount (a transfer, a balance, a pool) stored: 10^22 major units, far beyond 2^63 microunits."""

TRANSFER_AMOUNT_MICROUNITS_MAX = AMOUNT_MICROUNITS_MAX

REVENUE_PER_OUTPUT_MICROUNITS_MAX = (1 << 62) - 1
"""Largest revenue of one output (about 46 billion major units): per-line arithmetic stays in int64."""

AMOUNT_DIGITS_MAX = 30
"""Decimal digits of the largest amount; storage columns are NUMERIC(AMOUNT_DIGITS_MAX + 8, 0)."""

# Registry ----------------------------------------------------------------------------------------
CREDITS_PER_WORK_MAX = 10_000
LINEAGE_PARENTS_PER_WORK_MAX = 1_000
LINEAGE_DEPTH_MAX = 64
NAME_LENGTH_MAX = 200
TITLE_LENGTH_MAX = 500
WEIGHT_MAX = 10**12
"""Largest integer credit or role weight."""

# Batches -----------------------------------------------------------------------------------------
BATCH_SIZE_MAX = 10_000_000
"""Most line items (output x payee) in one accrual batch."""

OUTPUTS_PER_BATCH_MAX = 2_000_000
PAYEES_PER_OUTPUT_MAX = 1_000_000
LEGS_PER_TRANSFER_MAX = 10_000_000
FOLD_PENDING_LEGS_MAX = 8_000_000
"""An accrual first folds the pending ledger segments into the row tables when they hold this many legs
(ledger/segments.py): readers read through at most this much plus one batch."""

FOLD_PENDING_SEGMENTS_MAX = 8
"""... or when this many segments are pending, whichever comes first. A fold writes each account and carry
once however many pending segments touched it, so batches that keep paying new people fold rarely (each
fold costs a row per distinct account, not per leg), and a reader reads through at most this many
segments (``serve`` also folds when no batch has come for a while: ``FOLD_IDLE_S``)."""

FOLD_SQLITE_CACHE_KIB = 524_288
"""A fold on SQLite runs with a page cache of at least this many KiB (512 MiB), then the store's again: its
10^6 account rows go into three B-trees larger than the store's 64 MiB cache."""

CARRY_CACHE_NAME_ID_MAX = 250_000_000
"""A process keeps the carries of a store and currency between accruals (``ledger.carry_cache``): a name's
in an array indexed by its id, 4 bytes a name id up to this one (1 GB); larger ids as other payees."""

CARRY_CACHE_PAYEES_MAX = 5_000_000
"""... and other payees' in a dict (about 150 bytes each), kept while it holds at most this many."""

FOLD_IDLE_S = 5.0
"""``serve`` folds what is pending once no usage batch has been accrued for this many seconds."""

USAGE_BATCHES_IN_FLIGHT_MAX = 4
"""Usage batches one service process accrues at once (``create_app``'s default). On PostgreSQL they run
side by side up to the carries (``ledger.accrue.ACCRUAL_LOCK``); on SQLite one writer takes them in turn."""

USAGE_BATCHES_QUEUED_MAX = 16
"""Usage batches that wait their turn, in arrival order, behind those in flight; one more answers 429 with
``Retry-After`` instead of waiting in an unbounded queue."""

USAGE_RETRY_AFTER_S = 1
"""The ``Retry-After`` of a usage batch refused because the queue is full, until the service has measured
how fast its queue drains (then the seconds the batches ahead take, at least 1)."""

USAGE_INTAKE_BATCHES_MAX = 256
"""Usage batches acknowledged (202) and not yet accrued, across every ``serve`` process of one store: the
durable backlog (``ledger.intake``). One more answers 429 with ``Retry-After``, nothing written."""

USAGE_INTAKE_BYTES_MAX = 2 << 30
"""Bytes of request bodies in that backlog (2 GiB); one more body past it answers 429, nothing written."""

USAGE_INTAKE_WAIT_S_MAX = 300
"""Longest a ``POST /usage-batches`` with ``Prefer: wait`` holds its answer for the accrual, in seconds
(then 202, and the batch stays queued)."""

USAGE_INTAKE_IDLE_S = 0.05
"""Seconds an accrual worker sleeps when it found no queued batch, before it looks again."""

USAGE_INTAKE_RETRY_S = 1.0
"""Seconds an accrual worker waits after the store failed under it, before it takes the batch again."""

USAGE_HANDOVER_LINES_MAX = 2_000_000
"""Lines of acknowledged batches one ``serve`` process keeps in memory for its accrual worker, as checked
(``ledger.intake.Handover``; about 100 bytes a line): a batch past it is built again from its body."""

SQL_PARAMS_PER_STATEMENT_MAX = 30_000
"""Rows are written in chunks so that no statement binds more parameters than the drivers accept."""

ID_LENGTH_MAX = 200
"""Longest caller-supplied id (event ids, output ids, model ids)."""

# Times -------------------------------------------------------------------------------------------
TIME_YEAR_MIN = 1970
TIME_YEAR_MAX = 2200
"""Every time endcredits parses or stores lies in the years TIME_YEAR_MIN..TIME_YEAR_MAX (UTC), inclusive:
year 1 or 9999 is a typo or a sentinel, never a revenue event, a grant or a payout."""

AUDIT_PAYLOAD_BYTES_MAX = 1 << 20

CHECKPOINTS_PER_RUN_MAX = 10_000
"""Most checkpoint hashes one training run records (an ensemble, or every saved step of a long run)."""

LIST_ROWS_MAX = 100_000
"""Most rows one listing returns (`people list --limit`, `works list`, `manifest show --works`)."""

RUN_SCORES_MAX = 100_000_000
"""Most scores (output x work, or output x payee) one recorded attribution run keeps: 800 MB of float64
in its scores file, and as much again while it is hashed."""

EXTERNAL_REASON_CHARS_MAX = 500
"""Longest reason an operator gives for accruing external scores (printed on every statement line)."""

OUTPUT_CONTENT_BYTES_MAX = 64 << 20
"""Largest output content (a generated image, tune or text) kept for statements."""

PREVIEW_IMAGE_PIXELS_MAX = 50_000_000
"""Largest image (width x height) a statement makes a thumbnail of; a larger one is shown by its id only,
so a crafted file cannot make the portal decode gigabytes."""

invariant(TRANSFER_AMOUNT_MICROUNITS_MAX >= 2**63 - 1, "transfers must hold amounts beyond int64")
invariant(REVENUE_PER_OUTPUT_MICROUNITS_MAX < AMOUNT_MICROUNITS_MAX, "an output fits in a transfer")
invariant(len(str(AMOUNT_MICROUNITS_MAX)) == AMOUNT_DIGITS_MAX, "AMOUNT_DIGITS_MAX out of step")
invariant(SUBUNIT_BITS >= 32, "the carry-forward needs at least 32 bits below the microunit")
invariant(OUTPUTS_PER_BATCH_MAX <= BATCH_SIZE_MAX, "a batch holds at least one line per output")
invariant(1970 <= TIME_YEAR_MIN < TIME_YEAR_MAX <= 9998, "the time window stays inside datetime's years")
invariant(
    USAGE_BATCHES_IN_FLIGHT_MAX >= 1 and USAGE_BATCHES_QUEUED_MAX >= 0 and USAGE_RETRY_AFTER_S >= 1,
    "the service admits a usage batch",
)
invariant(
    USAGE_INTAKE_BATCHES_MAX >= 1 and USAGE_INTAKE_BYTES_MAX >= 32 << 20 and USAGE_INTAKE_WAIT_S_MAX >= 1,
    "the backlog holds at least one usage batch of the largest body (32 MiB) and a wait is at least 1 s",
)
invariant(FOLD_PENDING_SEGMENTS_MAX >= 1 and FOLD_PENDING_LEGS_MAX >= 2, "a fold needs something pending")


def check_id(value: object, what: str, *, spaces: bool = True) -> str:
    """``value`` if it is an id: 1..ID_LENGTH_MAX printable characters, no leading or trailing space (and
    no space at all when ``spaces`` is False); else a one-line ``ValidationError`` naming ``what``.

    Printable is ``str.isprintable``: no control character (NUL, newline, tab, DEL), no format
    character (a bidirectional override), no separator other than the ASCII space, no lone surrogate.
    Ids reach file names, CSV cells, bank files and the database (PostgreSQL refuses NUL in text).
    """
    if (
        isinstance(value, str)
        and 0 < len(value) <= ID_LENGTH_MAX
        and value.isprintable()
        and (" " not in value if not spaces else value == value.strip())
    ):
        return value
    rule = "without spaces" if not spaces else "without leading or trailing spaces"
    shown = repr(value)[:60] + "..." if len(repr(value)) > 60 else repr(value)
    raise ValidationError(
        f"{what} {shown} must be 1..{ID_LENGTH_MAX} printable characters {rule} "
        "(no control characters such as NUL, a tab or a newline)"
    )


def check_ids(values: Iterable[object], what: str, *, spaces: bool = True) -> None:
    """``check_id`` for each of ``values``; a fast path for the common case (no space, nothing odd) checks
    10^6 ids in a few C-level passes instead of one Python call each."""
    items = values if isinstance(values, list) else list(values)
    try:
        joined = "".join(items)  # type: ignore[arg-type]  # a TypeError for anything but text
        lengths = list(map(len, items))
    except TypeError:
        joined, lengths = "", []
    fine = bool(lengths) and 0 < min(lengths) and max(lengths) <= ID_LENGTH_MAX
    if fine and joined.isprintable() and " " not in joined:
        return
    for value in items:
        check_id(value, what, spaces=spaces)
