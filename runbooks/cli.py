"""`qfleet gameday run SCENARIO.yaml [--db URL] [--json]`: a game day end to end, scored; non-zero on failure."""

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
    """Run a game day: 0 when every expectation holds, 1 when one fails, 2 for bad input."""
    from runbooks.gameday import GameDayError, builtin_gameday_path, load_gameday, run_gameday

    out, err = stdout or sys.stdout, stderr or sys.stderr
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
    except (GameDayError, ValueError) as e:
        print(f"qfleet gameday: {e}", file=err)
        return 2
    print(json.dumps(card.to_json()) if args.json else card.format_text(), file=out)
    return 0 if card.passed else 1
