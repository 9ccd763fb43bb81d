"""`qfleet serve`: the collector's OTLP receiver plus the periodic jobs, in one process.

Jobs (APScheduler, in the background): SLO and alert-rule evaluation every ``--eval-interval`` (30 s), notification
dispatch and delivery every ``--dispatch-interval`` (10 s), rollups of data other processes wrote every 10 s
(the receiver rolls up its own writes), retention daily. SIGTERM or SIGINT stops the jobs, finishes the current cycle and the receiver's queue, and exits 0;
a restart resumes from the database (alerts, notification log, outbox, incidents).

A configuration directory may hold ``alerting.yaml`` (Alertmanager subset), ``slos.yaml`` (OpenSLO), ``rules.yaml``
(direct alert rules) and ``webhook.secret``; whatever is missing falls back to the built-in sample, the default
SLO pack, the default rules, and a generated secret (mode 0600).
"""

from __future__ import annotations

import argparse
import logging
import os
import secrets
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

__all__ = ["build_service", "main"]

logger = logging.getLogger(__name__)


def _secret(path: Path) -> bytes:
    from qfleet.alerts.webhook import load_secret

    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return load_secret(path)


def build_service(engine: Any, config_dir: Path | None, *, clock: Any = time.time_ns) -> Any:
    """The :class:`alerts.service.AlertService` for ``config_dir`` (built-in defaults for what it lacks)."""
    from importlib.resources import files

    from qfleet.alerts.config import load_config
    from qfleet.alerts.rules import load_rules
    from qfleet.alerts.service import AlertService
    from qfleet.slo.spec import builtin_specs_path, load_slos

    base = Path(config_dir) if config_dir else None

    def pick(name: str, default: Path) -> Path:
        if base is not None and (base / name).exists():
            return base / name
        return default

    alerting = pick("alerting.yaml", Path(str(files("qfleet.alerts") / "alerting.yaml")))
    slos = pick("slos.yaml", builtin_specs_path())
    rules = pick("rules.yaml", Path(str(files("qfleet.alerts") / "rules" / "fleet.yaml")))
    secret_path = (base or Path.cwd()) / "webhook.secret"
    return AlertService(engine, load_config(alerting), slos=load_slos(slos), rules=load_rules(rules),
                        secret=_secret(secret_path), clock=clock)


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


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    """Run the service until SIGTERM/SIGINT; returns the exit status."""
    from apscheduler.schedulers.background import BackgroundScheduler

    from qfleet.collector import Settings, SettingsError, Store, StoreError, load_token, open_engine, upgrade
    from qfleet.collector.receiver import Receiver, ReceiverConfig

    out = stdout or sys.stdout
    p = argparse.ArgumentParser(prog="qfleet serve", description=__doc__.splitlines()[0])
    p.add_argument("--db", help="database URL (default $QFLEET_DATABASE_URL or sqlite:///qfleet.db)")
    p.add_argument("--config", help="configuration directory (alerting.yaml, slos.yaml, rules.yaml, webhook.secret)")
    p.add_argument("--host", help="listen address (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=4318, help="OTLP/HTTP port (0 picks a free one)")
    p.add_argument("--eval-interval", type=float, default=30.0, help="seconds between SLO and rule evaluations")
    p.add_argument("--dispatch-interval", type=float, default=10.0, help="seconds between dispatch cycles")
    p.add_argument("--start-at", help="run the alerting clock from this RFC 3339 instant (a store recorded in "
                   "simulated time, e.g. by a game day); default: the wall clock")
    args = p.parse_args(argv)
    try:
        settings = Settings.from_env(os.environ, database_url=args.db, host=args.host)
        engine = open_engine(settings.database_url)
        token = load_token(settings.token_file)
        clock = _clock(args.start_at)
    except (SettingsError, StoreError, ValueError) as e:
        print(f"qfleet serve: {e}", file=sys.stderr)
        return 2
    upgrade(engine)
    try:
        service = build_service(engine, Path(args.config) if args.config else None, clock=clock)
        _check_interval(args.eval_interval, service.config.resolve_timeout_ns)
    except ValueError as e:
        print(f"qfleet serve: {e}", file=sys.stderr)
        return 2
    receiver = Receiver(Store(engine), ReceiverConfig(host=settings.host, port=args.port, token=token))
    receiver.start()
    lock = threading.Lock()  # one cycle at a time: evaluation and dispatch share the dispatcher

    def guarded(fn: Any) -> Any:
        def run() -> None:
            with lock:
                try:
                    fn()
                except Exception:  # a failed cycle is logged and retried at the next tick; the service lives on
                    logger.exception("qfleet serve: %s failed", fn.__name__)
        return run

    def retention() -> None:
        Store(engine).prune(older_than_ns=14 * 86400 * 10**9)

    def rollups() -> None:
        # The receiver rolls up what it writes; this covers data written by other processes (bulk writers).
        Store(engine).refresh_rollups(settle_ns=10 * 10**9)

    sched = BackgroundScheduler(timezone="UTC")
    sched.add_job(guarded(service.evaluate), "interval", seconds=args.eval_interval, id="evaluate",
                  max_instances=1, coalesce=True)
    sched.add_job(guarded(service.dispatch), "interval", seconds=args.dispatch_interval, id="dispatch",
                  max_instances=1, coalesce=True)
    sched.add_job(guarded(retention), "interval", hours=24, id="retention", max_instances=1, coalesce=True)
    sched.add_job(guarded(rollups), "interval", seconds=10, id="rollups", max_instances=1, coalesce=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    sched.start()
    host, port = receiver.address
    print(f"qfleet serve: OTLP on http://{host}:{port}, SLOs and rules every {args.eval_interval:g} s, "
          f"dispatch every {args.dispatch_interval:g} s (Ctrl-C or SIGTERM to stop)", file=out, flush=True)
    stop.wait()
    sched.shutdown(wait=True)
    guarded(service.dispatch)()  # deliver what the last evaluation produced (takes the cycle lock itself)
    receiver.stop()
    engine.dispose()
    from qfleet.units import format_rfc3339

    # The service's clock as it stopped: where a restart of a store in simulated time picks up (--start-at).
    print(f"qfleet serve: stopped at {format_rfc3339(clock())}", file=out, flush=True)
    return 0
