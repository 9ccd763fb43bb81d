"""`qfleet demo`: the bad-day game day on a small fleet, end to end, then the dashboards.

It creates (or adds a run to) ``./qfleet.db``, simulates the mesh fleet through all eight failure modes in
fast-forward, evaluates the SLO pack and the alert rules on simulated time, delivers the alerts to local webhook
receivers it starts on 127.0.0.1, prints the game day's scorecard, exports a postmortem per incident to
``./postmortems/``, and serves the dashboards on 127.0.0.1 (``--no-serve`` stops before that, for CI).

The demo is a simulated run in the store. A second demo into the same store would cover the same simulated hours,
so it is refused before anything is written, with the existing run named and the fix (another ``--db``, or delete
the file): a rerun would replay the same day over the first one's alerts and incidents, which no view could tell
apart.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from concurrent.futures import ProcessPoolExecutor

__all__ = ["main"]


#: The game day's phase that replays the alerting (the helper queues its export imports then).
_REPLAY_PHASE = "evaluating SLOs and alerts"


def _warm_up() -> None:
    """Import what a postmortem export needs (in the helper process, while the main one replays the alerting)."""
    import matplotlib.pyplot  # noqa: F401

    import qfleet.alerts.postmortem  # noqa: F401


def _export(url: str, incident_ids: Sequence[str], target: str, external_url: str) -> None:
    """Write the Markdown and HTML postmortems of ``incident_ids`` into ``target`` (on its own connection)."""
    from qfleet.alerts.postmortem import build_postmortem, write_export
    from qfleet.collector import open_engine

    engine = open_engine(url)
    try:
        for incident in incident_ids:
            pm = build_postmortem(engine, incident, external_url=external_url)
            write_export(pm, Path(target, f"{incident}.md"), "md")
            write_export(pm, Path(target, f"{incident}.html"), "html")
    finally:
        engine.dispose()


class _Exporter:
    """One helper process for the demo's second core: it evaluates SLOs and alert rules beside the replay (the
    game day's simulation keeps both cores busy, its replay only one), then exports half of the postmortems.

    It is spawned as the replay begins, and imports matplotlib and the postmortem code after the evaluations
    queued to it. A postmortem is mostly two charts, so two processes export the demo's in about half the time.
    """

    def __init__(self) -> None:
        self._pool: ProcessPoolExecutor | None = None
        self._warming = False

    def pool(self) -> ProcessPoolExecutor:
        """The helper, started on the first call."""
        if self._pool is None:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            self._pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def warm(self) -> None:
        """Queue the export's imports in the helper (after the work queued so far), once."""
        if not self._warming:
            self._warming = True
            self.pool().submit(_warm_up)

    def export(self, url: str, incident_ids: Sequence[str], target: Path, external_url: str) -> None:
        """Export every incident of ``incident_ids``; raises what an export raised."""
        helped = self.pool().submit(_export, url, incident_ids[1::2], str(target), external_url)
        _export(url, incident_ids[::2], str(target), external_url)
        helped.result()

    def close(self) -> None:
        """Stop the helper."""
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)
            self._pool = None


class _Bar:
    """The demo's phases, one bar each, on a terminal only (:class:`qfleet.progress.ProgressBar`)."""

    def __init__(self, stream: TextIO) -> None:
        from qfleet.progress import ProgressBar

        self.bar = ProgressBar(stream)
        self.phase = ""

    def __call__(self, phase: str, frac: float) -> None:
        if phase != self.phase:
            self.phase = phase
            self.bar.start(phase, total=1.0)
        self.bar.update(max(0.0, min(1.0, frac)))

    def done(self) -> None:
        self.bar.close()


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    """Run the demo; returns the exit status (1 when the game day's expectations fail)."""
    from qfleet.collector import Settings, SettingsError, StoreError, open_engine, upgrade
    from qfleet.runbooks.gameday import builtin_gameday_path, load_gameday, run_gameday

    out = stdout or sys.stdout
    p = argparse.ArgumentParser(prog="qfleet demo", description=__doc__.splitlines()[0])
    p.add_argument("--db", help="database URL (default $QFLEET_DATABASE_URL or sqlite:///qfleet.db)")
    p.add_argument("--scenario", default="bad-day", help="game day to run (a built-in name or a file)")
    p.add_argument("--postmortems", default="postmortems", help="directory for the exported postmortems")
    p.add_argument("--port", type=int, default=8501, help="dashboards port")
    p.add_argument("--no-serve", action="store_true", help="stop before serving the dashboards (for CI)")
    args = p.parse_args(argv)
    if not 1 <= args.port <= 65535:  # checked before the game day, not minutes later when serving
        print(f"qfleet demo: --port {args.port} is not a TCP port; use 1-65535, e.g. --port 8501", file=sys.stderr)
        return 2
    try:
        settings = Settings.from_env(os.environ, database_url=args.db)
        engine = open_engine(settings.database_url)
    except (SettingsError, StoreError) as e:
        print(f"qfleet demo: {e}", file=sys.stderr)
        return 2
    upgrade(engine)
    engine.dispose()
    dashboards_url = f"http://127.0.0.1:{args.port}"  # what the demo serves: notifications and postmortems link it
    scenario = Path(args.scenario) if Path(args.scenario).exists() else builtin_gameday_path(args.scenario)
    gd = load_gameday(scenario)
    t0 = time.monotonic()
    print(f"qfleet demo: game day {gd.name!r} on the {gd.fleet} fleet, {gd.duration_ns / 3.6e12:g} simulated hours, "
          f"{len(gd.faults['faults'])} injected faults -> {settings.database_url}", file=out)
    from qfleet.collector import RunOverlapError, Runs

    bar = _Bar(out)
    exporter = _Exporter()

    def progress(phase: str, frac: float) -> None:
        if phase == _REPLAY_PHASE:
            exporter.warm()
        bar(phase, frac)

    try:
        card = run_gameday(gd, db_url=settings.database_url, progress=progress, external_url=dashboards_url,
                           helper=exporter.pool)
    except BaseException as e:
        exporter.close()
        if not isinstance(e, RunOverlapError):
            raise
        bar.done()
        old = e.existing
        print(f"qfleet demo: {settings.database_url} already holds the demo's simulated hours ({old.describe()}); "
              f"runs never overlap, so nothing was written: run the demo on another store (--db "
              f"sqlite:///qfleet-2.db), or delete the file to start afresh", file=sys.stderr)
        return 2
    bar.done()
    print(card.format_text(), file=out)
    engine = open_engine(settings.database_url)
    target = Path(args.postmortems)
    try:
        from qfleet.alerts.incidents import Incidents

        target.mkdir(parents=True, exist_ok=True)
        runs = Runs(engine)
        lo, hi = runs.events_range(runs.get(card.run_id))
        # Pages and security incidents of this run (not another run's in the same store).
        ids = [inc["id"] for inc in Incidents(engine, clock=lambda: 0).list()
               if inc["severity"] in ("page", "security") and lo <= inc["opened_unix_nano"]
               and (hi is None or inc["opened_unix_nano"] < hi)]
        exporter.export(settings.database_url, ids, target, dashboards_url)
    finally:
        exporter.close()
        engine.dispose()
    exported = len(ids)
    print(f"exported {exported} postmortems (pages and security incidents) to {target}/ in "
          f"{time.monotonic() - t0:.0f} s", file=out)
    if args.no_serve:
        return 0 if card.passed else 1
    from qfleet.collector.settings import ENV_DATABASE_URL
    from qfleet.dashboards.cli import main as dashboards

    print(f"serving the dashboards on http://127.0.0.1:{args.port}  (Ctrl-C to stop)", file=out, flush=True)
    # The URL goes through the environment (never a command line); the dashboards' CLI forwards SIGTERM and
    # Ctrl-C to the Streamlit server and waits for it, so stopping the demo stops the server.
    env = {**os.environ, ENV_DATABASE_URL: settings.database_url}
    return int(dashboards(["--port", str(args.port), "--host", "127.0.0.1"], environ=env) or 0)
