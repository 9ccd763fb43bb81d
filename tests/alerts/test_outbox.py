"""The SQL outbox on SQLite and PostgreSQL: enqueue in the caller's transaction, due, retry, dead letters."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select

from qfleet.alerts.model import Alert, Notification, PagerDutyFields, Receiver
from qfleet.alerts.outbox import (
    PAGERDUTY_URL,
    Backoff,
    BackoffError,
    LeaseLost,
    Outbox,
    OutboxError,
    OutboxItem,
    items_for,
)
from qfleet.alerts.schema import AlertOutbox
from qfleet.units import NS
from tests.conftest import FakeClock

NO_JITTER = Backoff(jitter=0)
LEASE = 60 * NS


def claimed(ob: Outbox, id: str) -> Outbox:
    """``ob`` after it leased ``id`` (marks need the lease)."""
    assert id in [i.id for i in ob.claim(100, lease_ns=LEASE)], id
    return ob


def item(i: int, *, group: str = "g", url: str = "http://127.0.0.1:1/hook") -> OutboxItem:
    return OutboxItem(id=f"id-{i:03d}", receiver="oncall", integration="webhook", url=url, group_key=group,
                      payload={"n": i, "nested": {"ok": True}})


def test_enqueue_then_due_roundtrips_payload(engine: Engine, clock: FakeClock) -> None:
    ob = Outbox(engine, clock=clock)
    assert ob.enqueue([item(1, group="a"), item(2, group="b")]) == 2
    due = ob.due(10)
    assert [d.id for d in due] == ["id-001", "id-002"]
    assert due[0].payload == {"n": 1, "nested": {"ok": True}}
    assert due[0].attempts == 0
    assert ob.stats() == {"pending": 2, "delivered": 0, "dead": 0}


def test_enqueue_is_idempotent_on_id(engine: Engine, clock: FakeClock) -> None:
    ob = Outbox(engine, clock=clock)
    ob.enqueue([item(1)])
    claimed(ob, "id-001").mark_delivered("id-001")
    # Re-enqueueing after a crash-and-replay must neither duplicate nor resurrect the delivered item.
    assert ob.enqueue([item(1), item(2)]) == 1
    assert ob.stats() == {"pending": 1, "delivered": 1, "dead": 0}


def test_enqueue_joins_the_callers_transaction(engine: Engine, clock: FakeClock) -> None:
    ob = Outbox(engine, clock=clock)
    with pytest.raises(RuntimeError), engine.begin() as conn:
        ob.enqueue([item(1)], conn=conn)
        raise RuntimeError("the state change failed")
    assert ob.stats()["pending"] == 0          # rolled back with the caller
    with engine.begin() as conn:
        ob.enqueue([item(2)], conn=conn)
    assert [d.id for d in ob.due(10)] == ["id-002"]


def test_due_respects_next_attempt_limit_and_age(engine: Engine, clock: FakeClock) -> None:
    ob = Outbox(engine, clock=clock)
    ob.enqueue([item(1, group="a")])
    clock.advance(NS)
    ob.enqueue([item(2, group="b"), item(3, group="c")])
    assert [d.id for d in ob.due(2)] == ["id-001", "id-002"]          # oldest first, limited
    assert claimed(ob, "id-001").mark_failed("id-001", "HTTP 503", max_attempts=5, backoff=NO_JITTER) == "pending"
    ob.release(["id-002", "id-003"])
    assert [d.id for d in ob.due(10)] == ["id-002", "id-003"]          # backing off for 1 s
    clock.advance(NS)
    assert [d.id for d in ob.due(10)] == ["id-001", "id-002", "id-003"]
    with pytest.raises(OutboxError, match="limit=0"):
        ob.due(0)


def test_due_is_fifo_per_stream(engine: Engine, clock: FakeClock) -> None:
    # A PagerDuty resolve must not overtake its trigger while the trigger backs off.
    ob = Outbox(engine, clock=clock)
    ob.enqueue([item(1, group="g")])
    clock.advance(1)
    ob.enqueue([item(2, group="g"), item(3, group="other")])
    assert [d.id for d in ob.due(10)] == ["id-001", "id-003"]
    claimed(ob, "id-001").mark_failed("id-001", "HTTP 503", max_attempts=5, backoff=NO_JITTER)
    ob.release(["id-003"])
    assert [d.id for d in ob.due(10)] == ["id-003"]                     # id-002 waits behind id-001
    clock.advance(NS)
    claimed(ob, "id-001").mark_failed("id-001", "HTTP 400", max_attempts=5, backoff=NO_JITTER, permanent=True)
    ob.release(["id-003"])
    assert [d.id for d in ob.due(10)] == ["id-002", "id-003"]           # a dead head unblocks the stream


def test_mark_failed_backs_off_then_dead_after_max_attempts(engine: Engine, clock: FakeClock) -> None:
    ob = Outbox(engine, clock=clock)
    ob.enqueue([item(1)])
    t0 = clock()
    assert claimed(ob, "id-001").mark_failed("id-001", "timeout", max_attempts=3, backoff=NO_JITTER) == "pending"
    row = ob.get("id-001")
    assert row is not None and row["attempts"] == 1 and row["next_attempt_unix_nano"] == t0 + NS
    assert row["last_error"] == "timeout"
    clock.advance(NS)
    assert claimed(ob, "id-001").mark_failed("id-001", "timeout", max_attempts=3, backoff=NO_JITTER) == "pending"
    assert ob.get("id-001")["next_attempt_unix_nano"] == t0 + 3 * NS  # type: ignore[index]
    clock.advance(2 * NS)
    assert claimed(ob, "id-001").mark_failed("id-001", "timeout", max_attempts=3, backoff=NO_JITTER) == "dead"
    assert ob.stats() == {"pending": 0, "delivered": 0, "dead": 1}
    assert ob.due(10) == []
    # Later reports do not resurrect it.
    with pytest.raises(LeaseLost) as lost:
        ob.mark_delivered("id-001")
    assert lost.value.state == "dead" and ob.stats()["dead"] == 1


def test_retry_after_extends_backoff(engine: Engine, clock: FakeClock) -> None:
    ob = Outbox(engine, clock=clock)
    ob.enqueue([item(1)])
    claimed(ob, "id-001").mark_failed("id-001", "HTTP 429", max_attempts=5, backoff=NO_JITTER, retry_after_s=30)
    assert ob.get("id-001")["next_attempt_unix_nano"] == clock() + 30 * NS  # type: ignore[index]


def test_mark_delivered_records_time_and_unknown_id_errors(engine: Engine, clock: FakeClock) -> None:
    ob = Outbox(engine, clock=clock)
    ob.enqueue([item(1)])
    clock.advance(5)
    assert claimed(ob, "id-001").mark_delivered("id-001") == "delivered"
    assert ob.get("id-001")["delivered_unix_nano"] == clock()  # type: ignore[index]
    assert ob.due(10) == []
    with pytest.raises(OutboxError, match="no outbox item 'nope'"):
        ob.mark_delivered("nope")
    with pytest.raises(OutboxError, match="no outbox item 'nope'"):
        ob.mark_failed("nope", "x", max_attempts=2, backoff=NO_JITTER)


def test_rows_use_the_schema_columns(engine: Engine, clock: FakeClock) -> None:
    Outbox(engine, clock=clock).enqueue([item(7)])
    with engine.connect() as c:
        row = c.execute(select(AlertOutbox.__table__)).mappings().one()
    assert row["state"] == "pending" and row["attempts"] == 0 and row["created_unix_nano"] == clock()
    assert row["integration"] == "webhook" and row["delivered_unix_nano"] is None


def test_item_validation() -> None:
    with pytest.raises(OutboxError, match="'sms'"):
        OutboxItem(id="x", receiver="r", integration="sms", url="http://h/", group_key="g",  # type: ignore[arg-type]
                   payload={})
    with pytest.raises(OutboxError, match="1-64"):
        OutboxItem(id="x" * 65, receiver="r", integration="webhook", url="http://h/", group_key="g", payload={})


def test_backoff_grows_exponentially_within_jitter_bounds() -> None:
    b = Backoff(base_s=1, factor=2, max_s=300, jitter=0.2, seed=7)
    for attempt in range(1, 15):
        raw = min(300.0, 2.0 ** (attempt - 1))
        delays = [b.delay_s(attempt) for _ in range(200)]
        assert all(raw * 0.8 <= d <= raw * 1.2 for d in delays), attempt
        assert max(delays) - min(delays) > raw * 0.2            # the jitter is really applied
    assert Backoff(jitter=0).delay_s(10_000) == 300.0           # no overflow far out
    same = [Backoff(seed=1).delay_s(3) for _ in range(2)]
    assert same[0] == same[1]                                   # seedable


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"base_s": 0}, "base_s=0"), ({"factor": 0.5}, "factor=0.5"), ({"max_s": 0.5}, "max_s=0.5"),
    ({"jitter": 1.0}, "jitter=1.0"),
])
def test_backoff_validation(kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(BackoffError, match=match):
        Backoff(**kwargs)  # type: ignore[arg-type]


def test_items_for_honours_send_resolved_and_defaults_pagerduty_url() -> None:
    a = Alert(labels=(("alertname", "X"),), starts_at=0)
    r = Alert(labels=(("alertname", "Y"),), starts_at=0, ends_at=5)
    rcv = Receiver(name="oncall", webhooks=(("http://h/all", True, 0), ("http://h/firing", False, 0)),
                   pagerduty=(("k" * 32, True, "", PagerDutyFields()),))
    n = Notification(at=10, receiver="oncall", group_key="g", group_labels=(), reason="some alerts resolved",
                     firing=(a,), resolved=(r,))
    items = items_for(n, rcv, external_url="http://qfleet")
    assert [(i.integration, i.url) for i in items] == [
        ("webhook", "http://h/all"), ("webhook", "http://h/firing"), ("pagerduty", PAGERDUTY_URL)]
    assert len(items[0].payload["alerts"]) == 2 and len(items[1].payload["alerts"]) == 1
    assert len({i.id for i in items}) == 3
    done = Notification(at=20, receiver="oncall", group_key="g", group_labels=(), reason="all alerts resolved",
                        firing=(), resolved=(a, r))
    # sre.md §17.2 row 3: "all alerts resolved (logged always; sent only if send_resolved)"
    assert [i.url for i in items_for(done, rcv, external_url="")] == ["http://h/all", PAGERDUTY_URL]
