"""`qfleet demo`: telemetry of a small fleet through every ingestion path into ./qfleet.db.

Until the simulator (issue 3) and the game days (issue 7) land, the demo drives the
collector with seeded synthetic fleet traffic on simulated time: node agents export over
OTLP/HTTP with the standard OpenTelemetry exporter, the orchestrator through the
in-process exporter, and heralded link attempts through the columnar bulk API. It then
prints what the store holds and the collector's own health, and keeps the collector
serving so other OpenTelemetry programs can be pointed at it.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from typing import TextIO

from collector import (
    Settings,
    SettingsError,
    SpanColumns,
    Store,
    StoreError,
    load_token,
    open_engine,
    upgrade,
)
from collector.receiver import Receiver, ReceiverConfig

__all__ = ["main"]

NODES = (("node-a", "trapped_ion"), ("node-b", "nv_centre"), ("node-c", "superconducting"))
LINKS = (("node-a", "node-b"), ("node-b", "node-c"))
MINUTE_NS = 60 * 10**9


def main(argv: Sequence[str] | None = None, *, stdout: TextIO | None = None) -> int:
    """Run the demo; returns the exit status."""
    out = stdout or sys.stdout
    p = argparse.ArgumentParser(prog="qfleet demo", description=__doc__.splitlines()[0])
    p.add_argument("--db", help="database URL (default $QFLEET_DATABASE_URL or sqlite:///qfleet.db)")
    p.add_argument("--port", type=int, default=4318, help="collector port to keep serving on")
    p.add_argument("--minutes", type=int, default=15, help="simulated minutes of traffic")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--no-serve", action="store_true", help="exit after the summary (for CI)")
    args = p.parse_args(argv)
    try:
        settings = Settings.from_env(os.environ, database_url=args.db)
        engine = open_engine(settings.database_url)
        token = load_token(settings.token_file)
    except (SettingsError, StoreError) as e:
        print(f"qfleet demo: {e}", file=sys.stderr)
        return 2
    upgrade(engine)
    store = Store(engine)
    port = 0 if args.no_serve else args.port
    receiver = Receiver(store, ReceiverConfig(host=settings.host, port=port, token=token))
    try:
        receiver.start()
    except OSError as e:
        print(f"qfleet demo: cannot listen on {settings.host}:{port} ({e}); pass --port 0 or another port",
              file=sys.stderr)
        return 2
    host, bound = receiver.address
    url = f"http://{host}:{bound}"
    started = time.monotonic()
    print(f"qfleet demo: store {engine.url.render_as_string(hide_password=True)}, collector {url}", file=out)

    rng = random.Random(args.seed)
    end_ns = time.time_ns()  # the edge reads the wall clock once; traffic uses simulated time
    start_ns = end_ns - args.minutes * MINUTE_NS
    n_otlp = _node_agents(url, token, rng, start_ns, end_ns)
    n_inproc = _orchestrator(store, rng, start_ns, end_ns)
    n_bulk = _link_attempts(store, rng, start_ns, end_ns)
    health = _scrape(url)
    # Every export above was acknowledged after its commit: the rollups can be computed now.
    store.refresh_rollups()
    _summary(store, out, start_ns, n_otlp, n_inproc, n_bulk, health, time.monotonic() - started)
    if args.no_serve:
        receiver.stop()
        return 0
    print(f"\nThe collector keeps serving on {url} (OTLP/HTTP /v1/traces and /v1/metrics with "
          f"'Authorization: Bearer <token in {settings.token_file}>'; /metrics, /healthz). Ctrl-C stops it.",
          file=out, flush=True)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    receiver.stop()
    return 0


def _node_agents(url: str, token: str, rng: random.Random, start_ns: int, end_ns: int) -> int:
    """Each node agent runs jobs and exports its spans with the standard OTLP/HTTP exporter."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Status, StatusCode, set_span_in_context

    from collector.exporters import BlockingSpanProcessor

    count = 0
    for node, hw in NODES:
        provider = TracerProvider(resource=Resource.create({
            "service.name": "qfleet-node-agent", "qfleet.node.id": node, "qfleet.hardware.type": hw}))
        provider.add_span_processor(BlockingSpanProcessor(OTLPSpanExporter(
            endpoint=f"{url}/v1/traces", headers={"Authorization": f"Bearer {token}"})))
        tracer = provider.get_tracer("qfleet.demo")
        t = start_ns + rng.randrange(10**9)
        job = 0
        while t < end_ns - 10**9:
            job += 1
            dur = rng.randrange(20, 400) * 10**6
            ok = rng.random() > (0.2 if hw == "nv_centre" else 0.05)
            root = tracer.start_span("job.run", start_time=t, attributes={
                "qfleet.job.id": f"{node}-job-{job}", "circuit.shots": 1000})
            ctx = set_span_in_context(root)
            for step, frac in (("gate.teleported_cnot", 0.4), ("feedforward", 0.1), ("measure", 0.2)):
                child = tracer.start_span(step, context=ctx, start_time=t + int(dur * 0.1))
                child.end(end_time=t + int(dur * (0.1 + frac)))
            root.set_status(Status(StatusCode.OK if ok else StatusCode.ERROR,
                                   None if ok else "logical error above threshold"))
            root.end(end_time=t + dur)
            count += 4
            t += dur + rng.randrange(1, 20) * 10**9
        provider.shutdown()
    return count


def _orchestrator(store: Store, rng: random.Random, start_ns: int, end_ns: int) -> int:
    """The orchestrator exports in process (no network hop) through the SQL span exporter."""
    from opentelemetry.sdk.resources import Resource

    from collector.exporters import tracer_provider

    provider = tracer_provider(store, resource=Resource.create({"service.name": "qfleet-orchestrator"}))
    tracer = provider.get_tracer("qfleet.demo")
    count = 0
    for t in range(start_ns, end_ns, 5 * 10**9):
        span = tracer.start_span("orchestrator.schedule", start_time=t,
                                 attributes={"queue.depth": rng.randrange(0, 12)})
        span.end(end_time=t + rng.randrange(1, 30) * 10**6)
        count += 1
    provider.shutdown()
    return count


def _link_attempts(store: Store, rng: random.Random, start_ns: int, end_ns: int) -> int:
    """Heralded entanglement attempts, many per second: the columnar bulk path."""
    count = 0
    for a, b in LINKS:
        link = f"{a}~{b}"
        n = (end_ns - start_ns) // (50 * 10**6)  # one heralding window every 50 ms
        starts = [start_ns + i * 50 * 10**6 + rng.randrange(10**6) for i in range(n)]
        p_success = 0.6 if "node-b" in link and rng.random() < 0.5 else 0.8
        status = [0 if rng.random() < p_success else 2 for _ in range(n)]
        trace_prefix = rng.getrandbits(64)
        store.write(SpanColumns(
            trace_id=[f"{trace_prefix:016x}{i:016x}" for i in range(n)],
            span_id=[f"{rng.getrandbits(63) | 1:016x}" for _ in range(n)],
            name=["link.entangle"] * n,
            start_time_unix_nano=starts,
            end_time_unix_nano=[s + rng.randrange(1, 40) * 10**6 for s in starts],
            status_code=status,
            node_id=[a] * n,
            link_id=[link] * n,
            attributes=[{"qfleet.link.id": link, "attempts": rng.randrange(1, 200)} for _ in range(n)],
        ).to_batch(service_name="qfleet-link-controller"))
        count += n
    return count


def _scrape(url: str) -> dict[str, float]:
    """The collector's own counters from its /metrics, summed over their labels."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as r:  # noqa: S310 (loopback URL we own)
        text = r.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("qfleet_collector_") and sample.name.endswith("_total"):
                out[sample.name] = out.get(sample.name, 0.0) + sample.value
    return out


def _summary(store: Store, out: TextIO, start_ns: int, n_otlp: int, n_inproc: int, n_bulk: int,
             health: dict[str, float], elapsed_s: float) -> None:
    from sqlalchemy import text

    with store.engine.connect() as conn:
        links = conn.execute(text(
            "SELECT link_id, SUM(CASE WHEN status_code = 2 THEN 0 ELSE span_count END), SUM(span_count) "
            "FROM span_rollups WHERE name = 'link.entangle' AND bucket_start_unix_nano >= :s "
            "GROUP BY link_id ORDER BY link_id"), {"s": start_ns - MINUTE_NS}).all()
        jobs = conn.execute(text(
            "SELECT node_id, hardware_type, SUM(CASE WHEN status_code = 2 THEN 0 ELSE span_count END), "
            "SUM(span_count) FROM span_rollups WHERE name = 'job.run' AND bucket_start_unix_nano >= :s "
            "GROUP BY node_id, hardware_type ORDER BY node_id"), {"s": start_ns - MINUTE_NS}).all()
    w = out.write
    w(f"\nsent {n_otlp} spans over OTLP/HTTP, {n_inproc} in process, {n_bulk} through the bulk API "
      f"in {elapsed_s:.1f} s\n")
    w(f"store: {store.count('spans')} spans, {store.count('span_rollups')} per-minute span rollups, "
      f"{store.count('resources')} resources\n\n")
    w(f"{'node':<8} {'hardware':<16} {'jobs':>6} {'job success':>12}\n")
    for node, hw, good, total in jobs:
        w(f"{node:<8} {hw:<16} {total:>6} {good / total:>12.1%}\n")
    w(f"\n{'link':<16} {'attempts':>9} {'heralded':>9}\n")
    for link, good, total in links:
        w(f"{link:<16} {total:>9} {good / total:>9.1%}\n")
    w("\ncollector health (/metrics): " + ", ".join(
        f"{k.removeprefix('qfleet_collector_')}={int(v)}" for k, v in sorted(health.items())) + "\n")
