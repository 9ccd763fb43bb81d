"""Alert sources and their state: SLO burn-rate conditions as alerts, and the persisted set of known alerts.

A source produces, at each evaluation instant, the alerts whose condition holds *now*
(:func:`slo_alerts`, :func:`qfleet.alerts.rules.evaluate_rules`). :class:`AlertState` turns those snapshots into
Alertmanager's view: an alert keeps its original ``starts_at`` while it keeps firing, gets ``ends_at`` when it
stops (resolved), and with a ``for`` duration waits as *pending* before it fires (Prometheus semantics: the alert
sent has ``StartsAt`` = the instant it fired). An alert its source stops reporting (the source failed, or is no
longer configured) resolves ``resolve_timeout`` after its last report (:meth:`AlertState.expire`). The state lives
in :class:`~qfleet.alerts.schema.AlertRecord` so it survives a restart.

Alerts routed by another Alertmanager (received as its webhook, :mod:`qfleet.alerts.am_intake`) are *external*:
their source is ``alertmanager:<receiver>`` (:data:`EXTERNAL_PREFIX`), :meth:`AlertState.report` records what each
notification says, and they never time out here (that Alertmanager says when they resolve) nor go through
qfleet's own routing or push (``include_external=False``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update

from qfleet.alerts.model import Alert, labels_key
from qfleet.alerts.schema import AlertRecord, table
from qfleet.slo.model import SLO, SLOReport
from qfleet.slo.rules import prometheus_label

__all__ = [
    "EXTERNAL_PREFIX",
    "SEGMENT_LABELS",
    "SLO_ALERT_NAME",
    "AlertState",
    "AlertStateError",
    "SyncResult",
    "is_external",
    "segment_label",
    "slo_alerts",
]

#: ``alertname`` of every SLO burn-rate alert (the same name :mod:`qfleet.slo.rules` gives its Prometheus rules).
SLO_ALERT_NAME = "QfleetSLOBurnRate"

# Bookkeeping kept beside the annotations in the ``alerts`` table, never shown to receivers (names starting
# with ``__`` are internal, as in Prometheus).
_SOURCE = "__source__"
_STATE = "__state__"
#: Sources named so are alerts another Alertmanager routed (see the module docstring).
EXTERNAL_PREFIX = "alertmanager:"


def is_external(source: str) -> bool:
    """Whether ``source`` names alerts routed by another Alertmanager.

    >>> is_external("alertmanager:team-pages"), is_external("slo")
    (True, False)
    """
    return source.startswith(EXTERNAL_PREFIX)


def _source_of(row: Any) -> str:
    return str((row.annotations or {}).get(_SOURCE, ""))


class AlertStateError(ValueError):
    """A bad argument to :class:`AlertState` (the message names the value and the fix)."""


#: SLO segment dimension -> alert label: the one vocabulary of rule and SLO alerts (routing, inhibition and the
#: game-day scorer locate an alert by ``node``, ``link`` or ``hardware_type``).
SEGMENT_LABELS: Mapping[str, str] = {"hardware_type": "hardware_type", "node_id": "node", "link_id": "link"}


def segment_label(dimension: str) -> str:
    """The alert label of an SLO segment dimension.

    >>> segment_label("node_id"), segment_label("hardware_type"), segment_label("qfleet.tenant")
    ('node', 'hardware_type', 'qfleet_tenant')
    """
    return SEGMENT_LABELS.get(dimension) or prometheus_label(dimension)


def _num(x: Fraction | float | None) -> str:
    return "n/a" if x is None else f"{float(x):.4g}"


def slo_alerts(reports: Sequence[SLOReport], slos: Sequence[SLO], at_ns: int) -> list[Alert]:
    """One firing alert per (SLO, segment, severity) whose burn-rate condition holds in ``reports``.

    Labels: ``alertname`` (``QfleetSLOBurnRate``), ``slo``, ``severity`` (page | ticket), ``service``, the
    SLO's own labels (``team``...), and the segment in the alert label vocabulary shared with the rules
    (``hardware_type``, ``node``, ``link``; other dimensions as Prometheus labels). Annotations say which pairs fire with their burn
    rates against the threshold. ``starts_at`` is ``at_ns``: :meth:`AlertState.sync` keeps the continuity.

    Raises:
        AlertStateError: a report names an SLO that is not in ``slos``.
    """
    by_name = {s.name: s for s in slos}
    out: list[Alert] = []
    for r in reports:
        slo = by_name.get(r.slo)
        if slo is None:
            raise AlertStateError(f"report for SLO {r.slo!r} but no such SLO was given; pass the specs the "
                                  f"reports were evaluated from (known: {sorted(by_name)})")
        for severity in ("page", "ticket"):
            if not r.severities.get(severity):
                continue
            firing = [c for c in r.conditions if c.severity == severity and c.firing]
            # A place named in the SLO's own labels (e.g. hardware_type of a per-platform SLO) keeps the alert
            # vocabulary's spelling, as its segments do.
            labels: dict[str, str] = {(segment_label(k) if k in ("node", "link", "hardware_type")
                                       else prometheus_label(k)): str(v) for k, v in slo.labels}
            labels.update({segment_label(k): v for k, v in r.segment})
            labels.update(alertname=SLO_ALERT_NAME, slo=slo.name, severity=severity, service=slo.service)
            name = slo.display_name or slo.name
            seg = ", ".join(f"{k}={v}" for k, v in r.segment)
            pairs = "; ".join(
                f"{c.name}: burn {_num(c.long_burn_rate)} over {c.long_window} and {_num(c.short_burn_rate)} "
                f"over {c.short_window} > threshold {_num(c.threshold)}" for c in firing)
            summary = f"{name}: error budget burning too fast ({', '.join(c.name for c in firing)})"
            if seg:
                summary += f" for {seg}"
            description = (f"SLO {name} (service {slo.service}, target {float(slo.target) * 100:.4g}%"
                           f"{', segment ' + seg if seg else ''}): {pairs}.")
            annotations = {"summary": summary, "description": description}
            if slo.runbook:
                annotations["runbook_url"] = slo.runbook
            out.append(Alert(labels=labels_key(labels), annotations=labels_key(annotations), starts_at=at_ns))
    return out


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one :meth:`AlertState.sync` changed (its return value is ``fired + resolved + updated``)."""

    fired: tuple[Alert, ...]
    resolved: tuple[Alert, ...]
    updated: tuple[Alert, ...]
    pending: tuple[Alert, ...]

    @property
    def changed(self) -> list[Alert]:
        """``fired + resolved + updated``: what a dispatcher must hear about."""
        return [*self.fired, *self.resolved, *self.updated]


@dataclass(slots=True)
class _Changes:
    fired: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    updated: list[Alert] = field(default_factory=list)
    pending: list[Alert] = field(default_factory=list)
    refreshed: list[str] = field(default_factory=list)   # fingerprints reported again, unchanged

    def result(self) -> SyncResult:
        return SyncResult(tuple(self.fired), tuple(self.resolved), tuple(self.updated), tuple(self.pending))


class AlertState:
    """The set of known alerts of every source, persisted in the ``alerts`` table (one row per fingerprint).

    Each row's ``updated_unix_nano`` is the evaluation instant its source last reported it, so
    :meth:`expire` can resolve the alerts of a source that stopped reporting (Alertmanager's
    ``resolve_timeout``).

    Args:
        engine: a migrated store.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._t = table(AlertRecord)

    def sync(self, current: Sequence[Alert], at_ns: int, *, source: str,
             for_ns: Mapping[str, int] | Callable[[Alert], int] | None = None) -> list[Alert]:
        """Make ``current`` the alerts of ``source`` at ``at_ns``; return the alerts that changed.

        - new alerts fire with ``starts_at = at_ns`` (or, with a ``for`` duration, wait as pending and fire at
          the first sync at least that long after they became active);
        - continuing alerts keep their original ``starts_at`` (annotation changes are stored and returned);
        - firing alerts of ``source`` no longer in ``current`` are resolved: ``ends_at = at_ns``; pending ones
          are dropped without a notification (they never fired).

        Args:
            current: the alerts whose condition holds now (their own ``starts_at`` is ignored).
            at_ns: the evaluation instant.
            source: the name of the producer (``"slo"``, ``"rules"``...); alerts of other sources are left alone.
            for_ns: pending duration by ``alertname``, or a function of the alert (default 0: fire at once).
        """
        return self.sync_detail(current, at_ns, source=source, for_ns=for_ns).changed

    def sync_detail(self, current: Sequence[Alert], at_ns: int, *, source: str,
                    for_ns: Mapping[str, int] | Callable[[Alert], int] | None = None) -> SyncResult:
        """:meth:`sync` with the changes split by kind (:class:`SyncResult`)."""
        if not source:
            raise AlertStateError("source is empty; name the producer, e.g. source='slo'")
        pending_for = _pending_fn(for_ns)
        t = self._t
        cur = {a.fingerprint: a for a in current}
        out = _Changes()
        with self.engine.begin() as conn:
            rows = {r.fingerprint: r for r in conn.execute(
                select(t).where(t.c.fingerprint.in_(list(cur)))).all()} if cur else {}
            self._resolve_gone(conn, cur, at_ns, source, out)
            for fp, a in cur.items():
                self._sync_one(conn, a, rows.get(fp), at_ns, source, pending_for(a), out)
            if out.refreshed:
                conn.execute(update(t).where(t.c.fingerprint.in_(out.refreshed)).values(updated_unix_nano=at_ns))
        return out.result()

    def _resolve_gone(self, conn: Connection, cur: Mapping[str, Alert], at_ns: int, source: str,
                      out: _Changes) -> None:
        """Resolve the firing alerts of ``source`` missing from ``cur``; drop its pending ones."""
        t = self._t
        for r in conn.execute(select(t).where(t.c.ends_at_unix_nano.is_(None))).all():
            if (r.annotations or {}).get(_SOURCE) != source or r.fingerprint in cur:
                continue
            if (r.annotations or {}).get(_STATE) == "pending":
                conn.execute(delete(t).where(t.c.fingerprint == r.fingerprint))
                continue
            conn.execute(update(t).where(t.c.fingerprint == r.fingerprint)
                         .values(ends_at_unix_nano=at_ns, updated_unix_nano=at_ns))
            out.resolved.append(_alert(r, ends_at=at_ns))

    def _sync_one(self, conn: Connection, a: Alert, row: Any, at_ns: int, source: str, wait: int,
                  out: _Changes) -> None:
        """One alert of ``current``: refreshed or updated when it fires already, else fired or pending."""
        t = self._t
        ann = dict(a.annotations)
        live = row is not None and row.ends_at_unix_nano is None
        was_pending = live and (row.annotations or {}).get(_STATE) == "pending"
        if live and not was_pending:
            if _public(row.annotations) == ann:
                out.refreshed.append(a.fingerprint)
                return
            conn.execute(update(t).where(t.c.fingerprint == a.fingerprint).values(
                annotations={**ann, _SOURCE: source}, updated_unix_nano=at_ns))
            out.updated.append(_make(a, row.starts_at_unix_nano))
            return
        since = row.starts_at_unix_nano if was_pending else at_ns
        fires = at_ns - since >= wait
        state = {} if fires else {_STATE: "pending"}
        values = {"labels": dict(a.labels), "annotations": {**ann, _SOURCE: source, **state},
                  "starts_at_unix_nano": at_ns if fires else since, "ends_at_unix_nano": None,
                  "updated_unix_nano": at_ns}
        (out.fired if fires else out.pending).append(_make(a, at_ns if fires else since))
        if row is None:
            conn.execute(insert(t).values(fingerprint=a.fingerprint, **values))
        else:
            conn.execute(update(t).where(t.c.fingerprint == a.fingerprint).values(**values))

    def report(self, firing: Sequence[Alert], resolved: Sequence[Alert], at_ns: int, *, source: str) -> SyncResult:
        """Record one notification of an external ``source``: ``firing`` fire (with their own ``starts_at``) or
        refresh, ``resolved`` end at their own ``ends_at``; the source's other alerts are left alone (they belong
        to other groups of that receiver).

        An alert whose fingerprint another source owns while it fires (qfleet's own alert sent to that
        Alertmanager and notified back) is left to its owner and counted in neither list.

        Raises:
            AlertStateError: ``source`` is not external, or a resolved alert has no ``ends_at``.
        """
        if not is_external(source):
            raise AlertStateError(f"source {source!r} is not external; name it {EXTERNAL_PREFIX}<receiver>")
        if bad := [a.fingerprint for a in resolved if a.ends_at is None]:
            raise AlertStateError(f"resolved alerts {bad} have no ends_at; give the instant each resolved")
        t = self._t
        out = _Changes()
        fps = [a.fingerprint for a in [*firing, *resolved]]
        with self.engine.begin() as conn:
            rows = {r.fingerprint: r for r in conn.execute(select(t).where(t.c.fingerprint.in_(fps))).all()} \
                if fps else {}
            for a in firing:
                row = rows.get(a.fingerprint)
                live = row if row is not None and row.ends_at_unix_nano is None else None
                if live is not None and _source_of(live) != source:
                    continue
                values = {"labels": dict(a.labels), "annotations": {**dict(a.annotations), _SOURCE: source},
                          "updated_unix_nano": at_ns}
                if live is not None and live.starts_at_unix_nano == a.starts_at:
                    if _public(live.annotations) == dict(a.annotations):
                        out.refreshed.append(a.fingerprint)
                    else:
                        out.updated.append(_make(a, a.starts_at))
                    conn.execute(update(t).where(t.c.fingerprint == a.fingerprint).values(**values))
                    continue
                values.update(starts_at_unix_nano=a.starts_at, ends_at_unix_nano=None)
                if row is None:
                    conn.execute(insert(t).values(fingerprint=a.fingerprint, **values))
                else:
                    conn.execute(update(t).where(t.c.fingerprint == a.fingerprint).values(**values))
                out.fired.append(_make(a, a.starts_at))
            for a in resolved:
                row = rows.get(a.fingerprint)
                if row is None or row.ends_at_unix_nano is not None or _source_of(row) != source:
                    continue
                conn.execute(update(t).where(t.c.fingerprint == a.fingerprint)
                             .values(ends_at_unix_nano=a.ends_at, updated_unix_nano=at_ns))
                out.resolved.append(_alert(row, ends_at=a.ends_at))
        return out.result()

    def expire(self, at_ns: int, timeout_ns: int) -> list[Alert]:
        """Resolve the alerts whose source has not reported them for ``timeout_ns`` (Alertmanager's
        ``resolve_timeout`` for alerts without an end): each ends ``timeout_ns`` after its last report, when that
        is at or before ``at_ns``. Stale pending alerts are dropped (they never fired). External alerts are left
        alone: their Alertmanager re-notifies only every ``repeat_interval`` and says when they resolve. Returns
        the resolved alerts.

        Raises:
            AlertStateError: ``timeout_ns`` is not positive.
        """
        if isinstance(timeout_ns, bool) or not isinstance(timeout_ns, int) or timeout_ns <= 0:
            raise AlertStateError(f"timeout_ns={timeout_ns!r} must be integer ns > 0, e.g. 300 * NS (5m)")
        t = self._t
        resolved = []
        with self.engine.begin() as conn:
            stale = conn.execute(select(t).where(t.c.ends_at_unix_nano.is_(None),
                                                 t.c.updated_unix_nano <= at_ns - timeout_ns)
                                 .order_by(t.c.updated_unix_nano, t.c.fingerprint)).all()
            for r in stale:
                if is_external(_source_of(r)):
                    continue
                if (r.annotations or {}).get(_STATE) == "pending":
                    conn.execute(delete(t).where(t.c.fingerprint == r.fingerprint))
                    continue
                ends = r.updated_unix_nano + timeout_ns
                conn.execute(update(t).where(t.c.fingerprint == r.fingerprint).values(ends_at_unix_nano=ends))
                resolved.append(_alert(r, ends_at=ends))
        return resolved

    def active(self, *, include_external: bool = True) -> list[Alert]:
        """Every firing alert (pending ones excluded), oldest first; external ones only with
        ``include_external``."""
        t = self._t
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.ends_at_unix_nano.is_(None))
                                .order_by(t.c.starts_at_unix_nano, t.c.fingerprint)).all()
        return [_alert(r) for r in rows if (r.annotations or {}).get(_STATE) != "pending"
                and (include_external or not is_external(_source_of(r)))]

    def pending(self) -> list[Alert]:
        """Alerts waiting out their ``for`` duration (``starts_at`` = when they became active)."""
        t = self._t
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.ends_at_unix_nano.is_(None))
                                .order_by(t.c.starts_at_unix_nano, t.c.fingerprint)).all()
        return [_alert(r) for r in rows if (r.annotations or {}).get(_STATE) == "pending"]

    def resolved_since(self, since_ns: int, *, include_external: bool = True) -> list[Alert]:
        """Alerts resolved at or after ``since_ns`` (what a dispatcher must still report as resolved); external
        ones only with ``include_external``."""
        t = self._t
        with self.engine.connect() as conn:
            rows = conn.execute(select(t).where(t.c.ends_at_unix_nano >= since_ns)
                                .order_by(t.c.ends_at_unix_nano, t.c.fingerprint)).all()
        return [_alert(r) for r in rows if include_external or not is_external(_source_of(r))]


def _pending_fn(for_ns: Mapping[str, int] | Callable[[Alert], int] | None) -> Callable[[Alert], int]:
    if for_ns is None:
        return lambda a: 0
    if callable(for_ns):
        return for_ns
    if bad := {k: v for k, v in for_ns.items() if isinstance(v, bool) or not isinstance(v, int) or v < 0}:
        raise AlertStateError(f"for_ns {bad} must be integer ns >= 0, e.g. {{'X': 120 * NS}}")
    table = dict(for_ns)
    return lambda a: table.get(a.label("alertname"), 0)


def _public(annotations: dict[str, Any] | None) -> dict[str, str]:
    return {k: v for k, v in (annotations or {}).items() if not k.startswith("__")}


def _make(a: Alert, starts_at: int) -> Alert:
    return Alert(labels=a.labels, annotations=a.annotations, starts_at=starts_at, generator_url=a.generator_url)


def _alert(row: Any, *, ends_at: int | None = None) -> Alert:
    return Alert(labels=labels_key({k: str(v) for k, v in (row.labels or {}).items()}),
                 annotations=labels_key(_public(row.annotations)), starts_at=row.starts_at_unix_nano,
                 ends_at=row.ends_at_unix_nano if ends_at is None else ends_at)
