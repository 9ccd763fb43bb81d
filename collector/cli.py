"""`qfleet db …` and `qfleet collector …`: schema, retention and the OTLP/HTTP receiver."""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
from collections.abc import Mapping, Sequence
from typing import TextIO

__all__ = ["main", "parse_duration_ns"]

_DURATION = re.compile(r"^(\d+)(s|m|h|d|w)$")
_UNIT_NS = {"s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9, "w": 7 * 86400 * 10**9}


def parse_duration_ns(text: str) -> int:
    """Parse ``90s``, ``30m``, ``12h``, ``14d`` or ``2w`` into nanoseconds.

    >>> parse_duration_ns("14d") == 14 * 86400 * 10**9
    True

    Raises:
        ValueError: not a positive whole number followed by one of s, m, h, d, w.
    """
    m = _DURATION.match(text.strip())
    if not m or int(m.group(1)) == 0:
        raise ValueError(f"duration {text!r} is not valid; write a positive whole number and a unit, "
                         "e.g. 90s, 30m, 12h, 14d or 2w")
    return int(m.group(1)) * _UNIT_NS[m.group(2)]


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
    pr.add_argument("--older-than", required=True, help="horizon, e.g. 14d (rollups are kept)")
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
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run a `db` or `collector` command; returns the exit status."""
    import os

    from qfleet.collector.migrate import current_revisions, downgrade, head_revisions, upgrade
    from qfleet.collector.settings import Settings, SettingsError
    from qfleet.collector.store import Store, StoreError, open_engine

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
    shown = engine.url.render_as_string(hide_password=True)
    if args.group == "db":
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
            try:
                horizon = parse_duration_ns(args.older_than)
                res = Store(engine).prune(older_than_ns=horizon, batch_size=args.batch_size)
            except (ValueError, StoreError) as e:
                print(f"qfleet db prune: {e}", file=err)
                return 2
            print(f"pruned {res.spans} spans, {res.span_events} span events, {res.span_links} span links, "
                  f"{res.samples} samples older than {args.older_than}", file=out)
        elif args.cmd == "rollup":
            r = Store(engine).refresh_rollups()
            print(f"recomputed {r.span_buckets} span and {r.metric_buckets} metric minute buckets", file=out)
        return 0
    return _serve(args, settings, engine, out, err)


def _serve(args: argparse.Namespace, settings, engine, out: TextIO, err: TextIO) -> int:  # type: ignore[no-untyped-def]
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
