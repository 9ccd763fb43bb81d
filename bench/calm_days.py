"""Calm-day campaign: every built-in fleet, several seeds, no faults; every alert is a false page or ticket.

Runs the calm game day (``runbooks/gamedays/calm-<fleet>.yaml`` when it exists, else 6 quiet hours) of each fleet
with each seed into a fresh SQLite file, and prints one line per run (pages, tickets, the alerts that fired, wall
seconds) plus the machine's load average. Exit status 1 when any run paged or ticketed.

    .venv/bin/python bench/calm_days.py --fleets line mesh star --seeds 777 778 779 --duration 6h
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time


def main() -> int:
    from qfleet.runbooks.gameday import builtin_gameday_path, gameday_from_dict, run_gameday

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fleets", nargs="+", default=["line", "mesh", "star"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[777, 778, 779])
    ap.add_argument("--duration", default="6h")
    ap.add_argument("--json", action="store_true", help="one JSON object per run instead of text")
    args = ap.parse_args()
    noisy = 0
    for fleet in args.fleets:
        for seed in args.seeds:
            doc = {"version": 1, "kind": "GameDay", "name": f"calm-{fleet}-{seed}", "fleet": fleet,
                   "duration": args.duration, "seed": seed, "faults": [],
                   "expect": {"faults": [], "false_positives": 0}}
            source = builtin_gameday_path(f"calm-{fleet}")
            t0 = time.monotonic()
            with tempfile.TemporaryDirectory() as d:
                card = run_gameday(gameday_from_dict(doc, source=str(source)), db_url=f"sqlite:///{d}/calm.db")
            wall = time.monotonic() - t0
            data = card.to_json()
            pages, tickets = data["false_pages"], data["false_tickets"]
            noisy += bool(pages or tickets)
            if args.json:
                print(json.dumps({"fleet": fleet, "seed": seed, "pages": pages, "tickets": tickets,
                                  "false_positives": data["false_positives"], "wall_s": round(wall, 1)}))
            else:
                print(f"{fleet:6} seed {seed}: {pages} pages, {tickets} tickets in {args.duration} "
                      f"({wall:.0f} s wall){': ' + ', '.join(data['false_positives']) if data['false_positives'] else ''}")
            sys.stdout.flush()
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {noisy} noisy run(s)")
    return 1 if noisy else 0


if __name__ == "__main__":
    raise SystemExit(main())
