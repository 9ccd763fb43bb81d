"""`qfleet gameday run|list`, `qfleet postmortem export`, `qfleet incidents list`: game days and their paperwork."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

__all__ = ["main"]


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """``qfleet gameday …`` (argv without the group) or, with the group first, postmortem and incidents.

    Game days exit 0 when every expectation holds, 1 when one fails, 2 for bad input.
    """
    from qfleet.runbooks.gameday import builtin_gameday_path, load_gameday, run_gameday

    out, err = stdout or sys.stdout, stderr or sys.stderr
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] in ("postmortem", "incidents"):
        return _paperwork(args_in, out, err)
    if args_in and args_in[0] == "gameday":
        args_in = args_in[1:]
    argv = args_in
    p = argparse.ArgumentParser(prog="qfleet gameday", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="simulate, evaluate SLOs and alerts, deliver, and score a scenario")
    r.add_argument("scenario", help="a GameDay YAML file, or a built-in name (f1-entanglement-loss ... bad-day)")
    r.add_argument("--db", help="database URL to keep the run in (default: a temporary SQLite file)")
    r.add_argument("--json", action="store_true")
    sub.add_parser("list", help="the built-in scenarios")
    args = p.parse_args(argv)
    if args.cmd == "list":
        for f in sorted(builtin_gameday_path("x").parent.glob("*.yaml")):
            print(f.stem, file=out)
        return 0
    path = Path(args.scenario)
    if not path.exists():
        path = builtin_gameday_path(args.scenario)
    try:
        gd = load_gameday(path)
        with tempfile.TemporaryDirectory(prefix="qfleet-gameday-") as d:
            card = run_gameday(gd, db_url=args.db or f"sqlite:///{Path(d) / 'gameday.db'}")
    except ValueError as e:  # GameDayError, or the fleet's or faults' own errors: each names the fix
        print(f"qfleet gameday: {e}", file=err)
        return 2
    print(json.dumps(card.to_json()) if args.json else card.format_text(), file=out)
    return 0 if card.passed else 1


def _paperwork(argv: list[str], out: TextIO, err: TextIO) -> int:
    import os

    from qfleet.alerts.cli import incident_line
    from qfleet.alerts.incidents import IncidentError, Incidents
    from qfleet.alerts.payloads import check_external_url, external_url_from_env
    from qfleet.alerts.postmortem import build_postmortem, render, write_export
    from qfleet.collector import Settings, SettingsError, StoreError, open_existing
    from qfleet.text import for_terminal

    p = argparse.ArgumentParser(prog="qfleet")
    groups = p.add_subparsers(dest="group", required=True)
    pm = groups.add_parser("postmortem", help="export an incident's postmortem")
    pms = pm.add_subparsers(dest="cmd", required=True)
    ex = pms.add_parser("export", help="write the postmortem of INCIDENT_ID")
    ex.add_argument("incident")
    ex.add_argument("--format", choices=["md", "json", "html"], default="md")
    ex.add_argument("-o", "--output", help="file to write (charts go beside it); default stdout")
    ex.add_argument("--external-url", help="the dashboards' URL, to link the incident's on-call view (default "
                    "$QFLEET_EXTERNAL_URL, else http://127.0.0.1:8501)")
    inc = groups.add_parser("incidents", help="incidents in the store")
    incs = inc.add_subparsers(dest="cmd", required=True)
    ls = incs.add_parser("list", help="list incidents (newest first)")
    ls.add_argument("--state", choices=["open", "acknowledged", "resolved"])
    ls.add_argument("--json", action="store_true")
    for sp in (ex, ls):
        sp.add_argument("--db", help="database URL (default $QFLEET_DATABASE_URL or sqlite:///qfleet.db)")
    args = p.parse_args(argv)
    try:
        external_url = (check_external_url(args.external_url) if getattr(args, "external_url", None)
                        else external_url_from_env(os.environ))
    except ValueError as e:
        print(for_terminal(f"qfleet {args.group}: {e}"), file=err)
        return 2
    try:
        # An existing, migrated store only: a mistyped path must not leave an empty database behind.
        engine = open_existing(Settings.from_env(os.environ, database_url=args.db).database_url)
    except (SettingsError, StoreError) as e:
        print(for_terminal(f"qfleet {args.group}: {e}"), file=err)
        return 2
    try:
        if args.group == "incidents":
            rows = Incidents(engine, clock=lambda: 0).list(state=args.state)
            if args.json:
                print(json.dumps(rows, default=str), file=out)
            for r in rows if not args.json else ():
                print(incident_line(r), file=out)  # titles come from telemetry: terminal-safe
            return 0
        try:
            doc = build_postmortem(engine, args.incident, external_url=external_url)
        except IncidentError as e:
            print(for_terminal(f"qfleet postmortem: {e}; find ids with `qfleet incidents list`"), file=err)
            return 2
        if args.output:
            written = write_export(doc, Path(args.output), args.format)
            charts = len(written) - 1
            print(f"wrote {written[0]}" + (f" and {charts} charts" if charts else ""), file=out)
        else:
            out.write(render(doc, args.format) + "\n")
        return 0
    finally:
        engine.dispose()
