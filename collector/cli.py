"""`qfleet db …`, `qfleet runs list` and `qfleet collector …`: schema, retention, runs and the OTLP receiver."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # imported where used, so that `qfleet --help` stays fast
    from sqlalchemy import Engine

    from qfleet.collector.settings import Settings
    from qfleet.collector.store import Store

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from qfleet.problems import OneLineParser

    p = OneLineParser(prog="qfleet", description="qfleet telemetry store and collector")
    groups = p.add_subparsers(dest="group", required=True)

    def with_db(sp: argparse.ArgumentParser) -> argparse.ArgumentParser:
        sp.add_argument("--db", help="database URL (default $QFLEET_DATABASE_URL or sqlite:///qfleet.db)")
        return sp

    db = groups.add_parser("db", help="schema migrations, retention and rollups")
    dbc = db.add_subparsers(dest="cmd", required=True)
    up = with_db(dbc.add_parser("upgrade", help="migrate the schema up (default: to the latest)"))
    up.add_argument("revision", nargs="?", default="head")
    down = with_db(dbc.add_parser("downgrade", help="migrate the schema down to REVISION ('base' drops all)"))
    down.add_argument("revision")
    with_db(dbc.add_parser("current", help="print the schema revision of the database"))
    pr = with_db(dbc.add_parser("prune", help="delete raw spans and samples older than a horizon"))
    pr.add_argument("--older-than", required=True,
                    help="horizon as a Prometheus duration, e.g. 14d or 1w12h, before the newest stored data "
                         "(rollups are kept)")
    pr.add_argument("--relative-to", choices=("newest", "now"), default="newest",
                    help="measure --older-than back from the newest span or sample in the store (default: right "
                         "for simulated data, which lie in the past or the future) or from the clock ('now')")
    pr.add_argument("--batch-size", type=int, default=10_000, help="rows per delete transaction")
    with_db(dbc.add_parser("rollup", help="compute pending per-minute rollups now"))

    runs = groups.add_parser("runs", help="the simulated runs in the store")
    runsc = runs.add_subparsers(dest="cmd", required=True)
    rl = with_db(runsc.add_parser("list", help="id, fleet, simulated start and end (UTC), status; oldest first"))
    rl.add_argument("--json", action="store_true", help="one JSON object per run, one per line")

    col = groups.add_parser("collector", help="the OTLP receiver (HTTP, optionally gRPC)")
    colc = col.add_subparsers(dest="cmd", required=True)
    sv = with_db(colc.add_parser("serve", help="receive OTLP/HTTP (and OTLP/gRPC) traces and metrics into the store"))
    sv.add_argument("--host", help="listen address (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=4318, help="listen port (default 4318; 0 picks a free one)")
    sv.add_argument("--grpc-port", type=int, help="also serve OTLP/gRPC on this port of the same host (OTLP's is "
                    "4317; 0 picks a free one); same token, limits and queue as HTTP. Default: HTTP only")
    sv.add_argument("--token-file", help="bearer token file (default ./qfleet.token, created if missing)")
    sv.add_argument("--max-body-bytes", type=int, default=20 * 1024 * 1024,
                    help="largest request body, also after gzip decompression (default 20 MiB)")
    sv.add_argument("--queue-items", type=int, default=200_000,
                    help="spans and points waiting for the database before requests get 503")
    sv.add_argument("--no-upgrade", action="store_true", help="do not migrate the schema at start")
    return p


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None,
         clock: Callable[[], int] = time.time_ns) -> int:
    """Run a `db` or `collector` command; returns the exit status.

    ``clock`` (wall time in ns) is what ``db prune --relative-to now`` measures ``--older-than`` from.
    """
    import os

    from qfleet.collector.settings import Settings, SettingsError
    from qfleet.collector.store import StoreError

    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ if environ is None else environ, database_url=args.db,
                                     host=getattr(args, "host", None),
                                     token_file=getattr(args, "token_file", None))
        if args.group == "db":
            return _db(args, settings.database_url, out, clock)
        if args.group == "runs":
            return _runs(args, settings.database_url, out)
        return _serve(args, settings, out, err)
    except (SettingsError, StoreError) as e:
        print(f"qfleet {args.group} {args.cmd}: {e}", file=err)
        return 2


def _runs(args: argparse.Namespace, url: str, out: TextIO) -> int:
    """`qfleet runs list`: a reader (never creates or migrates the store)."""
    import json

    from qfleet.collector.migrate import open_existing, reporting_unreachable
    from qfleet.collector.runs import Runs
    from qfleet.units import format_rfc3339

    engine = open_existing(url)
    try:
        with reporting_unreachable(engine):
            runs = Runs(engine).list()
    finally:
        engine.dispose()
    for r in runs:
        row = {"id": r.id, "fleet": r.fleet, "start": format_rfc3339(r.start_ns), "end": format_rfc3339(r.end_ns),
               "status": r.status}
        print(json.dumps(row) if args.json else "  ".join(row.values()), file=out)
    if not runs and not args.json:
        print("no runs (this store holds no simulated run; OTLP data from real fleets has none)", file=out)
    return 0


def _engine(url: str, cmd: str) -> Engine:
    """The engine a `db` command needs: only `upgrade` may create a database; `prune` and `rollup` need the
    schema at head."""
    from qfleet.collector.migrate import open_existing, require_existing
    from qfleet.collector.store import open_engine

    if cmd in ("prune", "rollup"):
        return open_existing(url)
    engine = open_engine(url)
    if cmd != "upgrade":
        require_existing(engine)
    return engine


def _db(args: argparse.Namespace, url: str, out: TextIO, clock: Callable[[], int]) -> int:
    from qfleet.collector.migrate import reporting_unreachable

    engine = _engine(url, args.cmd)
    try:
        with reporting_unreachable(engine):
            return _db_command(args, engine, out, clock)
    finally:
        engine.dispose()


def _db_command(args: argparse.Namespace, engine: Engine, out: TextIO, clock: Callable[[], int]) -> int:
    from qfleet.collector.migrate import current_revisions, downgrade, head_revisions, shown_url, upgrade
    from qfleet.collector.store import Store

    shown = shown_url(engine)
    if args.cmd == "upgrade":
        upgrade(engine, args.revision)
        print(f"{shown}: at revision {', '.join(current_revisions(engine))}", file=out)
    elif args.cmd == "downgrade":
        downgrade(engine, args.revision)
        print(f"{shown}: at revision {', '.join(current_revisions(engine)) or 'base'}", file=out)
    elif args.cmd == "current":
        cur, heads = current_revisions(engine), head_revisions()
        state = "up to date" if set(cur) == set(heads) else f"behind head {', '.join(heads)}"
        print(f"{', '.join(cur) or 'base (empty)'} ({state})", file=out)
    elif args.cmd == "prune":
        return _prune(args, Store(engine, clock=clock), out)
    elif args.cmd == "rollup":
        r = Store(engine).refresh_rollups()
        print(f"recomputed {r.span_buckets} span and {r.metric_buckets} metric minute buckets", file=out)
    return 0


def _prune(args: argparse.Namespace, store: Store, out: TextIO) -> int:
    from qfleet.collector.store import StoreError
    from qfleet.units import DurationError, format_rfc3339, parse_duration

    try:
        horizon = parse_duration(args.older_than)
    except DurationError as e:
        raise StoreError(f"--older-than: {e}") from None
    if horizon == 0:
        raise StoreError("--older-than 0 would delete every raw span and sample; give a positive horizon, e.g. 14d")
    res = store.prune(older_than_ns=horizon, relative_to=args.relative_to, batch_size=args.batch_size)
    if res.horizon_unix_nano is None:
        print("nothing to prune: the store holds no spans or samples", file=out)
        return 0
    reference = "the newest data" if args.relative_to == "newest" else "now"
    print(f"pruned {res.spans} spans, {res.span_events} span events, {res.span_links} span links, "
          f"{res.samples} samples older than {format_rfc3339(res.horizon_unix_nano)} "
          f"({args.older_than} before {reference})", file=out)
    return 0


def _serve(args: argparse.Namespace, settings: Settings, out: TextIO, err: TextIO) -> int:
    from sqlalchemy.exc import DBAPIError

    from qfleet.collector.migrate import open_existing, reporting_unreachable, upgrade
    from qfleet.collector.receiver import Receiver, ReceiverConfig
    from qfleet.collector.settings import SettingsError, load_token
    from qfleet.collector.store import Store, StoreError, open_engine
    from qfleet.collector.transport import ListenError

    try:
        token = load_token(settings.token_file)
        config = ReceiverConfig(host=settings.host, port=args.port, grpc_port=args.grpc_port, token=token,
                                max_body_bytes=args.max_body_bytes, queue_items=args.queue_items)
    except (SettingsError, ValueError) as e:
        raise SettingsError(str(e)) from None
    if args.no_upgrade:
        engine = open_existing(settings.database_url)
    else:
        engine = open_engine(settings.database_url)
        upgrade(engine)
    try:
        with reporting_unreachable(engine):
            receiver = Receiver(Store(engine), config)
            receiver.start()  # binds first: a taken port fails before any thread starts
    except (StoreError, DBAPIError):
        engine.dispose()
        raise
    except ListenError as e:  # one line naming host:port and the fix already
        engine.dispose()
        raise StoreError(str(e)) from None
    except (OSError, ValueError) as e:
        engine.dispose()
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[0]
        raise StoreError(f"cannot listen on {settings.host}:{args.port} ({reason}); stop what holds the port, "
                         "or pass another --port (0 picks a free one)") from None
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    host, port = receiver.address
    grpc = f", OTLP/gRPC on {':'.join(map(str, receiver.grpc_address))}" if receiver.grpc_address else ""
    print(f"qfleet collector listening on http://{host}:{port} "
          f"(token in {settings.token_file}; OTLP at /v1/traces and /v1/metrics{grpc}, Prometheus remote write at "
          "/api/v1/write, health at /healthz, Prometheus at /metrics)", file=out, flush=True)
    stop.wait()
    receiver.stop()
    engine.dispose()
    return 0
