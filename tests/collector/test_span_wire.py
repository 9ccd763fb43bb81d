"""The compiled OTLP span decoder (collector/_span_wire.pyx) against the full path (upb + AttributeReader).

The oracle is upb, protobuf's own parser, with the pure-Python conversion on top: on every request where the
compiled decoder answers, its rows must equal the full path's (attributes compared as decoded JSON, key order
included), and the full path must have had nothing to reject, cut or count. Requests come from a strategy
that covers what the decoder refuses (events, links, arrays, NULs, bad ids, limits, NaN, repeated keys,
malformed bytes) and what it must read right (fields in any order, unknown fields, last-wins scalars,
unicode and control characters, integer and float extremes).
"""

from __future__ import annotations

import json
import math
import os
import random
import sqlite3
import threading
from typing import Any

import pytest
from google.protobuf import descriptor_pool
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status
from sqlalchemy import Engine, text

from qfleet.collector import span_rows
from qfleet.collector.decode import DecodeFailure, decode_body
from qfleet.collector.limits import Limits
from qfleet.collector.otlp import MEDIA_PROTOBUF, decode_trace_request
from qfleet.collector.rows import PROMOTED_KEYS, SPAN_COLUMNS, TelemetryBatch
from qfleet.collector.span_rows import from_trace_protobuf, from_trace_request
from qfleet.collector.store import Store
from tests.collector.otlp_payloads import T0
from tests.conftest import require

ATTRS = SPAN_COLUMNS.index("attributes")
SMALL = Limits(max_attributes_per_item=4, max_attribute_value_length=8, max_events_per_span=2,
               max_links_per_span=2, max_attributes_per_request=12)

NOT_BUILT = "the compiled decoder was not built (no C compiler at install time): the full path converts every request"


@pytest.fixture(scope="module")
def compiled() -> None:
    """Tests of the compiled decoder need it built (CI builds it: there, a missing build fails)."""
    require(span_rows.COMPILED, NOT_BUILT)


def full_path(body: bytes, limits: Limits) -> TelemetryBatch | None:
    """upb, then the pure-Python conversion; None when upb refuses the body."""
    try:
        req = decode_trace_request(body, MEDIA_PROTOBUF[0])
    except DecodeFailure:
        return None
    return from_trace_request(req, limits)


def assert_same_rows(fast: TelemetryBatch, full: TelemetryBatch) -> None:
    assert len(fast.spans) == len(full.spans)
    for a, b in zip(fast.spans, full.spans, strict=True):
        assert a[:ATTRS] + a[ATTRS + 1:] == b[:ATTRS] + b[ATTRS + 1:]
        assert isinstance(a[ATTRS], str)  # JSON text, written by the decoder
        assert list(json.loads(a[ATTRS]).items()) == list(b[ATTRS].items())
    assert fast.resources == full.resources
    assert (fast.events, fast.links, fast.rejected_spans, fast.adjusted) == ([], [], 0, {})


def check(body: bytes, limits: Limits) -> bool:
    """Compare both paths on ``body``; True when the compiled decoder answered."""
    fast = from_trace_protobuf(body, limits)
    full = full_path(body, limits)
    if fast is None:
        return False
    assert full is not None, "the compiled decoder accepted a body upb refuses"
    assert full.rejected_spans == 0 and full.adjusted == {} and not full.events and not full.links
    assert_same_rows(fast, full)
    return True


# -- strategies -----------------------------------------------------------------------------------------

texts = st.one_of(
    st.sampled_from(["", "job.run", "qfleet.node.id", "qfleet.hardware.type", "service.name", "ok", "null"]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12),
    st.text(alphabet=st.sampled_from(['"', "\\", "\n", "\x01", "\x1f", "\x7f", "é", "\u2028", "😀", "a"]),
            max_size=10),
)
keys = st.one_of(st.sampled_from(["a", "b", "service.name", *PROMOTED_KEYS]), texts)
doubles = st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                    st.sampled_from([0.0, -0.0, 1e16, 1e-7, 5e-324, 1.7976931348623157e308, 0.9819]))
ints = st.one_of(st.integers(-2**63, 2**63 - 1), st.sampled_from([0, -1, 2**63 - 1, -2**63]))


@st.composite
def any_values(draw: st.DrawFn) -> AnyValue:
    """A scalar value as the decoder reads it (unset and two oneof members on the wire included)."""
    kind = draw(st.sampled_from(["s", "s", "i", "d", "b", "unset", "s-then-i", "i-then-s"]))
    if kind == "s":
        return AnyValue(string_value=draw(texts))
    if kind == "i":
        return AnyValue(int_value=draw(ints))
    if kind == "d":
        return AnyValue(double_value=draw(doubles))
    if kind == "b":
        return AnyValue(bool_value=draw(st.booleans()))
    if kind in ("s-then-i", "i-then-s"):  # two members of the oneof on the wire: the last one wins
        s_part = AnyValue(string_value=draw(texts)).SerializeToString()
        i_part = AnyValue(int_value=draw(ints)).SerializeToString()
        return AnyValue.FromString(s_part + i_part if kind == "s-then-i" else i_part + s_part)
    return AnyValue()


@st.composite
def key_values(draw: st.DrawFn, max_size: int = 5) -> list[KeyValue]:
    """Attributes with distinct keys; some without a value field at all (which reads as an unset value)."""
    pairs = draw(st.lists(st.tuples(keys, st.one_of(any_values(), any_values(), st.none())), max_size=max_size,
                          unique_by=lambda kv: kv[0]))
    return [KeyValue(key=k) if v is None else KeyValue(key=k, value=v) for k, v in pairs]


nonzero16 = st.binary(min_size=16, max_size=16).filter(any)
nonzero8 = st.binary(min_size=8, max_size=8).filter(any)


@st.composite
def spans(draw: st.DrawFn) -> Span:
    start = draw(st.integers(1, 2**63 - 1))
    sp = Span(trace_id=draw(nonzero16), span_id=draw(nonzero8), name=draw(texts), kind=draw(st.integers(0, 5)),
              start_time_unix_nano=start, end_time_unix_nano=draw(st.integers(start, 2**63 - 1)),
              trace_state=draw(texts), flags=draw(st.sampled_from([0, 1, 257, 2**32 - 1])),
              dropped_attributes_count=draw(st.sampled_from([0, 0, 3, 2**31 - 1])),
              dropped_events_count=draw(st.sampled_from([0, 0, 2])),
              dropped_links_count=draw(st.sampled_from([0, 0, 1])))
    if draw(st.booleans()):
        sp.parent_span_id = draw(st.binary(min_size=8, max_size=8))
    sp.attributes.extend(draw(key_values()))
    if draw(st.booleans()):
        sp.status.CopyFrom(Status(message=draw(texts), code=draw(st.integers(0, 2))))
    return sp


#: One thing the decoder leaves to the full path (which rejects, cuts, replaces or counts it).
FLAWS: dict[str, Any] = {
    "trace id": lambda sp, d: setattr(sp, "trace_id", d(st.sampled_from([bytes(16), b"\x01" * 15, b""]))),
    "span id": lambda sp, d: setattr(sp, "span_id", d(st.sampled_from([bytes(8), b"\x01" * 9]))),
    "parent id": lambda sp, d: setattr(sp, "parent_span_id", b"\x01" * 7),
    "start": lambda sp, d: setattr(sp, "start_time_unix_nano", 0),
    "end": lambda sp, d: setattr(sp, "end_time_unix_nano", d(st.sampled_from([2**63, 2**64 - 1]))),
    "end before start": lambda sp, d: setattr(sp, "end_time_unix_nano", sp.start_time_unix_nano - 1),
    "kind": lambda sp, d: setattr(sp, "kind", d(st.sampled_from([-1, 6, 2**31 - 1]))),
    "status": lambda sp, d: setattr(sp.status, "code", d(st.sampled_from([-1, 3]))),
    "dropped": lambda sp, d: setattr(sp, "dropped_links_count", 2**31),
    "event": lambda sp, d: sp.events.add(name="e", time_unix_nano=sp.start_time_unix_nano),
    "link": lambda sp, d: sp.links.add(trace_id=b"\x03" * 16, span_id=b"\x04" * 8),
    "nul": lambda sp, d: setattr(sp, "name", "a\x00b"),
    "nul key": lambda sp, d: sp.attributes.add(key="k\x00"),
    "long value": lambda sp, d: setattr(sp.attributes.add(key="long").value, "string_value", "é" * 5000),
    "nan": lambda sp, d: setattr(sp.attributes.add(key="f").value, "double_value", d(st.sampled_from(
        [math.nan, math.inf, -math.inf]))),
    "array": lambda sp, d: sp.attributes.add(key="xs").value.array_value.values.add(int_value=1),
    "map": lambda sp, d: sp.attributes.add(key="m").value.kvlist_value.values.add(key="a"),
    "bytes": lambda sp, d: setattr(sp.attributes.add(key="raw").value, "bytes_value", b"\xff"),
    "repeated key": lambda sp, d: sp.attributes.extend([KeyValue(key="dup", value=AnyValue(int_value=1)),
                                                        KeyValue(key="dup", value=AnyValue(int_value=2))]),
    "many attributes": lambda sp, d: sp.attributes.extend(
        [KeyValue(key=f"k{i}", value=AnyValue(int_value=i)) for i in range(130)]),
}


@st.composite
def requests(draw: st.DrawFn) -> ExportTraceServiceRequest:
    """A request of valid spans, with at most one flaw somewhere."""
    req = ExportTraceServiceRequest()
    for _ in range(draw(st.integers(0, 2))):
        rs = req.resource_spans.add(schema_url=draw(texts))
        if draw(st.booleans()):
            rs.resource.attributes.extend(draw(key_values(max_size=3)))
            rs.resource.dropped_attributes_count = draw(st.sampled_from([0, 2]))
        for _ in range(draw(st.integers(0, 2))):
            ss = rs.scope_spans.add()
            if draw(st.booleans()):
                ss.scope.name = draw(texts)
                ss.scope.version = draw(texts)
            ss.spans.extend(draw(st.lists(spans(), max_size=3)))
    flaw = draw(st.sampled_from([None] * 8 + sorted(FLAWS) + ["scope attributes", "resource nul"]))
    all_spans = [sp for rs in req.resource_spans for ss in rs.scope_spans for sp in ss.spans]
    if flaw in FLAWS and all_spans:
        FLAWS[flaw](draw(st.sampled_from(all_spans)), draw)
    elif flaw == "scope attributes" and req.resource_spans and req.resource_spans[0].scope_spans:
        req.resource_spans[0].scope_spans[0].scope.attributes.add(key="k").value.string_value = "v"
    elif flaw == "resource nul" and req.resource_spans:
        req.resource_spans[0].resource.attributes.add(key="host").value.string_value = "a\x00"
    return req


def _field(number: int, payload: bytes) -> bytes:
    def varint(n: int) -> bytes:
        out = bytearray()
        while True:
            out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                return bytes(out)
    return varint(number << 3 | 2) + varint(len(payload)) + payload


#: Values written before a message's own, which the wire's last-wins rule must discard.
DECOYS: dict[str, list[Message]] = {
    "AnyValue": [AnyValue(string_value="decoy"), AnyValue(int_value=-7), AnyValue(double_value=2.5),
                 AnyValue(bool_value=True)],
    "KeyValue": [KeyValue(key="decoy")],
    "Span": [Span(name="decoy", kind=3, start_time_unix_nano=5, trace_id=b"\x09" * 16)],
    "Status": [Status(code=2, message="decoy")],
}


def shuffled(msg: Message, rnd: random.Random) -> bytes:
    """``msg`` serialized with its fields in a random order (repeated elements keep theirs), sometimes after a
    decoy value of a field it sets (last wins on the wire), as protobuf allows; nested messages the decoder
    reads get the same treatment."""
    parts: list[bytes] = []
    for fd, value in msg.ListFields():
        if fd.message_type is not None and fd.message_type.name in (
                "ResourceSpans", "ScopeSpans", "Span", "Resource", "KeyValue", "AnyValue", "Status",
                "InstrumentationScope"):
            items = value if fd.is_repeated else [value]
            parts.append(b"".join(_field(fd.number, shuffled(v, rnd)) for v in items))
        else:
            one = type(msg)()
            if fd.is_repeated:
                getattr(one, fd.name).extend(value)
            elif fd.message_type is not None:
                getattr(one, fd.name).CopyFrom(value)
            else:
                setattr(one, fd.name, value)
            parts.append(one.SerializeToString())
    rnd.shuffle(parts)
    name = msg.DESCRIPTOR.name
    if parts and name in DECOYS and rnd.random() < 0.5:
        parts.insert(0, rnd.choice(DECOYS[name]).SerializeToString())
    return b"".join(parts)


# -- tests ----------------------------------------------------------------------------------------------


def test_compiled_decoder_is_built_and_reads_the_installed_proto() -> None:
    """CI builds the extension; its field table is the installed proto's (else it stays off)."""
    try:
        from qfleet.collector import _span_wire
    except ImportError:
        _span_wire = None
    require(_span_wire is not None, NOT_BUILT)
    assert span_rows.COMPILED, "the compiled decoder is built but disagrees with the installed opentelemetry-proto"
    pool = descriptor_pool.Default()
    for name, numbers in _span_wire.KNOWN_FIELDS.items():
        assert tuple(sorted(f.number for f in pool.FindMessageTypeByName(name).fields)) == numbers, name


@pytest.mark.usefixtures("compiled")
def test_plain_requests_take_the_compiled_path_and_match() -> None:
    """What SDKs send most (scalar attributes, parents, status, several resources) is read by the decoder."""
    rnd = random.Random(3)
    req = ExportTraceServiceRequest()
    for r in range(3):
        rs = req.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = f"svc-{r}"
        rs.resource.attributes.add(key="qfleet.node.id").value.string_value = f"qpu-{r}"
        ss = rs.scope_spans.add()
        ss.scope.name = "qfleet.runtime"
        for i in range(50):
            sp = ss.spans.add(trace_id=rnd.randbytes(16), span_id=rnd.randbytes(8), name="circuit.execute",
                              parent_span_id=rnd.randbytes(8) if i % 3 else b"", kind=1 + i % 5,
                              start_time_unix_nano=T0 + i, end_time_unix_nano=T0 + i + rnd.randrange(10**6))
            sp.attributes.add(key="circuit.depth").value.int_value = rnd.randrange(-10, 200)
            sp.attributes.add(key="link.fidelity").value.double_value = rnd.random()
            sp.attributes.add(key="qfleet.hardware.type").value.string_value = "trapped-ion é\n\"x\""
            sp.attributes.add(key="retry").value.bool_value = bool(i % 2)
            sp.attributes.add(key="qfleet.node.id").value.int_value = i  # the span's own overrides the resource's
            if i % 4 == 0:
                sp.status.code, sp.status.message = 2, "teleport failed"
    body = req.SerializeToString()
    assert check(body, Limits())
    fast = from_trace_protobuf(body)
    assert fast is not None and len(fast.spans) == 150
    # decode_body takes the same path for protobuf bodies, and stores what it got.
    assert decode_body("spans", body, MEDIA_PROTOBUF[0], gzipped=False, max_bytes=len(body)).spans == fast.spans


@pytest.mark.usefixtures("compiled")
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.sampled_from([Limits(), SMALL]), st.randoms(use_true_random=False))
def test_compiled_rows_equal_the_full_path(req: ExportTraceServiceRequest, limits: Limits,
                                           rnd: random.Random) -> None:
    check(req.SerializeToString(), limits)
    check(shuffled(req, rnd), limits)


@pytest.mark.usefixtures("compiled")
@settings(max_examples=400, deadline=None)
@given(st.randoms(use_true_random=False), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255)),
                                                   min_size=1, max_size=4), st.integers(0, 3))
def test_damaged_bodies_never_crash_and_never_disagree(rnd: random.Random, edits: list[tuple[int, int]],
                                                       cut: int) -> None:
    req = ExportTraceServiceRequest()
    ss = req.resource_spans.add().scope_spans.add()
    for i in range(3):
        sp = ss.spans.add(trace_id=rnd.randbytes(16), span_id=rnd.randbytes(8), name=f"s{i}",
                          start_time_unix_nano=T0, end_time_unix_nano=T0 + 5)
        sp.attributes.add(key="k").value.string_value = "value"
        sp.attributes.add(key="n").value.int_value = -5
    body = bytearray(req.SerializeToString())
    for pos, byte in edits:
        body[pos % len(body)] = byte
    check(bytes(body[:len(body) - cut]), Limits())


@pytest.mark.usefixtures("compiled")
@pytest.mark.parametrize("why", ["event", "link", "array", "bytes", "nul", "long", "nan", "repeated key",
                                 "bad trace id", "kind", "too many", "scope attributes", "bad utf-8"])
def test_what_the_decoder_leaves_to_the_full_path(why: str) -> None:
    """Each case the decoder does not decide goes to the full path, which rejects, cuts or counts it."""
    sp = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="op", start_time_unix_nano=T0,
              end_time_unix_nano=T0 + 1)
    rs = ResourceSpans(scope_spans=[ScopeSpans(spans=[sp])])
    s = rs.scope_spans[0].spans[0]
    value = {"array": AnyValue(array_value=ArrayValue(values=[AnyValue(int_value=1)])),
             "bytes": AnyValue(bytes_value=b"\x00\xff"), "nul": AnyValue(string_value="a\x00b"),
             "long": AnyValue(string_value="x" * 5000), "nan": AnyValue(double_value=math.nan)}.get(why)
    if value is not None:
        s.attributes.add(key="k").value.CopyFrom(value)
    elif why == "event":
        s.events.add(name="e", time_unix_nano=T0)
    elif why == "link":
        s.links.add(trace_id=b"\x03" * 16, span_id=b"\x04" * 8)
    elif why == "repeated key":
        s.attributes.extend([KeyValue(key="k", value=AnyValue(int_value=1)),
                             KeyValue(key="k", value=AnyValue(int_value=2))])
    elif why == "bad trace id":
        s.trace_id = bytes(16)
    elif why == "kind":
        s.kind = 9
    elif why == "too many":
        s.attributes.extend([KeyValue(key=f"k{i}", value=AnyValue(int_value=i)) for i in range(200)])
    elif why == "scope attributes":
        rs.scope_spans[0].scope.attributes.add(key="k").value.string_value = "v"
    body = ExportTraceServiceRequest(resource_spans=[rs]).SerializeToString()
    if why == "bad utf-8":
        body = body.replace(b"op", b"\xc3(")
    assert from_trace_protobuf(body) is None
    full = full_path(body, Limits())
    if why == "bad utf-8":
        assert full is None  # upb refuses the request: decode_body answers 400
        with pytest.raises(DecodeFailure):
            decode_body("spans", body, MEDIA_PROTOBUF[0], gzipped=False, max_bytes=len(body))
        return
    assert full is not None
    got = decode_body("spans", body, MEDIA_PROTOBUF[0], gzipped=False, max_bytes=len(body))
    assert (got.spans, got.events, got.links, got.rejected_spans, got.adjusted) == (
        full.spans, full.events, full.links, full.rejected_spans, full.adjusted)


def test_without_the_compiled_decoder_the_full_path_converts(monkeypatch: pytest.MonkeyPatch) -> None:
    sp = Span(trace_id=b"\x01" * 16, span_id=b"\x02" * 8, name="op", start_time_unix_nano=T0,
              end_time_unix_nano=T0 + 1, attributes=[KeyValue(key="k", value=AnyValue(int_value=7))])
    body = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[sp])])]) \
        .SerializeToString()
    monkeypatch.setattr(span_rows, "_WIRE", None)
    assert from_trace_protobuf(body) is None
    got = decode_body("spans", body, MEDIA_PROTOBUF[0], gzipped=False, max_bytes=len(body))
    assert got.spans[0][ATTRS] == {"k": 7}


@pytest.mark.usefixtures("compiled")
def test_json_text_is_stored_as_the_attributes(engine: Engine) -> None:
    """Rows whose attributes the decoder wrote as JSON store the same attributes as the full path's dicts
    (read back through the database's own JSON functions), on SQLite and PostgreSQL."""
    rnd = random.Random(11)
    attrs = {"s": "é\"\\\n\x01😀", "i": -2**63, "d": 1e16, "tiny": 5e-324, "b": False, "unset": None,
             "qfleet.node.id": "qpu-7"}
    spans_ = []
    for i in range(4):
        sp = Span(trace_id=rnd.randbytes(16), span_id=rnd.randbytes(8), name="op", start_time_unix_nano=T0 + i,
                  end_time_unix_nano=T0 + i + 1)
        for k, v in attrs.items():
            kv = sp.attributes.add(key=k)
            if v is None:
                continue
            if isinstance(v, bool):
                kv.value.bool_value = v
            elif isinstance(v, int):
                kv.value.int_value = v
            elif isinstance(v, float):
                kv.value.double_value = v
            else:
                kv.value.string_value = v
        spans_.append(sp)
    body = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=spans_)])]) \
        .SerializeToString()
    fast = from_trace_protobuf(body)
    assert fast is not None
    Store(engine).write(fast)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT attributes, node_id FROM spans")).all()
    assert len(rows) == 4
    for stored, node in rows:
        got = stored if isinstance(stored, dict) else json.loads(stored)
        assert got == attrs and node == "qpu-7"


def test_store_checkpoint_moves_the_wal_into_the_database_file(sqlite_engine: Engine, tmp_path: Any) -> None:
    """After Store.checkpoint, the database file alone (without its -wal) holds the committed rows."""
    store = Store(sqlite_engine)
    store.checkpoint()  # the migrated schema, into the file
    rnd = random.Random(2)
    sp = [Span(trace_id=rnd.randbytes(16), span_id=rnd.randbytes(8), name="op", start_time_unix_nano=T0 + i,
               end_time_unix_nano=T0 + i + 1) for i in range(200)]
    body = ExportTraceServiceRequest(resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=sp)])]) \
        .SerializeToString()
    store.write(decode_body("spans", body, MEDIA_PROTOBUF[0], gzipped=False, max_bytes=len(body)))
    db = sqlite_engine.url.database
    assert db is not None

    def rows_in_file_alone() -> int:
        copy = tmp_path / f"alone-{os.urandom(4).hex()}.db"
        copy.write_bytes(open(db, "rb").read())  # the main file only: what a crash without the WAL keeps
        with sqlite3.connect(copy) as c:
            return int(c.execute("SELECT COUNT(*) FROM spans").fetchone()[0])

    assert rows_in_file_alone() == 0  # committed, but only in the WAL so far
    frames, copied = store.checkpoint() or (0, -1)
    assert frames > 0 and copied == frames
    assert rows_in_file_alone() == 200


def test_receiver_checkpoints_after_commits_on_its_own_thread(sqlite_engine: Engine) -> None:
    from qfleet.collector.writer import WalCheckpointer

    store = Store(sqlite_engine)
    called = threading.Event()
    threads: list[str] = []
    real = store.checkpoint

    def spy() -> tuple[int, int] | None:
        threads.append(threading.current_thread().name)
        out = real()
        called.set()
        return out

    store.checkpoint = spy  # type: ignore[method-assign]
    cp = WalCheckpointer(store, interval_s=0.01)
    cp.start()
    try:
        assert not called.is_set()  # nothing committed yet: the thread waits for a commit
        cp.mark_dirty()
        assert called.wait(30)
    finally:
        cp.stop(5)
    assert threads and set(threads) == {"qfleet-checkpoint"}
