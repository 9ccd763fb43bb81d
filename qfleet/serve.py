"""`qfleet serve`: the collector's OTLP receiver plus the periodic jobs, in one process; several on PostgreSQL.

Jobs (APScheduler, in the background): the evaluation leader's tick every ``--dispatch-interval`` (10 s: whoever
holds the ``evaluate`` lease evaluates SLOs and rules every ``--eval-interval``, 30 s, and flushes due groups into
the outbox), delivery of the outbox every ``--dispatch-interval`` on its own thread (every replica delivers, each
item leased to one of them), rollups of data other processes wrote every 10 s (the receiver rolls up its own
writes), retention daily. SIGTERM or SIGINT stops the jobs, finishes the current cycle and the receiver's queue,
gives the lease up and exits 0; a restart resumes from the database (alerts, notification log, outbox, incidents).

On SQLite one ``qfleet serve`` runs per database file (a second one is refused at start-up); on PostgreSQL any
number share one database (docs/operations.md).

A configuration directory may hold ``alerting.yaml`` (Alertmanager subset), ``slos.yaml`` (OpenSLO), ``rules.yaml``
(direct alert rules) and ``webhook.secret``; whatever is missing falls back to the built-in sample, the default
SLO pack, the default rules, and a generated secret (created mode 0600).
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, TextIO

__all__ = ["ServeError", "build_service", "main", "sqlite_lock"]

logger = logging.getLogger(__name__)


class ServeError(ValueError):
    """A start-up problem of ``qfleet serve``; the message names the value and the fix (one line)."""


def build_service(engine: Any, config_dir: Path | None, *, clock: Any = time.time_ns, holder: str | None = None,
                  external_url: str | None = None) -> Any:
    """The :class:`alerts.service.AlertService` for ``config_dir`` (built-in defaults for what it lacks).

    Raises:
        ServeError: ``config_dir`` is not an existing directory.
        ValueError: a configuration file or the secret is invalid (the message names it).
    """
    from importlib.resources import files

    from qfleet.alerts.config import load_config
    from qfleet.alerts.payloads import DEFAULT_EXTERNAL_URL
    from qfleet.alerts.rules import load_rules
    from qfleet.alerts.service import AlertService
    from qfleet.alerts.webhook import create_secret
    from qfleet.slo.spec import builtin_specs_path, load_slos

    base = Path(config_dir) if config_dir else None
    if base is not None and not base.is_dir():
        raise ServeError(f"--config {str(base)!r} is not a directory; create it (mkdir -p {base}) and put "
                         "alerting.yaml, slos.yaml or rules.yaml there, or leave --config out for the built-ins")

    def pick(name: str, default: Path) -> Path:
        if base is not None and (base / name).exists():
            return base / name
        return default

    alerting = pick("alerting.yaml", Path(str(files("qfleet.alerts") / "alerting.yaml")))
    slos = pick("slos.yaml", builtin_specs_path())
    rules = pick("rules.yaml", Path(str(files("qfleet.alerts") / "rules" / "fleet.yaml")))
    secret_path = (base or Path.cwd()) / "webhook.secret"
    return AlertService(engine, load_config(alerting), slos=load_slos(slos), rules=load_rules(rules),
                        secret=create_secret(secret_path), clock=clock, holder=holder,
                        external_url=external_url or DEFAULT_EXTERNAL_URL)


def sqlite_lock(engine: Any) -> IO[str] | None:
    """On a SQLite file, an exclusive lock on ``<file>.serve.lock`` held for the process's life (None on
    PostgreSQL, an in-memory database or a ``file:`` URI): SQLite has one writer, and two services would each
    run the alerting cycle.

    Raises:
        ServeError: another process holds the lock (its pid is named).
    """
    import fcntl

    from qfleet.collector import sqlite_file

    database = sqlite_file(engine.url)
    if database is None:
        return None
    path = Path(f"{database}.serve.lock")
    handle = open(path, "a+")  # noqa: SIM115 (held open until the process exits)
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = handle.read().strip() or "?"
        handle.close()
        raise ServeError(f"another qfleet serve (pid {pid}) already runs on {engine.url.database!r}; SQLite is "
                         "single-process: stop that one, or run replicas on PostgreSQL (docs/operations.md)") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _clock(start_at: str | None) -> Any:
    """The wall clock, or one that reads ``start_at`` when the service starts and runs on from there."""
    if not start_at:
        return time.time_ns
    from qfleet.units import parse_rfc3339

    offset = parse_rfc3339(start_at) - time.time_ns()
    return lambda: time.time_ns() + offset


def _check_interval(eval_interval_s: float, resolve_timeout_ns: int) -> None:
    """Alerts are refreshed once per evaluation; resolve_timeout must outlast the gap between two."""
    from qfleet.units import NS, format_duration

    if eval_interval_s * NS >= resolve_timeout_ns:
        raise ValueError(f"--eval-interval {eval_interval_s:g} s is not shorter than global.resolve_timeout "
                         f"{format_duration(resolve_timeout_ns)}: every alert would resolve between two evaluations; "
                         "lower --eval-interval or raise resolve_timeout in alerting.yaml")


def _external_url(text: str) -> str:
    from qfleet.alerts.payloads import check_external_url

    try:
        return check_external_url(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds, e.g. 30") from None
    if not 0.05 <= value <= 86_400:
        raise argparse.ArgumentTypeError(f"{text!r} seconds is out of range; give 0.05 to 86400, e.g. 30")
    return value


def _parser() -> argparse.ArgumentParser:
    from qfleet.problems import OneLineParser
    from qfleet.units import parse_duration

    def duration(text: str) -> int:
        try:
            return parse_duration(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    p = OneLineParser(prog="qfleet serve", description=__doc__.splitlines()[0])
    p.add_argument("--db", help="database URL (default $QFLEET_DATABASE_URL or sqlite:///qfleet.db)")
    p.add_argument("--config", help="configuration directory (alerting.yaml, slos.yaml, rules.yaml, webhook.secret)")
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=4318, help="OTLP/HTTP port (0 picks a free one)")
    p.add_argument("--grpc-port", type=int, help="also serve OTLP/gRPC on this port (OTLP's is 4317; 0 picks a free "
                   "one), with the same token, limits and queue; default: HTTP only")
    p.add_argument("--token-file", help="file with the ingestion bearer token (default $QFLEET_TOKEN_FILE or "
                   "./qfleet.token; created with a random token, mode 0600, if missing)")
    p.add_argument("--eval-interval", type=_positive_seconds, default=30.0,
                   help="seconds between SLO and rule evaluations (fleet-wide, by the leader)")
    p.add_argument("--dispatch-interval", type=_positive_seconds, default=10.0,
                   help="seconds between the leader's ticks and between delivery runs")
    p.add_argument("--retention", type=duration, default=parse_duration("14d"),
                   help="keep raw spans and samples this long before the service's clock (see --start-at), and "
                   "delivered notifications this long (default 14d; 0 keeps everything)")
    p.add_argument("--external-url", type=_external_url,
                   help="the dashboards' URL as responders reach it: notifications' externalURL and the base of "
                   "each incident's deep link (default $QFLEET_EXTERNAL_URL, else http://127.0.0.1:8501)")
    p.add_argument("--start-at", help="run the alerting clock from this RFC 3339 instant (a store recorded in "
                   "simulated time, e.g. by a game day); default: the wall clock")
    return p


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    """Run the service until SIGTERM/SIGINT; returns the exit status."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from qfleet.alerts.am_intake import INTAKE_PATH, intake_route
    from qfleet.alerts.leases import EVALUATE, Lease
    from qfleet.alerts.payloads import external_url_from_env
    from qfleet.collector import (
        ListenError,
        Settings,
        SettingsError,
        Store,
        StoreError,
        load_token,
        open_engine,
        upgrade,
    )
    from qfleet.collector.receiver import Receiver, ReceiverConfig
    from qfleet.units import NS, format_rfc3339

    out = stdout or sys.stdout
    args = _parser().parse_args(argv)
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    lock_handle = None
    try:
        external_url = args.external_url or external_url_from_env(os.environ)
        settings = Settings.from_env(os.environ, database_url=args.db, host=args.host, token_file=args.token_file)
        token = load_token(settings.token_file)
        # Before the database is touched: a bad port fails fast.
        receiver_config = ReceiverConfig(host=settings.host, port=args.port, grpc_port=args.grpc_port, token=token)
        clock = _clock(args.start_at)
        engine = open_engine(settings.database_url)
        lock_handle = sqlite_lock(engine)
        upgrade(engine)
        service = build_service(engine, Path(args.config) if args.config else None, clock=clock, holder=holder,
                                external_url=external_url)
        _check_interval(args.eval_interval, service.config.resolve_timeout_ns)

        # Alertmanager's webhooks (a team's own Alertmanager routing into qfleet's incidents) on the OTLP port.
        receiver = Receiver(Store(engine), receiver_config, extra_routes=[intake_route(engine, clock=clock)])
        receiver.start()
    except (SettingsError, StoreError, ServeError, ListenError, ValueError, OSError) as e:
        print(f"qfleet serve: {e}", file=sys.stderr)
        return 2
    eval_ns = int(args.eval_interval * NS)
    # A dead leader is replaced one lease TTL after its last renewal: one evaluation interval.
    lease = Lease(engine, EVALUATE, holder=holder, ttl_ns=eval_ns, clock=clock)
    lead_lock = threading.Lock()  # one leader tick at a time (the shutdown tick waits for the scheduled one)

    def guarded(fn: Any, name: str) -> Any:
        def run() -> None:
            try:
                fn()
            except Exception:  # a failed job is logged and retried at the next tick; the service lives on
                logger.exception("qfleet serve: %s failed", name)
        return run

    def lead() -> None:
        with lead_lock:
            service.lead(lease, eval_ns)

    def retention() -> None:
        if args.retention:
            # Relative to the service's clock (simulated with --start-at): one span stamped far in the future by a
            # client with a bad clock must not make retention delete the real data.
            Store(engine, clock=clock).prune(older_than_ns=args.retention, relative_to="now")
            service.prune(older_than_ns=args.retention)

    def rollups() -> None:
        # The receiver rolls up what it writes; this covers data written by other processes (bulk writers).
        Store(engine).refresh_rollups(settle_ns=10 * NS)

    sched = BackgroundScheduler(timezone="UTC")
    every = {"max_instances": 1, "coalesce": True}
    sched.add_job(guarded(lead, "evaluation"), "interval", seconds=args.dispatch_interval, id="lead", **every)
    # Delivery apart from evaluation: a slow receiver delays only delivery, never the alerting cycle.
    sched.add_job(guarded(service.deliver, "delivery"), "interval", seconds=args.dispatch_interval, id="deliver",
                  **every)
    sched.add_job(guarded(retention, "retention"), "interval", hours=24, id="retention", **every)
    sched.add_job(guarded(rollups, "rollups"), "interval", seconds=10, id="rollups", **every)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sched.start()
    host, port = receiver.address
    grpc = f" and gRPC {':'.join(map(str, receiver.grpc_address))}" if receiver.grpc_address else ""
    print(f"qfleet serve: OTLP on http://{host}:{port}{grpc} (Alertmanager webhooks at {INTAKE_PATH}), SLOs and "
          f"rules every {args.eval_interval:g} s (by the replica holding the evaluation lease; this one is {holder}), "
          f"delivery every {args.dispatch_interval:g} s (Ctrl-C or SIGTERM to stop)", file=out, flush=True)
    stop.wait()
    sched.shutdown(wait=True)
    guarded(lead, "evaluation")()            # flush what the last evaluation produced
    guarded(service.deliver, "delivery")()  # and deliver it
    guarded(lease.release, "lease release")()
    receiver.stop()
    engine.dispose()
    if lock_handle is not None:
        lock_handle.close()
    # The service's clock as it stopped: where a restart of a store in simulated time picks up (--start-at).
    print(f"qfleet serve: stopped at {format_rfc3339(clock())}", file=out, flush=True)
    return 0
