"""qfleet.units against outside oracles: Prometheus' own duration parser (through promtool), hand-computed
values, and Python's datetime for RFC 3339."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qfleet.units import (
    MAX_DURATION_NS,
    NS,
    DurationError,
    TimestampError,
    format_duration,
    format_rfc3339,
    parse_duration,
    parse_rfc3339,
)
from tests.conftest import require_tool

S, M, H, D = NS, 60 * NS, 3600 * NS, 86400 * NS

# Values computed by hand from the unit definitions (Prometheus: 1w = 7d, 1y = 365d).
VALUES = [
    ("0", 0), ("90s", 90 * S), ("1h30m", 90 * M), ("1d", D), ("1w", 7 * D), ("1y", 365 * D),
    ("250ms", 250_000_000), ("5ms", 5_000_000), ("1m5ms", M + 5_000_000), ("1y2w3d4h5m6s7ms",
     365 * D + 14 * D + 3 * D + 4 * H + 5 * M + 6 * S + 7_000_000), ("0s", 0), ("00m", 0),
]
REJECTED = ["5m5m", "30m1h", "", "1.5h", "-1s", "1h 30m", " 1h", "1us", "5M", "1Q", "h", "1", "10", "1ms5s",
            "1d1y", "++1s", "1e3s", "0x10s"]


@pytest.mark.parametrize(("text", "ns"), VALUES)
def test_durations_have_their_hand_computed_values(text: str, ns: int) -> None:
    assert parse_duration(text) == ns


@pytest.mark.parametrize("text", REJECTED)
def test_malformed_durations_are_refused_naming_the_value(text: str) -> None:
    with pytest.raises(DurationError, match="duration .* is not valid: write"):
        parse_duration(text)


def test_a_fraction_is_answered_with_its_whole_spelling() -> None:
    with pytest.raises(DurationError, match="write 1h30m"):
        parse_duration("1.5h")
    with pytest.raises(DurationError, match="write 500ms"):
        parse_duration("0.5s")


def test_yaml_zero_is_the_only_number_accepted() -> None:
    assert parse_duration(0) == 0
    for bad in (1, 0.0, True, None, 5.5):
        with pytest.raises(DurationError, match="is not text"):
            parse_duration(bad)


def test_grammar_matches_prometheus(tmp_path: Path) -> None:
    """Every accepted and refused spelling gets the same verdict from promtool (Go's model.ParseDuration reads
    a rule's ``for:``)."""
    promtool = require_tool("promtool")
    for i, (text, expect_ok) in enumerate([*((t, True) for t, _ in VALUES), *((t, False) for t in REJECTED)]):
        if text in ("", " 1h"):  # YAML cannot carry these unquoted the same way; covered above
            continue
        rules = tmp_path / f"r{i}.yml"
        rules.write_text("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: vector(1)\n"
                         f"    for: {text!r}\n".replace("'", '"'))
        res = subprocess.run([promtool, "check", "rules", str(rules)], capture_output=True, text=True)
        assert (res.returncode == 0) == expect_ok, (text, res.stdout, res.stderr)
        ours = True
        try:
            parse_duration(text)
        except DurationError:
            ours = False
        assert ours == expect_ok, text


@given(st.integers(min_value=0, max_value=MAX_DURATION_NS // 1_000_000))
def test_format_is_the_inverse_of_parse(ms: int) -> None:
    ns = ms * 1_000_000
    text = format_duration(ns)
    assert parse_duration(text) == ns


def test_format_refuses_what_prometheus_cannot_spell() -> None:
    for bad in (-1, 1, 1_500, True):
        with pytest.raises(DurationError):
            format_duration(bad)  # type: ignore[arg-type]


def test_too_long_a_duration_is_refused() -> None:
    """100y is the documented maximum (shorter than Prometheus' 292y, so that now + duration fits in int64 ns)."""
    assert parse_duration("100y") == MAX_DURATION_NS == 100 * 365 * D
    for text in ("100y1ms", "101y", "300y", "99999999999999999999w", "9" * 5000 + "s"):
        with pytest.raises(DurationError, match="too long: the longest is 100y"):
            parse_duration(text)


@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1)),
       st.integers(min_value=-23 * 60 - 59, max_value=23 * 60 + 59))
def test_rfc3339_agrees_with_datetime(local: datetime, offset_min: int) -> None:
    zone = timezone(timedelta(minutes=offset_min))
    aware = local.replace(tzinfo=zone)
    text = aware.isoformat()  # RFC 3339 profile of ISO 8601: +HH:MM offset, up to 6 fraction digits
    delta = aware - datetime(1970, 1, 1, tzinfo=UTC)
    expect = (delta.days * 86_400 + delta.seconds) * NS + delta.microseconds * 1000
    assert parse_rfc3339(text) == expect
    assert parse_rfc3339(format_rfc3339(expect)) == expect
    assert datetime.fromisoformat(format_rfc3339(expect)) == aware


def test_rfc3339_keeps_nanoseconds_and_refuses_non_timestamps() -> None:
    assert parse_rfc3339("2026-01-01T00:00:00.123456789Z") - parse_rfc3339("2026-01-01T00:00:00Z") == 123_456_789
    assert parse_rfc3339("2026-01-01 00:00:00z") == parse_rfc3339("2026-01-01T00:00:00Z")
    for bad in ("2026-01-01T00:00:00", "2026-01-01", "2026-02-30T00:00:00Z", "2026-01-01T00:00:00+24:00",
                "yesterday", "2026-01-01T00:00:00.1234567891Z", 1767225600):
        with pytest.raises(TimestampError, match="write RFC 3339"):
            parse_rfc3339(bad)
