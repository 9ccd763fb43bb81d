"""Issue 12: ``/healthz`` said ok while every write failed; there was no ``/readyz``.

A real receiver on 127.0.0.1 over a real database that the test breaks: a PostgreSQL database
dropped under it (unreachable), a SQLite table renamed away (every write fails) and renamed
back (writes succeed again), a queue filled past its high-water mark by holding SQLite's write
lock. Oracles: the HTTP status codes and the JSON the endpoints answer.
"""

from __future__ import annotations

import json
import random
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine

from qfleet.collector.migrate import upgrade
from qfleet.collector.receiver import Receiver, ReceiverConfig
from qfleet.collector.store import Store, open_engine
from tests.collector.otlp_payloads import (
    get,
    metric,
    post,
    random_spans,
    scrape,
    sqlite_write_lock,
    trace_request,
    wait_until,
)

TOKEN = "ingest-health-token"
WAIT_S = 30


@contextmanager
def serving(engine: Engine, **config: Any) -> Iterator[Receiver]:
    rx = Receiver(Store(engine), ReceiverConfig(port=0, token=TOKEN, **config))
    rx.start()
    try:
        yield rx
    finally:
        rx.stop(timeout_s=WAIT_S)


def body(seed: int, n: int = 5) -> bytes:
    return trace_request(random_spans(random.Random(seed), n)).SerializeToString()


def probe(rx: Receiver, path: str) -> tuple[int, dict[str, Any]]:
    r = get(rx.address, path)
    return r.status, json.loads(r.body)


def test_healthz_and_readyz_turn_503_when_the_postgresql_database_goes_away(pg_admin_url: str,
                                                                          pg_url: str) -> None:
    import psycopg

    engine = open_engine(pg_url)
    upgrade(engine)
    try:
        with serving(engine) as rx:
            assert post(rx.address, "/v1/traces", body(1), token=TOKEN).status == 200
            assert probe(rx, "/healthz")[0] == 200
            assert probe(rx, "/readyz") == (200, {"status": "ok", "reasons": [], "queue_items": 0,
                                                  "queue_high_water_items": 160_000})
            name = pg_url.rsplit("/", 1)[1]
            with psycopg.connect(pg_admin_url.replace("+psycopg", ""), autocommit=True) as c:
                c.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            for seed in (2, 3):  # every write now fails; the client is told to retry
                assert post(rx.address, "/v1/traces", body(seed), token=TOKEN).status == 503
            code, health = probe(rx, "/healthz")
            assert code == 503, health  # old: 200 {"status": "ok"} while every write failed
            assert health["status"] == "unavailable" and health["consecutive_write_failures"] == 2
            assert "write(s) failed" in health["reason"] and "OperationalError" in health["reason"]
            code, ready = probe(rx, "/readyz")
            assert code == 503
            assert any(r.startswith("the database does not answer") for r in ready["reasons"]), ready
            samples = scrape(rx.address)
            assert metric(samples, "qfleet_collector_writer_consecutive_failures") == 2
    finally:
        engine.dispose()


def test_healthz_recovers_once_a_write_commits(sqlite_engine: Engine) -> None:
    with serving(sqlite_engine) as rx:
        with sqlite_engine.begin() as c:
            c.exec_driver_sql("ALTER TABLE spans RENAME TO spans_away")
        assert post(rx.address, "/v1/traces", body(4), token=TOKEN).status == 503
        code, health = probe(rx, "/healthz")
        assert code == 503 and "no such table: spans" in health["reason"], health
        assert probe(rx, "/readyz")[0] == 503
        with sqlite_engine.begin() as c:
            c.exec_driver_sql("ALTER TABLE spans_away RENAME TO spans")
        assert post(rx.address, "/v1/traces", body(4), token=TOKEN).status == 200
        code, health = probe(rx, "/healthz")
        assert code == 200 and health["consecutive_write_failures"] == 0
        assert "no such table" in health["last_write_error"]  # kept for the record
        assert probe(rx, "/readyz")[0] == 200


def test_readyz_is_503_while_the_queue_is_above_its_high_water_mark(sqlite_engine: Engine) -> None:
    path = sqlite_engine.url.database
    assert path
    replies: list[int] = []
    with serving(sqlite_engine, queue_items=10, ack_timeout_s=WAIT_S) as rx:
        assert probe(rx, "/readyz")[0] == 200
        with sqlite_write_lock(path):  # the writer cannot commit: the request stays queued
            sender = threading.Thread(target=lambda: replies.append(
                post(rx.address, "/v1/traces", body(5, n=9), token=TOKEN, timeout=WAIT_S).status))
            sender.start()
            wait_until(lambda: rx.health()["queue_items"] == 9, timeout=WAIT_S, what="the request queued")
            code, ready = probe(rx, "/readyz")
            assert code == 503 and "high-water mark 8" in ready["reasons"][0], ready
            assert probe(rx, "/healthz")[0] == 200  # busy, not broken
        sender.join(WAIT_S)
        assert replies == [200]
        assert probe(rx, "/readyz")[0] == 200

