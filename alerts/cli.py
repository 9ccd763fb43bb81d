"""`qfleet alerts routes test | replay | silence | ack | incidents`: previews, silences, acknowledgements.

Labels, titles, group keys and silence texts come from telemetry or other users: every line printed passes
through :func:`qfleet.text.for_terminal`, so an escape sequence or newline in them shows as text (``\\x1b``,
``\\n``) instead of driving the terminal or faking output lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from qfleet.text import for_terminal

if TYPE_CHECKING:
    from sqlalchemy import Engine

# Each command imports what it uses when it runs: `routes test` must answer without loading SQLAlchemy, the
# collector or the SLO engine (compare `amtool config routes test`).

__all__ = ["MAX_REPLAY_SPAN_NS", "incident_line", "local_identity", "main"]

MAX_REPLAY_SPAN_NS = 366 * 86_400 * 10**9   # a replay walks every flush: a year of them is already ~10^5 per group
_INT64_MAX = 2**63 - 1                      # the store's timestamps are signed 64-bit integers


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
    rp.add_argument("--until", help="replay until this offset (a duration: 6h, 1h30m); default: the last event "
                    "plus 1 day")
    rp.add_argument("--json", action="store_true")
    si = sub.add_parser("silence", help="Alertmanager-style silences in the store")
    ssub = si.add_subparsers(dest="sub", required=True)
    sa = ssub.add_parser("add", help="create a silence")
    sa.add_argument("matchers", nargs="+", metavar='NAME="VALUE"', help="matchers, e.g. node=\"qpu-a\" slo=~\"fid.*\"")
    sa.add_argument("--duration", default="2h", help="how long it lasts from now (a duration: 2h, 1h30m, 1d)")
    sa.add_argument("--author", help="a name to show beside who you are (recorded as local:<account> as NAME)")
    sa.add_argument("--comment", required=True)
    sx = ssub.add_parser("expire", help="end a silence now")
    sx.add_argument("id")
    sl = ssub.add_parser("list", help="list silences")
    ack = sub.add_parser("ack", help="acknowledge an incident (stops its escalation)")
    ack.add_argument("incident")
    ack.add_argument("--by", help="a name to show beside who you are (recorded as local:<account> as NAME)")
    inc = sub.add_parser("incidents", help="list incidents")
    inc.add_argument("--state", choices=["open", "acknowledged", "resolved"])
    inc.add_argument("--run", help="only incidents opened within this simulated run's time range (`qfleet runs "
                                   "list`); default: the latest run, or all incidents in a store without runs")
    inc.add_argument("--json", action="store_true")
    for sp in (sa, sx, sl, ack, inc):
        sp.add_argument("--db", help="database URL (default $QFLEET_DATABASE_URL or sqlite:///qfleet.db)")
    return p


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run a `qfleet alerts` command: 0 ok, 2 bad input (named)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        if args.cmd == "routes":
            code = _routes_test(args, out)
        elif args.cmd == "replay":
            code = _replay(args, out)
        else:
            code = _store_command(args, env, out)
        out.flush()   # here, where a closed pipe is handled below, not at interpreter exit
        return code
    except (ValueError, OverflowError) as e:
        # One line per problem (a ProblemsError lists several), each safe for the terminal: values in the
        # message (matchers, ids, labels) are the user's or telemetry's text.
        lines = str(e).splitlines() or [type(e).__name__]
        print("\n".join(for_terminal(x) for x in [f"qfleet alerts {args.cmd}: {lines[0]}", *lines[1:]]), file=err)
        return 2
    except BrokenPipeError:
        # `qfleet alerts replay | head`: the reader left; stop quietly, and keep Python's exit-time flush of
        # stdout from raising again.
        if out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def local_identity(name: str | None = None) -> str:
    """Who runs this command, as a write action records it: the operating-system account (the one identity the
    command line authenticates), with the name the user gave beside it.

    >>> import getpass
    >>> local_identity() == f"local:{getpass.getuser()}" and local_identity("al").endswith(" as al")
    True
    """
    import getpass

    who = f"local:{getpass.getuser()}"
    name = (name or "").strip()
    return f"{who} as {name}" if name and name != who else who


def incident_line(row: Mapping[str, Any]) -> str:
    """One ``incidents list`` line: id, state, severity, title; the telemetry-derived title made terminal-safe.

    >>> incident_line({"id": "i1", "state": "open", "severity": "page", "title": "qpu\\x1b[2J\\nfake"})
    'i1  open          page      qpu\\\\x1b[2J\\\\nfake'
    """
    return for_terminal(f"{row['id']}  {row['state']:<12}  {row['severity']:<8}  {row['title']}")


def _routes_test(args: argparse.Namespace, out: TextIO) -> int:
    from qfleet.alerts.config import load_config
    from qfleet.alerts.routing import routes_test

    labels = {}
    for item in args.labels:
        k, sep, v = item.partition("=")
        if not sep or not k:
            raise ValueError(f"{item!r} is not LABEL=VALUE; e.g. severity=page")
        labels[k] = v.strip('"')
    print(for_terminal(",".join(routes_test(load_config(Path(args.config)), labels))), file=out)
    return 0


def _replay(args: argparse.Namespace, out: TextIO) -> int:
    from qfleet.alerts.config import load_config
    from qfleet.alerts.timeline import REPLAY_TAIL_NS, parse_events, replay
    from qfleet.units import NS

    path = Path(args.events)
    try:
        events = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--events {str(path)!r}: {e}; give a JSON list of "
                         '{"t": "400s", "labels": {...}, "state": "firing"|"resolved"}') from e
    until = _duration("--until", args.until) if args.until else None
    parsed = parse_events(events)
    first = parsed[0][0] if parsed else 0
    end = until if until is not None else (parsed[-1][0] if parsed else 0) + REPLAY_TAIL_NS
    if end - min(first, end) > MAX_REPLAY_SPAN_NS:
        raise ValueError(f"the replay would run from {first / NS:.0f}s to {end / NS:.0f}s, longer than "
                         f"{MAX_REPLAY_SPAN_NS // (86_400 * NS)}d; give a nearer --until, or events closer together")
    notes = replay(load_config(Path(args.config)), events, until_ns=until)
    docs = [{"t_s": n.at / NS, "receiver": n.receiver, "group_key": n.group_key, "reason": n.reason,
             "firing": [dict(a.labels) for a in n.firing], "resolved": [dict(a.labels) for a in n.resolved]}
            for n in notes]
    if args.json:
        print(json.dumps(docs), file=out)
    else:
        for d in docs:
            print(for_terminal(f"{d['t_s']:>9.0f}s  {d['receiver']:<16} {d['reason']:<24} "
                               f"firing={_names(d['firing'])} resolved={_names(d['resolved'])}"), file=out)
    return 0


def _names(alerts: Any) -> str:
    return ",".join(a.get("alertname", "?") for a in alerts) or "-"


def _duration(flag: str, text: str) -> int:
    from qfleet.units import DurationError, parse_duration

    try:
        return parse_duration(text)
    except (DurationError, ValueError, OverflowError) as e:
        raise ValueError(f"{flag}: {e}") from e


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
            who = local_identity(args.by)
            incidents.acknowledge(args.incident, who, now)
            print(for_terminal(f"incident {args.incident} acknowledged by {who}"), file=out)
            return 0
        rows = incidents.list(state=args.state)
        from qfleet.collector import Runs

        runs = Runs(engine)
        run = runs.select(args.run)  # None: a store without simulated runs lists everything
        if run is not None:
            lo, hi = runs.events_range(run)
            rows = [r for r in rows if lo <= r["opened_unix_nano"] and (hi is None or r["opened_unix_nano"] < hi)]
        if args.json:
            print(json.dumps(rows, default=str), file=out)
        else:
            for r in rows:
                print(incident_line(r), file=out)
        return 0
    finally:
        engine.dispose()


def _silence(args: argparse.Namespace, engine: Engine, now: int, out: TextIO) -> int:
    from qfleet.alerts.silence_store import SilenceStore
    from qfleet.alerts.silences import matcher_text, silence_state

    store = SilenceStore(engine)
    if args.sub == "add":
        ends = now + _duration("--duration", args.duration)
        if ends > _INT64_MAX:
            raise ValueError(f"--duration {args.duration!r} would end the silence after 2262-04-11, the latest time "
                             "the store holds; give a shorter duration, e.g. 30d")
        s = store.add(args.matchers, starts_at=now, ends_at=ends, created_by=local_identity(args.author),
                      comment=args.comment)
        print(s.id, file=out)
    elif args.sub == "expire":
        store.expire(args.id, now)
        print(for_terminal(f"silence {args.id} expired"), file=out)
    else:
        for s in store.list():
            print(for_terminal(f"{s.id}  {silence_state(s, now):<8}  {s.created_by}: {s.comment}  "
                               + " ".join(matcher_text(m) for m in s.matchers)), file=out)
    return 0
