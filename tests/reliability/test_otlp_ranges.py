"""Issue 12 item 3: out-of-range OTLP values are rejected or clipped identically on SQLite and PostgreSQL.

Before: PostgreSQL's binary COPY wrapped ``status.code`` 65538 to 2 (ERROR), ``kind`` 40000 to
-25536 and ``dropped_attributes_count`` 2**32-1 to -1, where SQLite stored them as sent; an
80-hex linked trace id was stored on SQLite and failed the whole request on PostgreSQL; a NUL
differed likewise. Oracle: raw SQL selects of both backends, and the inputs themselves.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span
from sqlalchemy import Engine, text

from qfleet.collector.decode import decode_body, export_response, rejection_message
from qfleet.collector.migrate import upgrade
from qfleet.collector.store import Store, open_engine
from tests.collector.otlp_payloads import kvs, make_span
from tests.collector.test_convert import to_otlp_json

T0 = 1_795_000_000_000_000_000


def _sid(i: int) -> bytes:
    return (i + 1).to_bytes(8, "big")


def _tid(i: int) -> bytes:
    return (i + 1).to_bytes(16, "big")


def hostile_request() -> ExportTraceServiceRequest:
    """One good span and one span per hostile value (named after it)."""
    req = ExportTraceServiceRequest()
    rs = req.resource_spans.add()
    rs.resource.attributes.extend(kvs({"service.name": "svc"}))
    ss = rs.scope_spans.add()
    ss.spans.append(make_span(_tid(0), _sid(0), "good"))
    sp = make_span(_tid(1), _sid(1), "status-65538")
    sp.status.code = 65538  # type: ignore[assignment]
    ss.spans.append(sp)
    ss.spans.append(make_span(_tid(2), _sid(2), "kind-40000", kind=40000))
    sp = make_span(_tid(3), _sid(3), "dropped-max-uint32")
    sp.dropped_attributes_count = 2**32 - 1
    sp.dropped_events_count = 2**31
    ss.spans.append(sp)
    sp = make_span(_tid(4), _sid(4), "link-80-hex")
    sp.links.add(trace_id=bytes(40), span_id=_sid(9))
    ss.spans.append(sp)
    sp = make_span(_tid(5), _sid(5), "nul\x00name", attrs={"k\x00": "v\x00v"})
    sp.events.add(name="e\x00", time_unix_nano=T0 + 1)
    ss.spans.append(sp)
    sp = make_span(_tid(6), _sid(6), "event-time-2**64-1")
    sp.events.add(name="late", time_unix_nano=2**64 - 1)
    ss.spans.append(sp)
    return req


def _store(engine: Engine, body: bytes, ctype: str = "application/x-protobuf") -> str:
    batch = decode_body("spans", body, ctype, gzipped=False, max_bytes=len(body))
    Store(engine, clock=lambda: T0).write(batch)
    return rejection_message(batch, "spans") + f" [rejected={batch.rejected_spans}]"


def _rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    with engine.connect() as c:
        return {
            "spans": [tuple(r) for r in c.execute(text(
                "SELECT name, kind, status_code, dropped_attributes_count, dropped_events_count, "
                "attributes FROM spans ORDER BY span_id"))],
            "events": [tuple(r) for r in c.execute(text(
                "SELECT name, time_unix_nano FROM span_events ORDER BY span_id, seq"))],
            "links": [tuple(r) for r in c.execute(text(
                "SELECT linked_trace_id, linked_span_id FROM span_links ORDER BY span_id, seq"))],
        }


def _normal(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, list[tuple[Any, ...]]]:
    # SQLite returns JSON as text, PostgreSQL as a dict: compare the parsed value.
    return {k: [tuple(json.loads(x) if isinstance(x, str) and x.startswith("{") else x for x in r)
                for r in v] for k, v in rows.items()}


def test_hostile_values_are_rejected_or_clipped_never_wrapped(engine: Engine) -> None:
    message = _store(engine, hostile_request().SerializeToString())
    for needle in ("status.code=65538", "kind=40000", "40-byte trace_id", "2**63", "[rejected=4]",
                   "2 counts clipped to 2**31-1", "NULs replaced"):
        assert needle in message
    rows = _normal(_rows(engine))
    assert rows["spans"] == [
        ("good", 1, 0, 0, 0, {}),
        ("dropped-max-uint32", 1, 0, 2**31 - 1, 2**31 - 1, {}),
        ("nul\ufffdname", 1, 0, 0, 0, {"k\ufffd": "v\ufffdv"}),
    ]
    assert rows["events"] == [("e\ufffd", T0 + 1)]
    assert rows["links"] == []


@pytest.fixture
def both(sqlite_url: str, pg_url: str) -> Iterator[tuple[Engine, Engine]]:
    engines = (open_engine(sqlite_url), open_engine(pg_url))
    for e in engines:
        upgrade(e)
    yield engines
    for e in engines:
        e.dispose()


@pytest.mark.postgres
@pytest.mark.parametrize("encoding", ["protobuf", "json"])
def test_sqlite_and_postgresql_store_identical_rows(both: tuple[Engine, Engine], encoding: str) -> None:
    req = hostile_request()
    if encoding == "json":
        body, ctype = to_otlp_json(req), "application/json"
    else:
        body, ctype = req.SerializeToString(), "application/x-protobuf"
    sqlite, pg = both
    assert _store(sqlite, body, ctype) == _store(pg, body, ctype)
    assert _normal(_rows(sqlite)) == _normal(_rows(pg))


def test_json_span_with_out_of_range_count_is_rejected_alone(engine: Engine) -> None:
    # 2**32 is no uint32: before, the whole JSON request was refused (400).
    good = {"traceId": "ab" * 16, "spanId": "cd" * 8, "name": "good", "startTimeUnixNano": str(T0),
            "endTimeUnixNano": str(T0 + 1)}
    bad = {**good, "spanId": "ef" * 8, "name": "too-many-dropped", "droppedAttributesCount": 2**32}
    link = {**good, "spanId": "12" * 8, "name": "bad-link", "links": [{"traceId": "ab" * 40, "spanId": "cd" * 8}]}
    body = json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [good, bad, link]}]}]}).encode()
    message = _store(engine, body, "application/json")
    assert "too-many-dropped" in message and "bad-link" in message and "[rejected=2]" in message
    assert [r[0] for r in _rows(engine)["spans"]] == ["good"]


def test_partial_success_names_the_rejected_spans() -> None:
    body = hostile_request().SerializeToString()
    batch = decode_body("spans", body, "application/x-protobuf", gzipped=False, max_bytes=len(body))
    answer = json.loads(export_response("spans", True, batch.rejected_spans, rejection_message(batch, "spans")))
    assert answer["partialSuccess"]["rejectedSpans"] == "4"
    assert "status-65538" in answer["partialSuccess"]["errorMessage"]


def test_unknown_span_kind_is_no_valid_span() -> None:
    assert Span(kind=40000).kind == 40000  # protobuf enums are open: only our check refuses it
