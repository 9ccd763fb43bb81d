"""`qfleet slo validate | eval | rules`: check specs, evaluate them (offline or over the store), export rules."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TextIO

from qfleet.files import write_atomic
from qfleet.units import TimestampError, parse_rfc3339

__all__ = ["main", "parse_at_ns"]


def parse_at_ns(text: str, now_ns: int) -> int:
    """``now`` or an RFC 3339 time with a zone (:func:`qfleet.units.parse_rfc3339`), as Unix ns.

    >>> parse_at_ns("2026-01-02T00:00:00Z", 0), parse_at_ns("2026-01-02T01:00:00.5+01:00", 0)
    (1767312000000000000, 1767312000500000000)
    >>> parse_at_ns("now", 42)
    42

    Raises:
        ValueError: anything else.
    """
    if text == "now":
        return now_ns
    try:
        return parse_rfc3339(text)
    except TimestampError as err:
        raise ValueError(f"--at {text!r} is neither now nor a timestamp: {err}") from err


def _spec(name: str) -> Path:
    from qfleet.slo.spec import builtin_specs_path

    if name in ("default", "fleet"):
        return builtin_specs_path()
    p = Path(name)
    if not p.exists():
        raise ValueError(f"spec file {name!r} does not exist; give a path, or 'default' for the built-in pack")
    return p


def _parser() -> argparse.ArgumentParser:
    from qfleet.problems import OneLineParser

    p = OneLineParser(prog="qfleet slo", description="SLOs, error budgets and burn-rate alerts")
    sub = p.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("validate", help="report every problem of a spec file at once")
    v.add_argument("spec", help="OpenSLO YAML file, or 'default' for the built-in pack")
    v.add_argument("--json", action="store_true")
    e = sub.add_parser("eval", help="evaluate the SLOs of a spec at an instant")
    e.add_argument("spec", help="OpenSLO YAML file, or 'default'")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--samples", help="CSV with the header ts,good,total (each row: the step ending at ts)")
    src.add_argument("--db", help="the store's URL (per-minute rollups); see also $QFLEET_DATABASE_URL")
    e.add_argument("--at", help="the instant: now, or RFC 3339 (e.g. 2026-01-02T00:00:00Z); default with --db: the "
                                "selected run's end")
    e.add_argument("--run", help="with --db: the simulated run to evaluate (default: the latest; see `qfleet runs "
                                 "list`); counts start at its start")
    e.add_argument("--record", action="store_true", help="with --db: store the results as evaluation history")
    e.add_argument("--json", action="store_true")
    r = sub.add_parser("rules", help="write Prometheus recording and alerting rules for the spec")
    r.add_argument("spec", help="OpenSLO YAML file, or 'default'")
    r.add_argument("-o", "--output", help="file to write (default: stdout)")
    return p


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run a `qfleet slo` command: 0 ok, 1 a spec with problems, 2 bad input."""
    import time

    out, err = stdout or sys.stdout, stderr or sys.stderr
    args = _parser().parse_args(argv)
    env = os.environ if environ is None else environ
    try:
        if args.cmd == "validate":
            return _validate(args, out)
        if args.cmd == "rules":
            return _rules(args, out, err)
        return _eval(args, env, out, time.time_ns())
    except ValueError as e:
        print(f"qfleet slo {args.cmd}: {e}", file=err)
        return 2


def _validate(args: argparse.Namespace, out: TextIO) -> int:
    from qfleet.slo.spec import validate_file

    res = validate_file(_spec(args.spec))
    if args.json:
        print(json.dumps(res.to_json()), file=out)
    else:
        for p in res.problems:
            print(f"error: {p.path}: {p.message} (fix: {p.fix})", file=out)
        for w in res.warnings:
            print(f"warning: {w.path}: {w.message} (fix: {w.fix})", file=out)
        print(f"{len(res.slos)} SLOs, {len(res.problems)} problems, {len(res.warnings)} warnings", file=out)
    return 0 if res.ok else 1


def _rules(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    from qfleet.slo.rules import rules_yaml, skipped
    from qfleet.slo.spec import load_slos

    slos = load_slos(_spec(args.spec))
    for name, why in skipped(slos):
        # Span-based SLIs have no Prometheus series; say so instead of dropping them silently.
        print(f"qfleet slo rules: skipped {name}: {why}", file=err)
    text = rules_yaml(slos, strict=False)
    if args.output:
        _write_whole(Path(args.output), text)
    else:
        out.write(text)
    return 0


def _write_whole(path: Path, text: str) -> None:
    """Write ``path`` all at once (:func:`~qfleet.files.write_atomic`), so no half-written file is left."""
    try:
        write_atomic(path, text.encode(), mode=0o644, keep_mode=True)
    except OSError as err:
        raise ValueError(f"-o {str(path)!r} cannot be written ({err.strerror or err}); "
                         "check that its directory exists and is writable") from None


def _read_samples(path: str) -> Any:
    from qfleet.slo.budget import read_samples_csv

    try:
        return read_samples_csv(Path(path))
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else type(err).__name__
        raise ValueError(f"--samples {path!r} cannot be read ({reason}); give a CSV file with the header "
                         "ts,good,total") from None


def _eval(args: argparse.Namespace, env: Mapping[str, str], out: TextIO, now_ns: int) -> int:
    from qfleet.slo.budget import evaluate_slo, report_json
    from qfleet.slo.spec import load_slos

    slos = load_slos(_spec(args.spec))
    if args.samples:
        if args.record:
            raise ValueError("--record needs --db (offline evaluations are not stored)")
        if args.run:
            raise ValueError("--run needs --db (a CSV of samples has no runs)")
        if args.at is None:
            raise ValueError("--samples needs --at, the instant to evaluate at (now, or RFC 3339)")
        at = parse_at_ns(args.at, now_ns)
        counts = _read_samples(args.samples)
        reports = [evaluate_slo(s, counts, at) for s in slos]
    else:
        from qfleet.collector import Runs, Settings
        from qfleet.collector.migrate import open_existing, reporting_unreachable
        from qfleet.slo.evaluate import evaluate_store, record
        from qfleet.slo.sli import SliSource

        settings = Settings.from_env(env, database_url=args.db)
        engine = open_existing(settings.database_url)  # a reader: never creates or migrates the store
        try:
            with reporting_unreachable(engine):
                run = Runs(engine).select(args.run)  # None: a store without runs (OTLP only), as before runs
                if run is None and args.at is None:
                    raise ValueError("--at is needed: this store holds no simulated run to take the instant from")
                at = parse_at_ns(args.at, now_ns) if args.at is not None else run.end_ns if run else 0
                # The run's own hours only: data of an earlier run must not count into this one's windows.
                source = SliSource(engine) if run is None else SliSource(engine, since_ns=run.start_ns)
                reports = evaluate_store(slos, source, at)
                if args.record:
                    record(engine, reports)
        finally:
            engine.dispose()
    docs = [report_json(r) for r in reports]
    if args.json:
        from qfleet.units import format_rfc3339

        print(json.dumps({"at": args.at or format_rfc3339(at), "slos": docs}), file=out)
    else:
        for d in docs:
            _print_report(d, out)
    return 0


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    return f"{v:.4g}"


def _print_report(d: dict[str, Any], out: TextIO) -> None:
    seg = ",".join(f"{k}={v}" for k, v in d.get("segment", {}).items())
    b = d["budget"]
    sev = [k for k, on in d["alerts"]["severities"].items() if on]
    print(f"{d['slo']}{f' [{seg}]' if seg else ''}: SLI {_fmt(b['sli'])}, budget remaining "
          f"{_fmt(b['remaining_fraction'])}{' (EXHAUSTED)' if b['exhausted'] else ''}, "
          f"alerts: {', '.join(sev) or 'none'}", file=out)
    burns = "  ".join(f"{w} {_fmt(x['burn_rate'])}" for w, x in d["windows"].items())
    print(f"  burn rates: {burns}", file=out)
