"""Issue 12: outbox delivery safe with several replicas on one database; outbox pruning; the secret file.

Each test fails on the pre-lease code (no ``claim``/``owner``/``prune``/``create_secret``; marks by anyone).
"""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from qfleet.alerts.outbox import LeaseLost, Outbox, OutboxItem
from qfleet.alerts.webhook import SecretError, create_secret
from qfleet.collector.migrate import upgrade
from qfleet.collector.store import open_engine
from qfleet.units import NS
from tests.conftest import FakeClock

LEASE = 60 * NS


def items(n: int) -> list[OutboxItem]:
    return [OutboxItem(id=f"{i:064x}", receiver="r", integration="webhook", url="http://127.0.0.1:1/h",
                       group_key=f"g{i}", payload={"seq": i}) for i in range(n)]


def test_two_owners_claiming_concurrently_on_postgresql_never_share_an_item(pg_url: str) -> None:
    engine = open_engine(pg_url, pool_size=4)
    upgrade(engine)
    clock = FakeClock()
    try:
        Outbox(engine, clock=clock).enqueue(items(200))
        owners = [Outbox(engine, clock=clock, owner=f"replica-{k}") for k in range(2)]
        got: list[list[str]] = [[], []]
        barrier = threading.Barrier(2)

        def work(k: int) -> None:
            barrier.wait()
            while batch := owners[k].claim(7, lease_ns=LEASE):
                got[k].extend(i.id for i in batch)

        threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not set(got[0]) & set(got[1])
        assert len(got[0]) + len(got[1]) == 200 and set(got[0]) | set(got[1]) == {i.id for i in items(200)}
        with engine.connect() as c:     # raw SQL oracle: every row leased to the owner that returned it
            rows = dict(c.execute(text("SELECT id, lease_owner FROM alert_outbox")).all())
        assert all(rows[i] == "replica-0" for i in got[0]) and all(rows[i] == "replica-1" for i in got[1])
    finally:
        engine.dispose()


def test_expired_lease_is_reclaimed_and_the_old_owner_cannot_mark(engine: Engine) -> None:
    clock = FakeClock()
    a, b = Outbox(engine, clock=clock, owner="a"), Outbox(engine, clock=clock, owner="b")
    a.enqueue(items(1))
    (mine,) = a.claim(10, lease_ns=LEASE)
    assert b.claim(10, lease_ns=LEASE) == []                 # held
    with pytest.raises(LeaseLost):
        b.mark_delivered(mine.id)                           # a non-owner's mark has no effect
    assert a.get(mine.id)["state"] == "pending"  # type: ignore[index]
    clock.advance(LEASE)                                    # "a" crashed: its lease ends
    (again,) = b.claim(10, lease_ns=LEASE)
    assert again.id == mine.id and again.payload == mine.payload      # re-sent under the same key
    with pytest.raises(LeaseLost):
        a.mark_failed(mine.id, "late", max_attempts=3, backoff=__import__("qfleet.alerts.outbox").alerts.outbox.Backoff())
    assert b.mark_delivered(mine.id) == "delivered"
    row = b.get(mine.id)
    assert row is not None and row["attempts"] == 0 and row["lease_owner"] is None


def test_prune_removes_only_old_delivered_and_dead(engine: Engine) -> None:
    clock = FakeClock()
    ob = Outbox(engine, clock=clock, owner="x")
    ob.enqueue(items(4))
    for it in ob.claim(10, lease_ns=LEASE):
        if it.id == items(4)[0].id:
            ob.mark_delivered(it.id)
        elif it.id == items(4)[1].id:
            ob.mark_failed(it.id, "HTTP 400", max_attempts=3, backoff=__import__("qfleet.alerts.outbox").alerts.outbox.Backoff(), permanent=True)
    ob.release([i.id for i in items(4)])
    clock.advance(10 * NS)
    ob.enqueue([OutboxItem(id="f" * 64, receiver="r", integration="webhook", url="http://h/", group_key="n",
                           payload={})])
    for it in ob.claim(10, lease_ns=LEASE):
        if it.id == "f" * 64:
            ob.mark_delivered(it.id)
    assert ob.prune(older_than_ns=5 * NS) == 2
    with engine.connect() as c:
        left = dict(c.execute(text("SELECT id, state FROM alert_outbox")).all())
    assert left == {items(4)[2].id: "pending", items(4)[3].id: "pending", "f" * 64: "delivered"}


def test_create_secret_is_0600_from_the_start_and_exclusive(tmp_path: Path) -> None:
    p = tmp_path / "webhook.secret"
    old = os.umask(0)                       # even a permissive umask cannot widen it
    try:
        secret = create_secret(p)
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600 and len(secret) == 64
    assert create_secret(p) == secret       # exists: loaded, not replaced
    with pytest.raises(SecretError, match="mkdir -p"):
        create_secret(tmp_path / "missing" / "webhook.secret")


# -- a receiver that drips its answer cannot hold delivery past the per-attempt deadline -------------------------


class _Drip:
    """A raw TCP receiver that reads the request, then answers one header byte every 50 ms, forever."""

    def __init__(self) -> None:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}/hook"
        self.stop = threading.Event()
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                try:
                    self.requests.append(conn.recv(65536))
                    conn.sendall(b"HTTP/1.1 200 OK\r\n")
                    while not self.stop.wait(0.05):
                        conn.sendall(b"X")   # an endless header line: each read returns within any read timeout
                except OSError:
                    pass                     # the client gave up: what the test wants

    def close(self) -> None:
        self.stop.set()
        self.sock.close()
        self.thread.join(10)


def test_a_dripping_receiver_is_cut_off_at_the_attempt_deadline(engine: Engine) -> None:
    from qfleet.alerts.outbox import Backoff
    from qfleet.alerts.webhook import Deliverer

    drip = _Drip()
    try:
        clock = FakeClock(0)
        ob = Outbox(engine, clock=clock, owner="a")
        ob.enqueue([OutboxItem(id="d" * 64, receiver="r", integration="webhook", url=drip.url, group_key="g",
                               payload={"x": 1})])
        # The socket read timeout (0.4 s per read) never fires against a byte every 50 ms; only a deadline over
        # the whole attempt ends it. Before httpx + asyncio.timeout, this attempt never returned.
        stats = Deliverer(ob, secret=b"s", timeout_s=0.4, backoff=Backoff(jitter=0), clock=clock).run_once()
        assert (stats.attempted, stats.retried, stats.delivered) == (1, 1, 0)
        row = ob.get("d" * 64)
        assert row is not None and row["state"] == "pending" and "timed out after 0.4s" in row["last_error"]
        assert len(drip.requests) == 1 and drip.requests[0].startswith(b"POST /hook")
    finally:
        drip.close()


def test_the_signature_covers_the_idempotency_key(engine: Engine) -> None:
    """A captured request replayed under a new Idempotency-Key fails verification (it passed under v1)."""
    import http.server

    from qfleet.alerts.payloads import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, verify
    from qfleet.alerts.webhook import Deliverer

    got: list[tuple[str, str, bytes]] = []

    class H(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.headers[IDEMPOTENCY_HEADER], self.headers[SIGNATURE_HEADER], body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        clock = FakeClock(1_000 * NS)
        ob = Outbox(engine, clock=clock, owner="a")
        ob.enqueue([OutboxItem(id="e" * 64, receiver="r", integration="webhook",
                               url=f"http://127.0.0.1:{srv.server_address[1]}/h", group_key="g", payload={"x": 1})])
        assert Deliverer(ob, secret=b"s3", clock=clock).run_once().delivered == 1
    finally:
        srv.shutdown()
        srv.server_close()
    ((key, sig, body),) = got
    assert key == "e" * 64 and verify(b"s3", sig, body, key=key, now_s=1_000)
    assert not verify(b"s3", sig, body, key="f" * 64, now_s=1_000)
