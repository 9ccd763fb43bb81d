"""``qfleet dashboards [--db URL] [--port 8501] [--host 127.0.0.1] [--auth none|users|proxy]``: serve the Streamlit
app headless; ``qfleet dashboards users add NAME --users-file PATH``: add a login to a users file.

Before Streamlit starts, every setting is checked (one line and exit 2 on a bad one): the port, the auth mode
(``none`` only on loopback), the users file, and the store (an existing, migrated database: a mistyped SQLite path
is never created). The store URL reaches Streamlit through its environment only: a command line is readable by
every local user (``/proc/PID/cmdline``), an environment only by the same user. Streamlit runs in its own process
group; SIGTERM, SIGINT and SIGHUP are forwarded to that group and waited for, so no server outlives this command.
"""

from __future__ import annotations

import argparse
import getpass
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import FrameType

from qfleet.collector.settings import ENV_DATABASE_URL, Settings, SettingsError
from qfleet.collector.store import StoreError
from qfleet.dashboards.auth import (
    ENV_AUTH,
    ENV_PROXY_HEADER,
    ENV_USERS_FILE,
    MODES,
    AuthConfig,
    AuthError,
    add_user,
    hash_password,
    is_loopback,
)

__all__ = ["command", "main", "supervise"]

APP = Path(__file__).resolve().parent / "app.py"
#: Seconds Streamlit gets to stop after SIGTERM before its process group is killed.
STOP_GRACE_S = 10.0


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qfleet dashboards", description="Serve the exec, on-call and debug dashboards.",
                                epilog="qfleet dashboards users add NAME --users-file PATH: add a login (the "
                                       "password is read from the terminal or stdin).")
    p.add_argument("--db", help=f"store URL (default ${ENV_DATABASE_URL} or sqlite:///qfleet.db)")
    p.add_argument("--port", default="8501", help="port to listen on, 1-65535 (default 8501)")
    p.add_argument("--host", default=None, help="address to listen on (default 127.0.0.1, or $QFLEET_HOST)")
    p.add_argument("--auth", default="none", choices=MODES,
                   help="none (loopback only, the default), users (a login form over --users-file) or proxy "
                        "(a reverse proxy's --proxy-header names the user)")
    p.add_argument("--users-file", type=Path, help="users file of --auth users (qfleet dashboards users add)")
    p.add_argument("--proxy-header", help="header naming the user with --auth proxy, e.g. X-Forwarded-User "
                                          "(the proxy must strip any copy the client sends)")
    return p


def command(settings: Settings, port: int) -> list[str]:
    """The ``streamlit run`` command line serving the app headless on ``settings.host:port``.

    It carries no store URL (a password in it would be readable by every local user): the child reads
    ``$QFLEET_DATABASE_URL`` from the environment :func:`main` gives it.
    """
    return [sys.executable, "-m", "streamlit", "run", str(APP),
            "--server.headless", "true", "--server.address", settings.host, "--server.port", str(port),
            "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
            "--client.toolbarMode", "viewer"]  # no "Deploy" button or developer menu in front of the on-call


def supervise(cmd: Sequence[str], env: Mapping[str, str]) -> int:
    """Run ``cmd`` in its own process group until it exits; forward SIGTERM, SIGINT and SIGHUP to the group
    (SIGKILL after :data:`STOP_GRACE_S`), and stop it if this function is left any other way.

    Returns the child's exit status, or 128 + the signal number when a signal stopped it.
    """
    proc = subprocess.Popen(list(cmd), env=dict(env), start_new_session=True)
    got: list[int] = []

    def _kill_group(sig: int) -> None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:  # already gone
            pass

    def _forward(signum: int, _frame: FrameType | None) -> None:
        got.append(signum)
        _kill_group(signal.SIGTERM)
        timer = threading.Timer(STOP_GRACE_S, _kill_group, args=(signal.SIGKILL,))
        timer.daemon = True
        timer.start()

    previous: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():  # signal handlers live in the main thread only
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            previous[sig] = signal.signal(sig, _forward)
    try:
        rc = proc.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
        if proc.poll() is None:  # left by an exception: never leave the server behind
            _kill_group(signal.SIGTERM)
            try:
                proc.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                _kill_group(signal.SIGKILL)
                proc.wait()
    return 128 + got[0] if got else rc


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise SettingsError(f"--port {text!r} is not a TCP port; use 1-65535, e.g. --port 8501")
    return port


def _check_port_free(host: str, port: int) -> None:
    """Refuse a port something already listens on (Streamlit would otherwise move to another port)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no conflict
        try:
            s.bind((host, port))
        except OSError as e:
            raise SettingsError(f"cannot listen on {host}:{port} ({e.strerror}); stop what uses it or pick "
                                "another --port") from None


def _check_store(url: str) -> None:
    from qfleet.dashboards.data import open_store

    open_store(url).dispose()


def _read_password(stdin: Callable[[], str] | None) -> str:
    if stdin is not None:
        return stdin().rstrip("\r\n")
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Password (again): ") != first:
            raise AuthError("the two passwords differ; run the command again")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _users(argv: Sequence[str], stdin: Callable[[], str] | None) -> int:
    p = argparse.ArgumentParser(prog="qfleet dashboards users",
                                description="Manage the users file of --auth users (argon2id hashes, mode 0600).")
    sub = p.add_subparsers(dest="action", required=True)
    add = sub.add_parser("add", help="add a user or change a password (read from the terminal or stdin)")
    add.add_argument("name")
    add.add_argument("--users-file", type=Path, required=True)
    args = p.parse_args(argv)
    try:
        add_user(args.users_file, args.name, _read_password(stdin))
    except AuthError as e:
        print(f"qfleet dashboards users: {e}", file=sys.stderr)
        return 2
    print(f"qfleet dashboards users: {args.name} saved in {args.users_file}", file=sys.stderr)
    return 0


def _hash_password(stdin: Callable[[], str] | None) -> int:
    password = _read_password(stdin)
    if not password:
        print("qfleet dashboards hash-password: the password is empty", file=sys.stderr)
        return 2
    print(hash_password(password))
    return 0


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         run: Callable[..., int] = supervise, stdin: Callable[[], str] | None = None) -> int:
    """Run ``qfleet dashboards``; returns the exit status of Streamlit (2 for a bad setting).

    ``run(cmd, env=...)`` starts and waits for the server (:func:`supervise`); ``stdin`` replaces the terminal
    for the password prompts of ``users add`` and ``hash-password``.
    """
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in[:1] == ["users"]:
        return _users(args_in[1:], stdin)
    if args_in[:1] == ["hash-password"]:
        return _hash_password(stdin)
    args = _parser().parse_args(args_in)
    env = dict(os.environ if environ is None else environ)
    try:
        settings = Settings.from_env(env, database_url=args.db, host=args.host)
        port = _port(args.port)
        auth = AuthConfig(mode=args.auth, users_file=args.users_file, proxy_header=args.proxy_header)
        auth.check(settings.host)
        _check_store(settings.database_url)
        _check_port_free(settings.host, port)
    except (SettingsError, AuthError, StoreError) as e:
        print(f"qfleet dashboards: {e}", file=sys.stderr)
        return 2
    env[ENV_DATABASE_URL] = settings.database_url
    for name in (ENV_AUTH, ENV_USERS_FILE, ENV_PROXY_HEADER):  # only this command's choice reaches the app
        env.pop(name, None)
    env.update(auth.to_env())
    from sqlalchemy import make_url

    shown = make_url(settings.database_url).render_as_string(hide_password=True)
    print(f"qfleet dashboards: serving {APP.name} on http://{settings.host}:{port}/ (store {shown}, "
          f"auth {auth.mode})", file=sys.stderr)
    if auth.mode == "proxy" and not is_loopback(settings.host):
        print(f"qfleet dashboards: trusting the {auth.proxy_header} header: only the reverse proxy may reach "
              f"{settings.host}:{port}", file=sys.stderr)
    return int(run(command(settings, port), env=env))


if __name__ == "__main__":
    raise SystemExit(main())
