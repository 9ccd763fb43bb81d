"""At-least-once webhook delivery against a real HTTP receiver on 127.0.0.1 (sre.md §18-19 answer classes).

The receiver records every request (headers and raw body) *before* answering, so an answer lost to a 503, a
timeout or a SIGKILLed deliverer shows up as a duplicate; the tests check duplicates carry the same
Idempotency-Key and body, and that nothing is lost.

No test reads a clock: time is a FakeClock, a request the test wants in flight is held by the receiver until the
test releases it (an event, not a delay), and signatures made by a subprocess are checked against the time they
carry.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import Engine

from qfleet.alerts.outbox import Backoff, Outbox, OutboxItem
from qfleet.alerts.payloads import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify
from qfleet.alerts.webhook import Deliverer, DeliveryStats, SecretError, load_secret
from qfleet.collector.migrate import upgrade
from qfleet.collector.store import open_engine
from qfleet.units import NS
from tests.conftest import FakeClock

SECRET = b"test-secret-0123456789"
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Received:
    key: str
    signature: str
    content_type: str
    body: bytes
    now_s: int

    @property
    def verified(self) -> bool:
        return verify(SECRET, self.signature, self.body, key=self.key, now_s=self.now_s)


def _signed_at(header: str) -> int:
    """The Unix seconds a ``t=<s>,v2=<hex>`` signature header carries (0 when it carries none)."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    return int(fields.get("t", "0"))


@dataclass
class Receiver:
    """A ThreadingHTTPServer that records requests and answers ``status``; stoppable.

    ``clock`` is the receiver's now for signature checks (None: the time the signature carries, for a sender
    with its own clock). The ``hold_on``-th request (1-based) is recorded, then answered only once ``release``
    is set: it stays in flight for as long as the test needs.
    """

    clock: Callable[[], int] | None = None
    status: int = 200
    hold_on: int = 0
    headers: dict[str, str] = field(default_factory=dict)
    got: list[Received] = field(default_factory=list)
    port: int = 0
    release: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None
    _arrived: threading.Condition = field(default_factory=threading.Condition)

    def start(self) -> None:
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                signature = self.headers.get(SIGNATURE_HEADER, "")
                now_s = rec.clock() // NS if rec.clock is not None else _signed_at(signature)
                with rec._arrived:
                    rec.got.append(Received(self.headers.get(IDEMPOTENCY_HEADER, ""), signature,
                                            self.headers.get("Content-Type", ""), body, now_s))
                    hold = len(rec.got) == rec.hold_on
                    rec._arrived.notify_all()
                if hold:
                    rec.release.wait()
                self.send_response(rec.status)
                for k, v in rec.headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()  # nothing stays held past the test
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def keys(self) -> list[str]:
        with self._arrived:
            return [r.key for r in self.got]

    def wait_for(self, n: int, bound_s: float = 120) -> bool:
        """Whether ``n`` requests arrive (an event wait; ``bound_s`` only keeps a broken run from hanging)."""
        with self._arrived:
            return self._arrived.wait_for(lambda: len(self.got) >= n, bound_s)


@pytest.fixture
def receiver(clock: FakeClock) -> Iterator[Receiver]:
    r = Receiver(clock=clock)
    r.start()
    yield r
    r.stop()


def items(url: str, n: int, *, groups: int = 5) -> list[OutboxItem]:
    return [OutboxItem(id=f"{i:064x}", receiver="oncall", integration="webhook", url=url,
                       group_key=f"{{}}:{{alertname=\"A{i % groups}\"}}", payload={"version": "4", "seq": i})
            for i in range(n)]


def assert_at_least_once(got: list[Received], expected_ids: set[str]) -> None:
    """Every id arrived; every copy of an id has the same body; every signature verifies."""
    assert {r.key for r in got} == expected_ids
    by_key: dict[str, set[bytes]] = {}
    for r in got:
        by_key.setdefault(r.key, set()).add(r.body)
        assert r.verified, r.signature
        assert r.content_type == "application/json"
    assert all(len(bodies) == 1 for bodies in by_key.values())
    for key, bodies in by_key.items():
        assert json.loads(next(iter(bodies)))["seq"] == int(key, 16)


def drain(d: Deliverer, ob: Outbox, clock: FakeClock, *, rounds: int = 200) -> DeliveryStats:
    total = DeliveryStats()
    for _ in range(rounds):
        if ob.stats()["pending"] == 0:
            return total
        total += d.run_once()
        clock.advance(400 * NS)          # past any backoff
    raise AssertionError(f"outbox not drained: {ob.stats()}")


def test_receiver_down_then_up_delivers_everything_once_acknowledged(sqlite_engine: Engine, clock: FakeClock,
                                                                      receiver: Receiver) -> None:
    ob = Outbox(sqlite_engine, clock=clock)
    d = Deliverer(ob, secret=SECRET, timeout_s=2, max_attempts=50, backoff=Backoff(seed=1), clock=clock)
    ob.enqueue(items(receiver.url, 30))
    expected = {it.id for it in items(receiver.url, 30)}

    # Down: connection refused. One attempt, the rest of the host's items deferred, nothing lost.
    receiver.stop()
    s = d.run_once()
    assert (s.attempted, s.retried, s.delivered) == (1, 1, 0) and s.deferred == 4
    # Up but failing: 503 (recorded, then refused) -> duplicates later, all retried.
    receiver.start()
    receiver.status = 503
    for _ in range(3):
        clock.advance(400 * NS)
        s = d.run_once()
        assert s.delivered == 0 and s.retried == s.attempted > 0
    assert ob.stats() == {"pending": 30, "delivered": 0, "dead": 0}
    # Healthy again.
    receiver.status = 200
    drain(d, ob, clock)
    assert ob.stats() == {"pending": 0, "delivered": 30, "dead": 0}
    assert_at_least_once(receiver.got, expected)
    assert len(receiver.got) > 30                       # the 503s really produced duplicates
    # Delivered items are never sent again.
    before = len(receiver.got)
    clock.advance(3600 * NS)
    assert d.run_once() == DeliveryStats()
    assert len(receiver.got) == before


def test_2xx_codes_deliver(sqlite_engine: Engine, clock: FakeClock, receiver: Receiver) -> None:
    # sre.md §18: "2xx ok"; §19: PagerDuty answers "202 accepted"
    ob = Outbox(sqlite_engine, clock=clock)
    d = Deliverer(ob, secret=SECRET, clock=clock)
    receiver.status = 202
    ob.enqueue(items(receiver.url, 1))
    assert d.run_once().delivered == 1 and ob.stats()["delivered"] == 1


@pytest.mark.parametrize("status", [400, 401, 404, 413, 301])
def test_other_status_is_dead_letter_not_retried(engine: Engine, clock: FakeClock, receiver: Receiver,
                                                 status: int) -> None:
    # sre.md §18: "2xx ok, 5xx retried, others not"; §19: "400 not retried"
    ob = Outbox(engine, clock=clock)
    d = Deliverer(ob, secret=SECRET, clock=clock)
    receiver.status = status
    ob.enqueue(items(receiver.url, 2, groups=2))
    s = d.run_once()
    assert (s.attempted, s.dead, s.retried) == (2, 2, 0)
    assert ob.stats() == {"pending": 0, "delivered": 0, "dead": 2}
    clock.advance(3600 * NS)
    assert d.run_once().attempted == 0 and len(receiver.got) == 2
    row = ob.get(items(receiver.url, 1)[0].id)
    assert row is not None and row["last_error"].startswith(f"HTTP {status}")


@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_5xx_and_429_retried_then_dead_after_max_attempts(sqlite_engine: Engine, clock: FakeClock,
                                                          receiver: Receiver, status: int) -> None:
    # sre.md §19: "429 and 5xx retried with backoff"
    ob = Outbox(sqlite_engine, clock=clock)
    d = Deliverer(ob, secret=SECRET, max_attempts=3, backoff=Backoff(jitter=0), clock=clock)
    receiver.status = status
    ob.enqueue(items(receiver.url, 1))
    assert d.run_once().retried == 1
    assert d.run_once().attempted == 0                  # backing off: not due yet
    clock.advance(NS)
    assert d.run_once().retried == 1
    clock.advance(2 * NS)
    assert d.run_once().dead == 1
    assert ob.stats() == {"pending": 0, "delivered": 0, "dead": 1}
    assert len(receiver.got) == 3


def test_retry_after_is_honoured(sqlite_engine: Engine, clock: FakeClock, receiver: Receiver) -> None:
    ob = Outbox(sqlite_engine, clock=clock)
    d = Deliverer(ob, secret=SECRET, backoff=Backoff(jitter=0), clock=clock)
    receiver.status, receiver.headers = 429, {"Retry-After": "60"}
    ob.enqueue(items(receiver.url, 1))
    d.run_once()
    clock.advance(59 * NS)
    assert d.run_once().attempted == 0
    clock.advance(NS)
    assert d.run_once().attempted == 1


def test_timeout_per_attempt_is_honoured(sqlite_engine: Engine, clock: FakeClock, receiver: Receiver) -> None:
    ob = Outbox(sqlite_engine, clock=clock)
    d = Deliverer(ob, secret=SECRET, timeout_s=0.3, backoff=Backoff(jitter=0), clock=clock)
    receiver.hold_on = 1                                # the first request is answered only when released
    ob.enqueue(items(receiver.url, 3, groups=3))
    s = d.run_once()                                    # returns: the attempt gave up after timeout_s
    assert (s.attempted, s.retried, s.deferred) == (1, 1, 2)   # one timeout, the other two deferred (same host)
    row = ob.get(items(receiver.url, 1)[0].id)
    assert row is not None and "timed out after 0.3s" in row["last_error"] and row["attempts"] == 1
    receiver.release.set()
    clock.advance(NS)
    assert d.run_once().delivered == 3
    assert_at_least_once(receiver.got, {it.id for it in items(receiver.url, 3, groups=3)})


def test_bad_url_is_dead_with_a_clear_error(sqlite_engine: Engine, clock: FakeClock) -> None:
    ob = Outbox(sqlite_engine, clock=clock)
    ob.enqueue([OutboxItem(id="x", receiver="pd", integration="pagerduty", url="", group_key="g", payload={})])
    assert Deliverer(ob, secret=SECRET, clock=clock).run_once().dead == 1
    row = ob.get("x")
    assert row is not None and "not http(s)" in row["last_error"]


def test_run_loop_stops_and_sleeps_when_idle(sqlite_engine: Engine, clock: FakeClock, receiver: Receiver) -> None:
    ob = Outbox(sqlite_engine, clock=clock)
    ob.enqueue(items(receiver.url, 3, groups=1))        # one stream: FIFO needs three runs
    sleeps: list[float] = []
    d = Deliverer(ob, secret=SECRET, clock=clock, sleep=sleeps.append)
    total = d.run(poll_s=0.5, should_stop=lambda: len(sleeps) >= 1)
    assert total.delivered == 3 and sleeps == [0.5]
    assert receiver.keys() == [it.id for it in items(receiver.url, 3, groups=1)]   # in order


def test_deliverer_validation_and_repr() -> None:
    ob = Outbox.__new__(Outbox)
    with pytest.raises(SecretError):
        Deliverer(ob, secret=b"", clock=lambda: 0)
    with pytest.raises(ValueError, match="timeout_s=0"):
        Deliverer(ob, secret=SECRET, timeout_s=0, clock=lambda: 0)
    assert SECRET.decode() not in repr(Deliverer(ob, secret=SECRET, clock=lambda: 0))


def test_load_secret(tmp_path: Path) -> None:
    p = tmp_path / "secret"
    with pytest.raises(SecretError, match="does not exist"):
        load_secret(p)
    p.write_text("  s3cret\n")
    p.chmod(0o644)
    with pytest.raises(SecretError, match="chmod 600"):
        load_secret(p)
    p.chmod(0o600)
    assert load_secret(p) == b"s3cret"
    p.write_text("\n")
    with pytest.raises(SecretError, match="empty"):
        load_secret(p)


# -- SIGKILL mid-dispatch ---------------------------------------------------------------------------------

LOOP = """
import sys, time
from pathlib import Path
from qfleet.alerts.outbox import Backoff, Outbox
from qfleet.alerts.webhook import Deliverer, load_secret
from qfleet.collector.store import open_engine
# argv[3]: seconds added to the wall clock; the restarted deliverer runs past the leases the killed one held.
offset = int(float(sys.argv[3]) * 1e9)
clock = lambda: time.time_ns() + offset
ob = Outbox(open_engine(sys.argv[1]), clock=clock)
# A long timeout: the request the test holds in flight must still be in flight when the test kills this process.
d = Deliverer(ob, secret=load_secret(Path(sys.argv[2])), timeout_s=600, backoff=Backoff(base_s=0.05, max_s=0.2),
              clock=clock)
d.run(poll_s=0.02)
"""


@pytest.mark.slow
def test_sigkill_mid_dispatch_then_restart_loses_nothing(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'outbox.db'}"
    engine = open_engine(url)
    upgrade(engine)
    secret_file = tmp_path / "secret"
    secret_file.write_bytes(SECRET)
    secret_file.chmod(0o600)
    ob = Outbox(engine, clock=FakeClock(0))   # enqueued at the epoch: due at once for the deliverer's own clock
    receiver = Receiver(hold_on=10)           # the 10th request stays in flight until released
    receiver.start()
    try:
        batch = items(receiver.url, 40, groups=40)
        ob.enqueue(batch)
        env = {**os.environ, "PYTHONPATH": str(ROOT)}

        def spawn(offset_s: float) -> subprocess.Popen[bytes]:
            return subprocess.Popen([sys.executable, "-c", LOOP, url, str(secret_file), str(offset_s)], cwd=ROOT,
                                    env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

        first = spawn(0)
        assert receiver.wait_for(10), first.stderr.read() if first.poll() is not None and first.stderr else ""
        first.send_signal(signal.SIGKILL)         # the 10th request is in flight: received, not acknowledged
        first.wait(60)
        receiver.release.set()
        in_flight = receiver.keys()[9]
        assert ob.get(in_flight)["state"] == "pending"  # type: ignore[index]
        delivered_before = {it.id for it in batch if ob.get(it.id)["state"] == "delivered"}  # type: ignore[index]
        received_before = len(receiver.got)
        assert len(delivered_before) == 9 and received_before == 10
        assert ob.stats()["dead"] == 0

        # The killed deliverer's leases (its batch of 8 items, for 8 x 600 s + slack) must have run out: the
        # restarted one reads a clock 3 hours later, as if it started after them.
        second = spawn(3 * 3600)
        try:
            assert receiver.wait_for(41), second.stderr.read() if second.poll() is not None and second.stderr else ""
            for _ in range(600):                  # the last answer is being recorded: bounded retries
                if not ob.stats()["pending"]:
                    break
                time.sleep(0.05)
        finally:
            second.send_signal(signal.SIGKILL)
            second.wait(60)

        assert ob.stats() == {"pending": 0, "delivered": 40, "dead": 0}
        assert_at_least_once(receiver.got, {it.id for it in batch})
        counts = {k: receiver.keys().count(k) for k in set(receiver.keys())}
        # Acknowledged and marked delivered before the kill: never sent again.
        assert all(counts[k] == 1 for k in delivered_before)
        # Only the item in flight at the kill (received, not yet marked) is sent twice, with the same key and body.
        assert {k for k, c in counts.items() if c > 1} == {in_flight} and counts[in_flight] == 2
        assert len(receiver.got) == 41
    finally:
        receiver.stop()
        engine.dispose()
