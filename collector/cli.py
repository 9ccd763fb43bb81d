"""`qfleet db …` and `qfleet collector …`: schema, retention and the OTLP/HTTP receiver."""

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
    p = argparse.ArgumentParser(prog="qfleet", description="qfleet telemetry store and collector")
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
                    help="horizon as a Prometheus duration, e.g. 14d or 1w12h (rollups are kept)")
    pr.add_argument("--batch-size", type=int, default=10_000, help="rows per delete transaction")
    with_db(dbc.add_parser("rollup", help="compute pending per-minute rollups now"))

    col = groups.add_parser("collector", help="the OTLP/HTTP receiver")
    colc = col.add_subparsers(dest="cmd", required=True)
    sv = with_db(colc.add_parser("serve", help="receive OTLP/HTTP traces and metrics into the store"))
    sv.add_argument("--host", help="listen address (default 127.0.0.1)")
    sv.add_argument("--port", type=int, default=4318, help="listen port (default 4318; 0 picks a free one)")
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

    ``clock`` (wall time in ns) is what retention measures ``--older-than`` from.
    """
    import os

    from qfleet.collector.settings import Settings, SettingsError
    from qfleet.collector.store import StoreError, open_engine

    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(os.environ if environ is None else environ, database_url=args.db,
                                     host=getattr(args, "host", None),
                                     token_file=getattr(args, "token_file", None))
        engine = open_engine(settings.database_url)
    except (SettingsError, StoreError) as e:
        print(f"qfleet: {e}", file=err)
        return 2
    if args.group == "db":
        return _db(args, engine, out, err, clock)
    return _serve(args, settings, engine, out, err)


def _db(args: argparse.Namespace, engine: Engine, out: TextIO, err: TextIO, clock: Callable[[], int]) -> int:
    from qfleet.collector.migrate import current_revisions, downgrade, head_revisions, upgrade
    from qfleet.collector.store import Store

    shown = engine.url.render_as_string(hide_password=True)
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
        return _prune(args, Store(engine, clock=clock), out, err)
    elif args.cmd == "rollup":
        r = Store(engine).refresh_rollups()
        print(f"recomputed {r.span_buckets} span and {r.metric_buckets} metric minute buckets", file=out)
    return 0


def _prune(args: argparse.Namespace, store: Store, out: TextIO, err: TextIO) -> int:
    from qfleet.collector.store import StoreError
    from qfleet.units import DurationError, parse_duration

    try:
        horizon = parse_duration(args.older_than)
    except DurationError as e:
        print(f"qfleet db prune: --older-than: {e}", file=err)
        return 2
    if horizon == 0:
        print("qfleet db prune: --older-than 0 would delete every raw span and sample; "
              "give a positive horizon, e.g. 14d", file=err)
        return 2
    try:
        res = store.prune(older_than_ns=horizon, batch_size=args.batch_size)
    except StoreError as e:
        print(f"qfleet db prune: {e}", file=err)
        return 2
    print(f"pruned {res.spans} spans, {res.span_events} span events, {res.span_links} span links, "
          f"{res.samples} samples older than {args.older_than}", file=out)
    return 0


def _serve(args: argparse.Namespace, settings: Settings, engine: Engine, out: TextIO, err: TextIO) -> int:
    from qfleet.collector.migrate import upgrade
    from qfleet.collector.receiver import Receiver, ReceiverConfig
    from qfleet.collector.settings import SettingsError, load_token
    from qfleet.collector.store import Store

    try:
        token = load_token(settings.token_file)
        config = ReceiverConfig(host=settings.host, port=args.port, token=token,
                                max_body_bytes=args.max_body_bytes, queue_items=args.queue_items)
    except (SettingsError, ValueError) as e:
        print(f"qfleet collector serve: {e}", file=err)
        return 2
    if not args.no_upgrade:
        upgrade(engine)
    receiver = Receiver(Store(engine), config)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    receiver.start()
    host, port = receiver.address
    print(f"qfleet collector listening on http://{host}:{port} "
          f"(token in {settings.token_file}; OTLP at /v1/traces and /v1/metrics, health at /healthz, "
          "Prometheus at /metrics)", file=out, flush=True)
    stop.wait()
    receiver.stop()
    return 0
