"""`qfleet lab run|compare|tune|list`: the alert-quality lab (campaigns of game days, their report, rule tuning)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from qfleet.runbooks.campaign import Campaign
    from qfleet.runbooks.labtune import Budget, Setting

__all__ = ["main"]

_EPILOG = """exit status: 0 done, 2 bad input (a campaign file, a work directory of another campaign, an unreachable
Dask scheduler), 130 interrupted (run the same command again to continue from the stored runs)."""


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """``qfleet lab ...`` (argv with or without the group)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    args_in = list(sys.argv[1:] if argv is None else argv)
    if args_in and args_in[0] == "lab":
        args_in = args_in[1:]
    from qfleet.problems import OneLineParser

    p = OneLineParser(prog="qfleet lab", description=__doc__.splitlines()[0], epilog=_EPILOG)
    sub = p.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="run a campaign (or finish a killed one) and report its alert quality")
    _campaign_args(r)
    where = r.add_mutually_exclusive_group()
    where.add_argument("--workers", type=_positive, default=1, help="local worker processes (default 1)")
    where.add_argument("--dask", metavar="ADDRESS", help="a Dask scheduler, e.g. tcp://10.0.0.5:8786")
    r.add_argument("--db", metavar="URL", help="a PostgreSQL server (postgresql+psycopg://USER@HOST/DB): each run "
                   "in a database of its own there, created and dropped (the role needs CREATEDB); default: each "
                   "run in its own SQLite file under --db-dir")
    r.add_argument("--keep-stores", action="store_true", help="keep each run's store (SQLite file or database)")
    r.add_argument("--json", action="store_true", help="print the report as JSON")
    r.add_argument("-o", "--output", type=Path, help="write the HTML report here")
    c = sub.add_parser("compare", help="what changed between two reports (before, after)")
    c.add_argument("before", type=Path)
    c.add_argument("after", type=Path)
    c.add_argument("--json", action="store_true")
    t = sub.add_parser("tune", help="sweep one rule's parameter or `for` over a campaign; recommend a setting")
    _campaign_args(t)
    t.add_argument("--rule", required=True, help="the alert rule's name, e.g. QfleetNodeCanaryFailing")
    what = t.add_mutually_exclusive_group(required=True)
    what.add_argument("--param", help="the rule parameter to sweep, e.g. ratio")
    what.add_argument("--for", dest="for_", action="store_true", help="sweep the rule's `for` duration")
    t.add_argument("--values", required=True, help="comma-separated values, e.g. 0.3,0.5,0.7 or 1m,2m,5m")
    t.add_argument("--min-recall", type=float, default=0.95, help="recall the setting must reach (default 0.95)")
    t.add_argument("--max-pages-per-week", type=float, default=1.0,
                   help="false pages of the rule per simulated calm week it may cost (default 1)")
    t.add_argument("--floor", action="append", default=[], metavar="KIND=MAGNITUDE",
                   help="count recall only at this magnitude or stronger (repeatable; default: every kind the "
                        "rule detects, every magnitude)")
    t.add_argument("--workers", type=_positive, default=1)
    t.add_argument("--json", action="store_true")
    sub.add_parser("list", help="the built-in campaigns")
    args = p.parse_args(args_in)
    if args.cmd == "list":
        from qfleet.runbooks.campaign import builtin_campaign_path

        for f in sorted(builtin_campaign_path("x").parent.glob("*.yaml")):
            print(f.stem, file=out)
        return 0
    try:
        if args.cmd == "compare":
            return _compare(args, out)
        if args.cmd == "tune":
            return _tune(args, out, err)
        return _run(args, out, err)
    except ValueError as e:  # CampaignError, LabError, a bad report: each names the fix
        from qfleet.text import for_terminal

        print(for_terminal(f"qfleet lab: {e}"), file=err)
        return 2


def _positive(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number >= 1")
    return n


def _campaign_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("campaign", help="a Campaign YAML file, or a built-in name (qfleet lab list)")
    p.add_argument("--db-dir", type=Path, help="the work directory: each run's record (and store), the report; "
                   "default ./lab-<campaign name>; an interrupted campaign continues from it")


def _load(args: argparse.Namespace) -> tuple[Campaign, Path]:
    from qfleet.runbooks.campaign import builtin_campaign_path, load_campaign

    path = Path(args.campaign)
    if not path.exists() and not path.suffix:
        path = builtin_campaign_path(args.campaign)
        if not path.exists():
            raise ValueError(f"{args.campaign!r} is neither a campaign file nor a built-in campaign; give a path, "
                             "or a name from `qfleet lab list`")
    campaign = load_campaign(path)
    return campaign, args.db_dir or Path(f"lab-{campaign.name}")


class _Bar:
    """Progress over runs on stderr: a bar on a terminal (:class:`qfleet.progress.ProgressBar`), a line per
    tenth otherwise (a log file gets eleven lines, not hundreds of redraws)."""

    def __init__(self, err: TextIO) -> None:
        from qfleet.progress import ProgressBar

        self.err = err
        self.bar = ProgressBar(err)
        self.shown = -1
        self.started = False

    def __call__(self, done: int, total: int, key: str) -> None:
        if self.bar.active:
            if not self.started:  # the first call, at the start (done > 0 when a campaign resumes)
                self.started = True
                self.bar.start("qfleet lab", total=max(total, 1))
            self.bar.update(done, info=f"{done}/{total} {key[:40]}")
            if done == total:
                self.bar.close()
            return
        tenth = done * 10 // max(total, 1)
        if tenth != self.shown:
            self.shown = tenth
            print(f"qfleet lab: {done}/{total} runs", file=self.err)


def _run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from qfleet.runbooks.lab import run_campaign
    from qfleet.runbooks.lab_report import format_text, write_html

    campaign, work = _load(args)
    try:
        report = run_campaign(campaign, work, workers=args.workers, dask=args.dask,
                              keep_stores=args.keep_stores, progress=_Bar(err), db=args.db)
    except KeyboardInterrupt:
        print(f"\nqfleet lab: interrupted; the finished runs are kept in {work}: run the same command to continue",
              file=err)
        return 130
    if args.output:
        write_html(report, args.output)
        print(f"qfleet lab: wrote {args.output}", file=err)
    print(json.dumps(report, indent=1) if args.json else format_text(report), file=out)
    print(f"qfleet lab: report in {work / 'report.json'}", file=err)
    return 0


def _compare(args: argparse.Namespace, out: TextIO) -> int:
    from qfleet.runbooks.lab_report import compare, format_compare

    reports = []
    for path in (args.before, args.after):
        try:
            reports.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError) as e:
            raise ValueError(f"cannot read the report {str(path)!r} ({e}); give a report.json of `qfleet lab run`"
                             ) from e
    diff = compare(reports[0], reports[1])
    print(json.dumps(diff, indent=1) if args.json else format_compare(diff), file=out)
    return 0


def _tune(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from qfleet.runbooks.labtune import Budget, recommend, sweep

    floors = []
    for f in args.floor:
        kind, _, mag = f.partition("=")
        try:
            floors.append((kind.strip().upper(), float(mag)))
        except ValueError:
            raise ValueError(f"--floor {f!r} is not KIND=MAGNITUDE; e.g. --floor F4=0.05") from None
    values = [v.strip() for v in args.values.split(",") if v.strip()]
    if not values:
        raise ValueError(f"--values {args.values!r} names no value; e.g. --values 0.3,0.5,0.7")
    campaign, work = _load(args)
    budget = Budget(args.min_recall, args.max_pages_per_week, tuple(floors))
    settings = sweep(campaign, work, rule=args.rule, param=args.param, values=values,
                     budget=budget, workers=args.workers, progress=_Bar(err))
    best = recommend(settings)
    if args.json:
        print(json.dumps({"rule": args.rule, "param": args.param or "for", "settings": [
            {f: getattr(s, f) for f in s.__slots__} for s in settings],
            "recommended": best.value if best else None}, indent=1), file=out)
        return 0
    _print_frontier(args, settings, best, budget, out)
    return 0


def _print_frontier(args: argparse.Namespace, settings: Sequence[Setting], best: Setting | None, budget: Budget,
                    out: TextIO) -> None:
    from qfleet.text import for_terminal

    name = f"{args.rule} {args.param or 'for'}"
    print(for_terminal(f"{name}: recall against false pages per calm week"), file=out)
    print(f"  {'value':>10} {'recall':>8} {'95 % interval':>15} {'detected':>9} {'pages/week':>11} {'TTD p50':>8}",
          file=out)
    for s in settings:
        rec = "-" if s.recall is None else f"{s.recall:.0%}"
        ci = "-" if s.recall_ci is None else f"{s.recall_ci[0]:.0%}-{s.recall_ci[1]:.0%}"
        ppw = "-" if s.pages_per_week is None else f"{s.pages_per_week:.2g}"
        ttd = "-" if s.ttd_p50_s is None else f"{s.ttd_p50_s:.0f} s"
        mark = "*" if s is best else ("ok" if s.meets else "")
        print(for_terminal(f"  {s.value:>10} {rec:>8} {ci:>15} {s.detected:>4}/{s.runs:<4} {ppw:>11} "
                           f"{ttd:>8} {mark}"), file=out)
    print(for_terminal(f"  budget: recall >= {budget.min_recall:.0%}, at most "
                       f"{budget.max_pages_per_week:g} false pages a week"), file=out)
    print(for_terminal(f"recommended: {name} = {best.value}" if best is not None
                       else "recommended: none of the values meets the budget"), file=out)
