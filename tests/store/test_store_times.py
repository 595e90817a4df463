"""Times and periods: one window (limits.TIME_YEAR_MIN..TIME_YEAR_MAX, UTC) wherever a time is parsed or
stored, and one-line messages that give the value and the accepted form."""

from __future__ import annotations

import datetime as dt

import pytest

from endcredits.errors import ValidationError
from endcredits.limits import TIME_YEAR_MAX, TIME_YEAR_MIN
from endcredits.store.engine import format_time, normalize_time, parse_period, parse_time


@pytest.mark.parametrize(
    ("text", "stored"),
    [
        ("2026-11-21", "2026-11-21T00:00:00.000000Z"),
        ("2026-11-21T12:00:00Z", "2026-11-21T12:00:00.000000Z"),
        ("2026-11-21T12:00:00+02:00", "2026-11-21T10:00:00.000000Z"),
        (f"{TIME_YEAR_MIN}-01-01T00:00:00Z", f"{TIME_YEAR_MIN}-01-01T00:00:00.000000Z"),
        (f"{TIME_YEAR_MAX}-12-31T23:59:59.999999Z", f"{TIME_YEAR_MAX}-12-31T23:59:59.999999Z"),
        (f"{TIME_YEAR_MIN}-01-01T01:00:00+01:00", f"{TIME_YEAR_MIN}-01-01T00:00:00.000000Z"),
    ],
)
def test_times_inside_the_window_are_stored_in_utc(text: str, stored: str) -> None:
    assert normalize_time(text) == stored
    assert parse_time(stored) == parse_time(text)


@pytest.mark.parametrize(
    "text",
    [
        "9999-12-31T23:59:59Z",
        "9999-12-31T23:00:00-05:00",  # beyond datetime's range once in UTC
        "0001-01-01T00:00:00Z",
        "0001-01-01T00:30:00+01:00",
        f"{TIME_YEAR_MIN - 1}-12-31T23:59:59Z",
        f"{TIME_YEAR_MIN}-01-01T00:30:00+01:00",  # 1969 in UTC
        f"{TIME_YEAR_MAX + 1}-01-01",
    ],
)
def test_times_outside_the_window_are_refused_in_one_line(text: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_time(text)
    message = str(info.value)
    assert "\n" not in message and repr(text) in message
    assert f"years {TIME_YEAR_MIN}..{TIME_YEAR_MAX} UTC" in message


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("2026-13-01", "malformed time '2026-13-01'"),
        ("2026-02-30T00:00:00Z", "malformed time"),
        ("yesterday", "malformed time 'yesterday'"),
        ("2026-11-21T12:00:00", "has no timezone"),
        ("2026-11-21T12:00:00\x00Z", "malformed time '2026-11-21T12:00:00\\x00Z'"),
        ("2026-11-21\nT12:00:00Z", "malformed time"),
    ],
)
def test_malformed_times_name_the_value_and_the_form(text: str, says: str) -> None:
    with pytest.raises(ValidationError, match=r"2026-11-21T12:00:00Z") as info:
        parse_time(text)
    assert says in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(
    "value",
    [
        dt.datetime(9999, 12, 31, tzinfo=dt.UTC),
        dt.datetime(1, 1, 1, tzinfo=dt.UTC),
        dt.datetime(1969, 12, 31, 23, 59, tzinfo=dt.UTC),
    ],
)
def test_a_time_outside_the_window_is_never_stored(value: dt.datetime) -> None:
    """Year 1 used to be written as '1-01-01T...' (unpadded) and then could not be read back."""
    with pytest.raises(ValidationError, match="outside the accepted window"):
        format_time(value)


def test_a_naive_time_or_another_type_is_refused() -> None:
    with pytest.raises(ValidationError, match="has no timezone"):
        format_time(dt.datetime(2026, 1, 1))
    with pytest.raises(ValidationError, match="must be a datetime"):
        format_time(dt.date(2026, 1, 1))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="must be text"):
        parse_time(20260101)  # type: ignore[arg-type]


@pytest.mark.parametrize("period", ["2026-01", "2026-12", f"{TIME_YEAR_MIN}-01", f"{TIME_YEAR_MAX}-12"])
def test_periods_are_months_of_the_window(period: str) -> None:
    assert parse_period(period) == period


@pytest.mark.parametrize(
    "period",
    ["2026-13", "2026-00", "2026-1", "2026/01", "26-01", "9999-01", "0001-01", f"{TIME_YEAR_MIN - 1}-12",
     "２０２６-01", "2026-0\x00", "", "2026-01\n", "2026-011"],
)  # fmt: skip
def test_other_periods_are_refused_in_one_line(period: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse_period(period)
    message = str(info.value)
    assert message.startswith(f"period {period!r} must be YYYY-MM") and "\n" not in message
    assert "such as 2026-03" in message
