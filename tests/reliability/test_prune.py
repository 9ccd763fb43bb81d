"""Issue 12 item 2: retention is measured from the store's newest data, not the wall clock, on SQLite and PostgreSQL.

Before: ``Store.prune`` (and so ``qfleet db prune --older-than 14d``) deleted what was older than ``clock() - 14d``:
every raw span of a simulated store whose data lie years in the past, none of one whose data lie in the future.
Oracle: the timestamps the test wrote, filtered by hand, against a plain SQL read of what is left.
"""

from __future__ import annotations

import io

import pytest
from sqlalchemy import Engine, text

from qfleet.collector.cli import main as collector_main
from qfleet.collector.convert import MetricSink, TelemetryBatch, resource_row
from qfleet.collector.schema import MetricType
from qfleet.collector.store import Store, StoreError
from qfleet.units import NS
from tests.collector.test_store import spans_at, with_events
from tests.conftest import FakeClock

DAY = 86_400 * NS
HOUR = 3_600 * NS
# The machine's "now" for every test (2027-01-15): both eras below lie years away from it.
NOW = 1_800_000_000 * NS
ERAS = {"2001": 978_307_200 * NS, "2030": 1_893_456_000 * NS}  # 2001-01-01, 2030-01-01 (UTC)


def _times(start: int) -> list[int]:
    """Thirty days of data from ``start``, one timestamp every six hours (120 of them)."""
    return [start + i * 6 * HOUR for i in range(120)]


def _fill(store: Store, times: list[int]) -> None:
    store.write(with_events(spans_at(times, prefix=1)))
    batch = TelemetryBatch()
    res = resource_row(batch, {"service.name": "agent"})
    sink = MetricSink(batch)
    for i, t in enumerate(times):
        sink.add(res, "qfleet_qubit_t1_seconds", MetricType.GAUGE, 0, False, "s", "", {}, t + 1, float(i))
    store.write(batch)


def _left(engine: Engine) -> tuple[list[int], list[int], int]:
    with engine.connect() as c:
        spans = sorted(c.execute(text("SELECT start_time_unix_nano FROM spans")).scalars())
        samples = sorted(c.execute(text("SELECT time_unix_nano FROM metric_samples")).scalars())
        events = int(c.execute(text("SELECT count(*) FROM span_events")).scalar_one())
    return spans, samples, events


@pytest.mark.parametrize("era", ERAS, ids=[f"data from {e}" for e in ERAS])
def test_prune_keeps_the_last_14_days_of_the_data_whatever_the_clock(engine: Engine, era: str) -> None:
    times = _times(ERAS[era])
    store = Store(engine, clock=FakeClock(NOW))
    _fill(store, times)
    newest = max(times) + 1  # the last sample, a nanosecond after the last span
    horizon = newest - 14 * DAY
    kept = [t for t in times if t >= horizon]
    assert 0 < len(kept) < len(times)  # the test data straddle the horizon

    res = store.prune(older_than_ns=14 * DAY)

    spans, samples, events = _left(engine)
    assert spans == kept
    assert samples == [t + 1 for t in times if t + 1 >= horizon]
    assert events == len(kept)
    assert (res.spans, res.span_events, res.samples) == (len(times) - len(kept), len(times) - len(kept),
                                                         len(times) - len(samples))
    assert res.horizon_unix_nano == horizon
    assert store.prune(older_than_ns=14 * DAY).spans == 0  # a second pass finds nothing more


def test_prune_from_now_is_still_offered_and_an_empty_store_prunes_nothing(engine: Engine) -> None:
    times = _times(ERAS["2030"])
    store = Store(engine, clock=FakeClock(NOW))
    assert store.prune(older_than_ns=14 * DAY).horizon_unix_nano is None
    _fill(store, times)
    res = store.prune(older_than_ns=14 * DAY, relative_to="now")  # all data lie after NOW - 14d
    assert (res.spans, res.samples, res.horizon_unix_nano) == (0, 0, NOW - 14 * DAY)
    assert _left(engine)[0] == times
    with pytest.raises(StoreError, match="relative_to='yesterday'"):
        store.prune(older_than_ns=DAY, relative_to="yesterday")  # type: ignore[arg-type]


def test_db_prune_reports_the_horizon_and_its_reference(sqlite_url: str) -> None:
    def run(*argv: str) -> tuple[int, str]:
        out = io.StringIO()
        code = collector_main(["db", *argv, "--db", sqlite_url], environ={}, stdout=out, stderr=io.StringIO(),
                              clock=FakeClock(NOW))
        return code, out.getvalue()

    assert run("upgrade")[0] == 0
    assert run("prune", "--older-than", "14d") == (0, "nothing to prune: the store holds no spans or samples\n")
    from qfleet.collector.store import open_engine

    engine = open_engine(sqlite_url)
    times = _times(ERAS["2001"])
    _fill(Store(engine), times)
    # 2001-01-30T18:00:00Z (the last span) + 1 ns (the last sample) - 14 d, by hand.
    horizon = max(times) + 1 - 14 * DAY
    gone = sum(t < horizon for t in times)
    gone_samples = sum(t + 1 < horizon for t in times)  # the sample 14 d before the last one sits on the horizon
    assert run("prune", "--older-than", "14d") == (0, (
        f"pruned {gone} spans, {gone} span events, 0 span links, {gone_samples} samples older than "
        "2001-01-16T18:00:00.000000001Z (14d before the newest data)\n"))
    left, left_samples = len(times) - gone, len(times) - gone_samples
    assert run("prune", "--older-than", "1d", "--relative-to", "now") == (0, (
        f"pruned {left} spans, {left} span events, 0 span links, {left_samples} samples older than "
        "2027-01-14T08:00:00Z (1d before now)\n"))
    engine.dispose()
