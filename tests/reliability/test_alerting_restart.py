"""Issue 12: the alerting service across restarts and replicas, in process with an injected clock.

* An unacknowledged page escalates after a restart with the page's content (the last notification per group was
  kept only in memory: a restarted service recorded "escalated" and sent nothing).
* A stored silence that no longer validates is skipped and counted; alerting goes on (it raised in ``__init__``
  and in every dispatch).
* Two services on one database each update only their own notification log rows (each deleted and rewrote the
  whole table, so the other's entries vanished and its groups were notified again under new keys).
* ``qfleet serve``'s start-up checks: a second service on one SQLite file is refused; a missing ``--config``
  directory or ``--token-file`` directory is a one-line error with exit 2.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert, select

from qfleet.alerts.schema import NotificationLog, SilenceRecord, table
from qfleet.collector import open_engine, upgrade
from qfleet.serve import ServeError, sqlite_lock
from qfleet.simulator.faults import Fault, FaultKind
from tests.alerts.test_service import MIN, Sink, _fill, _run, _service

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def sink() -> Iterator[Sink]:
    s = Sink()
    yield s
    s.server.shutdown()


def _outage(engine: Engine) -> int:
    outage = Fault(id="out", kind=FaultKind.F5, target="qpu-d", start_ns=20 * MIN, duration_ns=40 * MIN)
    return _fill(engine, [outage], 60).config.start_ns


def test_an_unacknowledged_page_escalates_after_a_restart_with_its_content(sqlite_engine: Engine,
                                                                           sink: Sink) -> None:
    t0 = _outage(sqlite_engine)
    clock = [t0]
    first = _service(sqlite_engine, sink, clock)
    _run(first, clock, t0 + 15 * MIN, t0 + 25 * MIN)
    pages = [b for p, b in sink.bodies if p == "/pages"]
    assert pages and "/lead" not in sink.paths()
    paged = {a["fingerprint"] for b in pages for a in b["alerts"]}
    del first                                    # the process ends; a new one starts on the same store

    restarted = _service(sqlite_engine, sink, clock)
    _run(restarted, clock, t0 + 25 * MIN + 30 * 10**9, t0 + 40 * MIN)
    lead = [b for p, b in sink.bodies if p == "/lead"]
    assert lead, "the restarted service escalated without sending anything"
    assert {a["fingerprint"] for b in lead for a in b["alerts"]} <= paged
    assert any(a["labels"].get("node") == "qpu-d" for b in lead for a in b["alerts"])


def test_a_stored_silence_that_no_longer_validates_is_skipped_and_alerting_goes_on(sqlite_engine: Engine,
                                                                                  sink: Sink) -> None:
    t0 = _outage(sqlite_engine)
    # As an older qfleet (Python `re`) could store it: RE2 rejects look-ahead, so this row no longer validates.
    with sqlite_engine.begin() as conn:
        conn.execute(insert(table(SilenceRecord)).values(
            id=str(uuid.uuid4()), matchers={"matchers": [{"name": "node", "value": "(?=qpu).*", "isRegex": True,
                                                          "isEqual": True}]},
            starts_at_unix_nano=t0, ends_at_unix_nano=t0 + 600 * MIN, created_by="old", comment="pre-RE2",
            updated_unix_nano=t0))
    clock = [t0]
    svc = _service(sqlite_engine, sink, clock)       # raised SilenceError here before
    _run(svc, clock, t0 + 15 * MIN, t0 + 25 * MIN)
    assert any(a["labels"].get("node") == "qpu-d" for p, b in sink.bodies if p == "/pages" for a in b["alerts"])
    stats = svc.dispatch(clock[0])
    assert stats.invalid_silences == 1


def test_two_services_on_one_database_keep_each_others_log_rows(sqlite_engine: Engine, sink: Sink) -> None:
    t0 = _outage(sqlite_engine)
    clock = [t0]
    a = _service(sqlite_engine, sink, clock)
    b = _service(sqlite_engine, sink, clock)         # loaded the (empty) log before a wrote anything
    _run(a, clock, t0 + 15 * MIN, t0 + 25 * MIN)
    t = table(NotificationLog)
    with sqlite_engine.connect() as conn:
        after_a = {(r.receiver, r.group_key) for r in conn.execute(select(t.c.receiver, t.c.group_key))}
    assert after_a
    b.dispatch(clock[0])                             # b has nothing to flush: it must leave a's rows alone
    with sqlite_engine.connect() as conn:
        rows = conn.execute(select(t.c.receiver, t.c.group_key, t.c.notification)).all()
    assert after_a <= {(r.receiver, r.group_key) for r in rows}
    # Each row keeps the notification it records (what an escalation re-sends after a restart).
    assert all(r.notification and r.notification["group_key"] == r.group_key for r in rows)
    assert json.dumps(rows[0].notification)


def test_a_second_service_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    engine = open_engine(f"sqlite:///{tmp_path / 'q.db'}")
    upgrade(engine)
    held = sqlite_lock(engine)
    assert held is not None
    try:
        with pytest.raises(ServeError, match=r"already runs on .*q\.db.*PostgreSQL"):
            sqlite_lock(engine)
    finally:
        held.close()
    again = sqlite_lock(engine)                      # released with its holder: a restart may take it
    assert again is not None
    again.close()
    assert sqlite_lock(open_engine("sqlite://")) is None


@pytest.mark.parametrize(("extra", "named"), [
    (["--config", "{tmp}/no-such-conf"], "no-such-conf"),
    (["--token-file", "{tmp}/no/such/dir/token"], "no/such/dir"),
    (["--eval-interval", "1e9"], "1e9"),
    (["--retention", "99999999999999999999w"], "99999999999999999999w"),
])
def test_serve_start_up_errors_are_one_line_with_exit_2(tmp_path: Path, extra: list[str], named: str) -> None:
    argv = [sys.executable, "-m", "qfleet.cli", "serve", "--db", f"sqlite:///{tmp_path / 'q.db'}", "--port", "0",
            *[x.format(tmp=tmp_path) for x in extra]]
    env = {"PATH": "/usr/bin:/bin", "QFLEET_TOKEN_FILE": str(tmp_path / "token"), "HOME": str(tmp_path)}
    r = subprocess.run(argv, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert named in r.stderr and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr

