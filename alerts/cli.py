"""`qfleet alerts routes test | replay | silence | ack | incidents`: previews, silences, acknowledgements."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="qfleet alerts", description="alert routing, timelines, silences, incidents")
    sub = p.add_subparsers(dest="cmd", required=True)
    routes = sub.add_parser("routes", help="routing tree previews")
    rsub = routes.add_subparsers(dest="sub", required=True)
    rt = rsub.add_parser("test", help="the receivers an alert with these labels reaches (like amtool)")
    rt.add_argument("--config", required=True, help="alerting.yaml (Alertmanager subset)")
    rt.add_argument("labels", nargs="*", metavar="LABEL=VALUE")
    rp = sub.add_parser("replay", help="replay a timeline of alert state changes through the notification pipeline")
    rp.add_argument("--config", required=True)
    rp.add_argument("--events", required=True, help='JSON: [{"t": "400s", "labels": {...}, "state": "firing"}]')
    rp.add_argument("--until", help="replay until this offset (e.g. 6h); default: the last event plus 1 day")
    rp.add_argument("--json", action="store_true")
    si = sub.add_parser("silence", help="Alertmanager-style silences in the store")
    ssub = si.add_subparsers(dest="sub", required=True)
    sa = ssub.add_parser("add", help="create a silence")
    sa.add_argument("matchers", nargs="+", metavar='NAME="VALUE"', help="matchers, e.g. node=\"qpu-a\" slo=~\"fid.*\"")
    sa.add_argument("--duration", default="2h")
    sa.add_argument("--author", required=True)
    sa.add_argument("--comment", required=True)
    sx = ssub.add_parser("expire", help="end a silence now")
    sx.add_argument("id")
    ssub.add_parser("list", help="list silences")
    ack = sub.add_parser("ack", help="acknowledge an incident (stops its escalation)")
    ack.add_argument("incident")
    ack.add_argument("--by", required=True)
    inc = sub.add_parser("incidents", help="list incidents")
    inc.add_argument("--state", choices=["open", "acknowledged", "resolved"])
    inc.add_argument("--json", action="store_true")
    for sp in (si, ack, inc, sa, sx):
        sp.add_argument("--db", help="database URL (default $QFLEET_DATABASE_URL or sqlite:///qfleet.db)")
    for sp in ssub.choices.values():
        if not any(a.dest == "db" for a in sp._actions):
            sp.add_argument("--db", help="database URL")
    return p


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run a `qfleet alerts` command: 0 ok, 2 bad input (named)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        if args.cmd == "routes":
            return _routes_test(args, out)
        if args.cmd == "replay":
            return _replay(args, out)
        return _store_command(args, env, out)
    except ValueError as e:
        print(f"qfleet alerts {args.cmd}: {e}", file=err)
        return 2


def _routes_test(args: argparse.Namespace, out: TextIO) -> int:
    from qfleet.alerts.config import load_config
    from qfleet.alerts.routing import routes_test

    labels = {}
    for item in args.labels:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ValueError(f"{item!r} is not LABEL=VALUE; e.g. severity=page")
        labels[k] = v.strip('"')
    print(",".join(routes_test(load_config(Path(args.config)), labels)), file=out)
    return 0


_UNITS = {"ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9}


def _offset_ns(text: str) -> int:
    """``400s``, ``5m``, ``6h``, ``1d``, ``250ms`` as ns."""
    import re

    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text.strip())
    if not m:
        raise ValueError(f"--until {text!r} is not a duration; e.g. 400s, 30m, 6h, 1d")
    return int(m.group(1)) * _UNITS[m.group(2)]


def _replay(args: argparse.Namespace, out: TextIO) -> int:
    from qfleet.alerts.config import load_config
    from qfleet.alerts.timeline import replay

    path = Path(args.events)
    try:
        events = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--events {str(path)!r}: {e}; give a JSON list of "
                         '{"t": "400s", "labels": {...}, "state": "firing"|"resolved"}') from e
    until = _offset_ns(args.until) if args.until else None
    notes = replay(load_config(Path(args.config)), events, until_ns=until)
    docs = [{"t_s": n.at / 1e9, "receiver": n.receiver, "group_key": n.group_key, "reason": n.reason,
             "firing": [dict(a.labels) for a in n.firing], "resolved": [dict(a.labels) for a in n.resolved]}
            for n in notes]
    if args.json:
        print(json.dumps(docs), file=out)
    else:
        for d in docs:
            names = lambda xs: ",".join(x.get("alertname", "?") for x in xs) or "-"  # noqa: E731
            print(f"{d['t_s']:>9.0f}s  {d['receiver']:<16} {d['reason']:<24} firing={names(d['firing'])} "
                  f"resolved={names(d['resolved'])}", file=out)
    return 0


def _store_command(args: argparse.Namespace, env: Mapping[str, str], out: TextIO) -> int:
    from qfleet.collector import Settings, open_engine, upgrade

    engine = open_engine(Settings.from_env(env, database_url=args.db).database_url)
    upgrade(engine)
    try:
        now = time.time_ns()
        if args.cmd == "silence":
            return _silence(args, engine, now, out)
        from qfleet.alerts.incidents import Incidents

        incidents = Incidents(engine, clock=time.time_ns)
        if args.cmd == "ack":
            incidents.acknowledge(args.incident, args.by, now)
            print(f"incident {args.incident} acknowledged by {args.by}", file=out)
            return 0
        rows = incidents.list(state=args.state)
        if args.json:
            print(json.dumps(rows, default=str), file=out)
        else:
            for r in rows:
                print(f"{r['id']}  {r['state']:<12}  {r['severity']:<8}  {r['title']}", file=out)
        return 0
    finally:
        engine.dispose()


def _silence(args: argparse.Namespace, engine: Any, now: int, out: TextIO) -> int:
    from sqlalchemy import insert, select, update

    from qfleet.alerts.config import parse_matcher
    from qfleet.alerts.schema import SilenceRecord
    from qfleet.slo.model import parse_window_ns

    t = SilenceRecord.__table__
    if args.sub == "add":
        ms = [parse_matcher(m) for m in args.matchers]
        doc = [{"name": m.name, "value": m.value, "isRegex": m.op in ("=~", "!~"), "isEqual": m.op in ("=", "=~")}
               for m in ms]
        sid = str(uuid.uuid4())
        with engine.begin() as conn:
            conn.execute(insert(t).values(id=sid, matchers={"matchers": doc}, starts_at_unix_nano=now,
                                          ends_at_unix_nano=now + parse_window_ns(args.duration),
                                          created_by=args.author, comment=args.comment, updated_unix_nano=now))
        print(sid, file=out)
        return 0
    if args.sub == "expire":
        with engine.begin() as conn:
            n = conn.execute(update(t).where(t.c.id == args.id, t.c.ends_at_unix_nano > now).values(
                ends_at_unix_nano=now, updated_unix_nano=now)).rowcount
        if not n:
            raise ValueError(f"no active silence with id {args.id!r}; see `qfleet alerts silence list`")
        print(f"silence {args.id} expired", file=out)
        return 0
    with engine.connect() as conn:
        for r in conn.execute(select(t).order_by(t.c.starts_at_unix_nano)):
            state = "active" if r.starts_at_unix_nano <= now <= r.ends_at_unix_nano else (
                "pending" if now < r.starts_at_unix_nano else "expired")
            print(f"{r.id}  {state:<8}  {r.created_by}: {r.comment}  "
                  + " ".join(f'{m["name"]}{"=" if m["isEqual"] else "!"}{"~" if m["isRegex"] else ""}"{m["value"]}"'
                             for m in r.matchers["matchers"]), file=out)
    return 0
