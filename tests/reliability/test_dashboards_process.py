"""``qfleet dashboards`` as a process: the store URL never on a command line, SIGTERM stops the Streamlit server
it started, bad settings are one line and exit 2 before Streamlit starts, and the users file helper.

Issue 12: the child's argv carried ``-- --db URL`` (password included, readable by every local user via
``/proc/PID/cmdline``); SIGTERM to ``qfleet dashboards`` or ``qfleet demo`` left Streamlit orphaned and serving;
``--db sqlite:///nope.db`` created an empty file; ``--port 99999`` ended in a traceback.
"""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import make_url

from qfleet.collector.migrate import downgrade, upgrade
from qfleet.collector.settings import ENV_DATABASE_URL, Settings
from qfleet.collector.store import open_engine
from qfleet.dashboards import auth, cli
from tests.dashboards.browser import free_port

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-Pa55word"
#: Bounded polling for a real server (iterations of 0.2 s; no clock is read to decide anything).
POLLS = 450


def _migrated(url: str) -> str:
    eng = open_engine(url)
    try:
        upgrade(eng)
    finally:
        eng.dispose()
    return url


@pytest.fixture
def tiny_sqlite(tmp_path: Path) -> str:
    return _migrated(f"sqlite:///{tmp_path / 'tiny.db'}")


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(p) for p in text.split()]


def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie has stopped serving; only its exit status is left


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return bool(r.read().strip() == b"ok")
    except OSError:
        return False


@contextmanager
def _dashboards(url: str, port: int, tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    """``qfleet dashboards --port PORT`` with the URL in its environment; yields (parent, Streamlit pid) once
    ``/_stcore/health`` answers. Whatever is left is killed by pid at the end."""
    log = tmp_path / "dashboards.log"
    env = {**os.environ, ENV_DATABASE_URL: url}
    with open(log, "wb") as out:
        parent = subprocess.Popen([sys.executable, "-m", "qfleet.cli", "dashboards", "--port", str(port)],
                                  cwd=tmp_path, env=env, stdout=out, stderr=subprocess.STDOUT)
    child = None
    try:
        for _ in range(POLLS):
            assert parent.poll() is None, log.read_text()
            if _healthy(port):
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"no /_stcore/health on {port}: {log.read_text()[-2000:]}")
        kids = _children(parent.pid)
        assert len(kids) == 1, kids
        child = kids[0]
        yield parent, child
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait(timeout=30)
        if child is not None and _alive(child):
            os.kill(child, signal.SIGKILL)


def _stops_on(sig: signal.Signals, parent: subprocess.Popen[bytes], child: int, port: int) -> None:
    parent.send_signal(sig)
    rc = parent.wait(timeout=60)
    for _ in range(POLLS):
        if not _alive(child):
            break
        time.sleep(0.2)
    assert not _alive(child), f"Streamlit (pid {child}) outlived qfleet dashboards"
    assert not _port_open(port)
    assert rc == 128 + sig  # the shell convention for "stopped by a signal", after Streamlit is gone


# -- the URL stays off command lines ------------------------------------------------------------------------------


def test_command_has_no_database_url() -> None:
    url = f"postgresql+psycopg://qfleet:{PASSWORD}@db.example:5432/qfleet"
    cmd = cli.command(Settings(database_url=url), 8501)
    assert not [a for a in cmd if PASSWORD in a or "db.example" in a or a == "--db"], cmd


def test_real_child_cmdline_has_no_password_and_sigterm_stops_it(pg_url: str, tmp_path: Path) -> None:
    # The test server trusts local connections, so the password is accepted and ignored: it only has to
    # travel from the environment to Streamlit without reaching a command line.
    url = make_url(_migrated(pg_url)).set(password=PASSWORD).render_as_string(hide_password=False)
    assert PASSWORD in url
    port = free_port()
    with _dashboards(url, port, tmp_path) as (parent, child):
        for pid in (parent.pid, child):
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert not [a for a in argv if PASSWORD.encode() in a], argv
        assert b"streamlit" in Path(f"/proc/{child}/cmdline").read_bytes()
        _stops_on(signal.SIGTERM, parent, child, port)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_to_qfleet_dashboards_stops_streamlit(sig: signal.Signals, tiny_sqlite: str, tmp_path: Path) -> None:
    port = free_port()
    with _dashboards(tiny_sqlite, port, tmp_path) as (parent, child):
        _stops_on(sig, parent, child, port)


# -- bad settings: one line, exit 2, before Streamlit ----------------------------------------------------------


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str], environ: dict[str, str] | None = None) -> str:
    def never(cmd: list[str], env: dict[str, str]) -> int:
        raise AssertionError(f"Streamlit started: {cmd}")

    rc = cli.main(argv, environ=environ or {}, run=never)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("port", ["99999", "0", "-1", "http"])
def test_bad_port_is_one_line(port: str, tiny_sqlite: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert f"--port {port!r}" in _refused(["--db", tiny_sqlite, "--port", port], capsys)


def test_port_in_use_is_one_line(tiny_sqlite: str, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert str(port) in _refused(["--db", tiny_sqlite, "--port", str(port)], capsys)


def test_missing_sqlite_file_is_not_created(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.db"
    err = _refused(["--db", f"sqlite:///{missing}"], capsys)
    assert "nope.db" in err and "does not exist" in err
    assert not missing.exists() and list(tmp_path.iterdir()) == []


def test_unmigrated_database_names_qfleet_db_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = _migrated(f"sqlite:///{tmp_path / 'old.db'}")
    eng = open_engine(url)
    try:
        downgrade(eng, "base")
    finally:
        eng.dispose()
    assert "qfleet db upgrade" in _refused(["--db", url], capsys)


def test_closed_postgresql_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()  # nothing listens there
    err = _refused(["--db", f"postgresql+psycopg://u:{PASSWORD}@127.0.0.1:{port}/x"], capsys)
    assert PASSWORD not in err


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10"])
def test_non_loopback_without_auth_is_refused(host: str, tiny_sqlite: str,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    assert "--auth" in _refused(["--db", tiny_sqlite, "--host", host], capsys)


def test_auth_settings_are_checked(tiny_sqlite: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "--users-file" in _refused(["--db", tiny_sqlite, "--auth", "users"], capsys)
    assert "--proxy-header" in _refused(["--db", tiny_sqlite, "--auth", "proxy"], capsys)
    assert "cannot be read" in _refused(["--db", tiny_sqlite, "--auth", "users", "--users-file",
                                         str(tmp_path / "none")], capsys)
    shared = tmp_path / "users"
    auth.add_user(shared, "alice", "pw-alice")
    shared.chmod(0o644)
    assert "chmod 600" in _refused(["--db", tiny_sqlite, "--auth", "users", "--users-file", str(shared)], capsys)


def test_auth_mode_reaches_streamlit_through_its_environment(tiny_sqlite: str, tmp_path: Path) -> None:
    users = tmp_path / "users"
    auth.add_user(users, "alice", "pw-alice")
    calls: list[tuple[list[str], dict[str, str]]] = []
    rc = cli.main(["--db", tiny_sqlite, "--host", "0.0.0.0", "--port", str(free_port()), "--auth", "users",
                   "--users-file", str(users)], environ={}, run=lambda cmd, env: calls.append((cmd, env)) or 0)
    assert rc == 0
    cmd, env = calls[0]
    assert auth.AuthConfig.from_env(env) == auth.AuthConfig(mode="users", users_file=users.resolve())
    assert str(users) not in " ".join(cmd)


# -- the users file ------------------------------------------------------------------------------------------


def test_users_add_reads_the_password_from_stdin_and_writes_a_private_file(tmp_path: Path) -> None:
    users = tmp_path / "conf" / "users"
    for name, pw in (("alice", "pw-alice"), ("bob", "pw-bob"), ("alice", "pw-alice-2")):
        r = subprocess.run([sys.executable, "-m", "qfleet.cli", "dashboards", "users", "add", name,
                            "--users-file", str(users)], input=f"{pw}\n", capture_output=True, text=True,
                           timeout=120, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
    assert stat.S_IMODE(users.stat().st_mode) == 0o600
    text = users.read_text()
    assert "pw-" not in text
    table = auth.read_users(users)
    assert sorted(table) == ["alice", "bob"] and all(h.startswith("$argon2id$") for h in table.values())
    assert auth.verify(table, "alice", "pw-alice-2") and not auth.verify(table, "alice", "pw-alice")
    assert auth.verify(table, "bob", "pw-bob") and not auth.verify(table, "carol", "pw-bob")
    assert list(users.parent.iterdir()) == [users]  # no temporary file left behind


def test_hash_password_prints_a_salted_hash(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["hash-password"], stdin=lambda: "pw\n") == 0
    first = capsys.readouterr().out.strip()
    assert cli.main(["hash-password"], stdin=lambda: "pw\n") == 0
    second = capsys.readouterr().out.strip()
    assert first.startswith("$argon2id$") and first != second  # salted
    assert auth.verify({"x": first}, "x", "pw") and auth.verify({"x": second}, "x", "pw")
