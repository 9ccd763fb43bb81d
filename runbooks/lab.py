"""The alert-quality lab: run a campaign's game days serially, in local worker processes or on a Dask cluster,
keep one small record per run, and aggregate them (:mod:`qfleet.runbooks.labstats`).

Runs are independent: each simulates into its own SQLite file, is scored by the target-aware scorer and leaves
a JSON record of a few hundred bytes; the store is deleted unless asked to keep it. Records are written
atomically, one file per run, in the work directory (``records/<key>.json``), so a killed campaign continues
from the runs it finished, and the report is built from the records read back in key order: the same campaign
gives the same report serially, with processes and on Dask.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from contextlib import contextmanager
from multiprocessing import get_context
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qfleet.files import write_atomic
from qfleet.runbooks.campaign import Campaign, RunSpec, campaign_hash, expand

if TYPE_CHECKING:
    from qfleet.runbooks.scoring import Scorecard

__all__ = ["LabError", "Progress", "check_db_server", "claim_work_dir", "execute", "load_records", "record_of",
           "run_campaign", "run_one", "write_json"]

Progress = Callable[[int, int, str], None]
"""``progress(done, total, key)``: told after each finished run (and once with key ``""`` at the start)."""
_STATE = "campaign.json"


class LabError(ValueError):
    """A work directory that cannot be used for this campaign, or a cluster that cannot be reached; the message
    names the fix."""


def record_of(spec: Mapping[str, Any], card: Scorecard) -> dict[str, Any]:
    """The run record (:mod:`~qfleet.runbooks.labstats` reads it) of a scored game day."""
    j = card.to_json()
    fault = None
    if spec["cell"] is not None:
        f = j["faults"][0]
        fault = {"target": f["target"], "detected": f["detected"], "localized": f["localized"],
                 "ttd_s": f["time_to_detect_s"], "ttl_s": f["time_to_localize_s"],
                 "notifications": f["notifications"], "incidents": f["incidents"], "detections": f["detections"]}
    return {"key": spec["key"], "cell": spec["cell"], "seed": spec["seed"], "run_id": j["run_id"],
            "duration_s": j["duration_s"], "fault": fault, "alerts": j["alerts"], "true_alerts": j["true_alerts"],
            "false_pages": j["false_pages"], "false_tickets": j["false_tickets"], "false_alerts": j["false_alerts"],
            "notifications": j["notifications"], "incidents": j["incidents"]}


def run_one(spec: Mapping[str, Any], work_dir: str | None = None, keep_store: bool = False,
            simulated_store: str | None = None, db_server: str | None = None) -> dict[str, Any]:
    """Run one game day of a campaign (``spec`` is :meth:`RunSpec.to_dict`); its record.

    A top-level function of plain values, so that a process pool or a Dask worker can run it. ``work_dir``
    holds the run's store (a temporary directory when None, as on a Dask worker of another machine).
    ``simulated_store``: a SQLite file holding exactly this run's simulation, copied instead of simulating again
    (a threshold sweep replays the alerting of one simulated run per setting). ``db_server``: a PostgreSQL URL;
    the run gets its own database on that server (created, and dropped after unless ``keep_store``), since runs
    overlap in simulated time and one database refuses overlapping runs.
    """
    from qfleet.runbooks.gameday import gameday_from_dict, run_gameday

    own_dir = work_dir is None
    base = Path(tempfile.mkdtemp(prefix="qfleet-lab-")) if work_dir is None else Path(work_dir)
    stores = base / "stores"
    stores.mkdir(parents=True, exist_ok=True)
    db = stores / f"{spec['key']}.db"
    doc = dict(spec["gameday"])
    try:
        if spec.get("rules_text") is not None:
            rules = stores / f"{spec['key']}.rules.yaml"
            rules.write_text(spec["rules_text"], encoding="utf-8")
            doc["rules"] = str(rules)
        for stale in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            stale.unlink(missing_ok=True)  # a half-finished run of a killed campaign
        if simulated_store is not None:
            shutil.copyfile(simulated_store, db)
        gd = gameday_from_dict(doc, source=f"campaign run {spec['key']}")
        with _database(spec, db_server, keep_store) as url:
            card = run_gameday(gd, db_url=url or f"sqlite:///{db}", simulated=simulated_store is not None,
                               writer_process=False)  # one process per run: the lab's parallelism is over runs
        return record_of(spec, card)
    finally:
        if not keep_store:
            for leftover in stores.glob(f"{spec['key']}.*"):
                leftover.unlink(missing_ok=True)
        if own_dir:
            shutil.rmtree(base, ignore_errors=True)


@contextmanager
def _database(spec: Mapping[str, Any], server: str | None, keep: bool) -> Iterator[str | None]:
    """A fresh PostgreSQL database for one run on ``server`` (its URL), or None for the run's own SQLite file."""
    if server is None:
        yield None
        return
    from sqlalchemy import make_url

    from qfleet.collector import scratch_database

    digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:12]
    prefix = "".join(ch if ch.isalnum() or ch == "_" else "_" for ch in (make_url(server).database or "qfleet"))
    with scratch_database(server, f"{prefix.lower()[:30]}_lab_{digest}", keep=keep) as url:
        yield url


def check_db_server(url: str) -> str:
    """``url`` when it names a PostgreSQL server the lab can create run databases on.

    Raises:
        LabError: not a PostgreSQL URL (SQLite needs no --db: every run has its own file).
    """
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        backend = ""
    if backend != "postgresql":
        raise LabError(f"--db {url.split('@')[-1]!r} is not a PostgreSQL URL; give "
                       "postgresql+psycopg://USER@HOST/DB (a role that may CREATE DATABASE), or leave --db out to "
                       "store each run in its own SQLite file")
    return url


def write_json(path: Path, value: Any) -> None:
    """Write atomically: a killed process leaves the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(value, sort_keys=True).encode(), mode=0o644)


def claim_work_dir(work_dir: Path, specs: Sequence[RunSpec], name: str) -> str:
    """Claim ``work_dir`` for this campaign (or find it already ours); the campaign's hash."""
    digest = campaign_hash(list(specs))
    state = work_dir / _STATE
    if state.exists():
        try:
            held = json.loads(state.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise LabError(f"{state} is unreadable ({e}); remove it or use another --db-dir") from e
        if held.get("hash") != digest:
            raise LabError(f"{work_dir} holds runs of another campaign ({held.get('name')!r}, hash "
                           f"{held.get('hash')}, this one {digest}); use another --db-dir or remove it")
    else:
        write_json(state, {"name": name, "hash": digest, "runs": len(specs)})
    return digest


def load_records(work_dir: Path, specs: Sequence[RunSpec]) -> dict[str, dict[str, Any]]:
    """The records already stored for ``specs`` in ``work_dir``, by key."""
    out = {}
    for s in specs:
        path = work_dir / "records" / f"{s.key}.json"
        if path.exists():
            out[s.key] = json.loads(path.read_text(encoding="utf-8"))
    return out


def execute(specs: Sequence[RunSpec], work_dir: Path, *, workers: int = 1, dask: str | None = None,
            keep_stores: bool = False, progress: Progress | None = None,
            simulated: Mapping[str, str] | None = None, db: str | None = None) -> dict[str, dict[str, Any]]:
    """Run every spec without a record in ``work_dir`` and store its record; all the records, by key.

    ``workers`` > 1: that many spawned local processes; ``dask``: the address of a Dask scheduler
    (``tcp://host:8786``) whose workers have qfleet installed. ``simulated`` maps a key to a simulated store to
    replay instead of simulating; ``db``: a PostgreSQL server URL to keep each run in a database of its own.
    """
    done = load_records(work_dir, specs)
    todo = [s for s in specs if s.key not in done]
    tell = progress or (lambda _d, _t, _k: None)
    total = len(specs)
    tell(len(done), total, "")
    sims = simulated or {}

    def keep(rec: dict[str, Any]) -> None:
        write_json(work_dir / "records" / f"{rec['key']}.json", rec)
        done[rec["key"]] = rec
        tell(len(done), total, str(rec["key"]))

    args = [(s.to_dict(), sims.get(s.key)) for s in todo]
    if dask is not None:
        for rec in _on_dask(dask, [spec for spec, _sim in args], db):
            keep(rec)
    elif workers <= 1 or len(todo) <= 1:
        for spec, sim in args:
            keep(run_one(spec, str(work_dir), keep_stores, sim, db))
    else:
        # Spawned, not forked: a worker must not inherit the parent's database connections or threads.
        with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
            futures = [pool.submit(run_one, spec, str(work_dir), keep_stores, sim, db) for spec, sim in args]
            try:
                for fut in as_completed(futures):
                    keep(fut.result())
            except BaseException:
                for fut in futures:
                    fut.cancel()
                raise
    return done


def _on_dask(address: str, specs: list[dict[str, Any]], db: str | None) -> Iterable[dict[str, Any]]:
    """Run on a Dask cluster; records come back as they finish. Workers keep their stores in their own temporary
    directories (they may be other machines), so ``keep_stores`` and simulated stores apply to local runs only."""
    try:
        from distributed import Client
        from distributed import as_completed as dask_completed
    except ImportError as e:  # pragma: no cover - a dependency of qfleet
        raise LabError("dask.distributed is not installed; pip install 'distributed'") from e
    try:
        client = Client(address, timeout=10)
    except OSError as e:
        raise LabError(f"cannot reach the Dask scheduler at {address} ({e}); start one with `dask scheduler` "
                       "and workers with `dask worker ADDRESS`, or drop --dask") from e
    try:
        futures = [client.submit(run_one, spec, None, False, None, db, pure=False) for spec in specs]
        for fut in dask_completed(futures):
            yield fut.result()
    finally:
        client.close()


def run_campaign(campaign: Campaign, work_dir: Path, *, workers: int = 1, dask: str | None = None,
                 keep_stores: bool = False, progress: Progress | None = None, db: str | None = None
                 ) -> dict[str, Any]:
    """Run (or finish) ``campaign`` in ``work_dir`` and aggregate it: the report, also written to
    ``work_dir/report.json``.

    Raises:
        LabError: ``work_dir`` belongs to another campaign, or the Dask scheduler cannot be reached.
    """
    from qfleet.runbooks.labstats import aggregate

    if db is not None:
        check_db_server(db)
    specs = expand(campaign)
    digest = claim_work_dir(work_dir, specs, campaign.name)
    records = execute(specs, work_dir, workers=workers, dask=dask, keep_stores=keep_stores, progress=progress,
                      db=db)
    report = aggregate(records.values(), campaign=_identity(campaign, digest, len(specs)))
    write_json(work_dir / "report.json", report)
    return report


def _identity(c: Campaign, digest: str, planned: int) -> dict[str, Any]:
    return {"name": c.name, "hash": digest, "planned_runs": planned, "fleet": c.fleet, "rules": c.rules,
            "slos": c.slos, "alerting": c.alerting, "seed": c.seed, "seeds_per_cell": c.seeds,
            "run_s": c.duration_ns / 1e9, "fault_start_s": c.fault_start_ns / 1e9,
            "fault_duration_s": c.fault_duration_ns / 1e9, "within_s": c.within_ns / 1e9,
            "calm_runs": c.calm_runs, "calm_run_s": c.calm_duration_ns / 1e9}
