"""The notification timeline: aggregation groups, flushes and Alertmanager's dedup reasons (sre.md §17.2).

Pure and clock-injected: every time is an integer ns argument. An alert reaching a route joins the aggregation
group ``(receiver, group key)``; the group's first flush is ``group_wait`` after it was created, then one every
``group_interval``. At a flush, alerts with ``ends_at <= t`` are resolved, the rest firing; silenced and
inhibited alerts are left out; a muted route sends nothing and leaves the log alone. Otherwise the first
matching reason of ``notify/dedup_stage.go needsUpdate`` decides (see :func:`dedup_reason`). After every flush
the resolved alerts are dropped and an empty group is destroyed, so the next alert waits ``group_wait`` again.

>>> from qfleet.alerts.model import AlertingConfig, Receiver, Route
>>> from qfleet.units import NS
>>> cfg = AlertingConfig(route=Route(receiver="ops", group_by=("alertname",), group_wait_ns=30 * NS,
...                                  group_interval_ns=300 * NS, repeat_interval_ns=4 * 3600 * NS),
...                      receivers={"ops": Receiver(name="ops", webhooks=(("http://x", True, 0),))})
>>> notes = replay(cfg, [{"t": "0s", "labels": {"alertname": "A"}, "state": "firing"},
...                      {"t": "400s", "labels": {"alertname": "A"}, "state": "resolved"}])
>>> [(n.at // NS, n.reason) for n in notes]
[(30, 'first notification'), (630, 'all alerts resolved')]
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from qfleet.alerts.inhibit import Inhibitor
from qfleet.alerts.intervals import muted
from qfleet.alerts.model import (
    Alert,
    AlertingConfig,
    Labels,
    Notification,
    ResolvedRoute,
    Silence,
    fingerprint,
    labels_key,
)
from qfleet.alerts.routing import group_key, group_labels, resolve
from qfleet.alerts.silences import silenced
from qfleet.units import NS, DurationError, parse_duration

__all__ = [
    "ALL_RESOLVED",
    "Dispatcher",
    "FIRST",
    "LogEntry",
    "NEW_ALERTS",
    "REPEAT",
    "REPLAY_TAIL_NS",
    "ReplayError",
    "SOME_RESOLVED",
    "TimelineError",
    "dedup_reason",
    "parse_events",
    "replay",
]

FIRST = "first notification"
NEW_ALERTS = "new alerts added"
ALL_RESOLVED = "all alerts resolved"
SOME_RESOLVED = "some alerts resolved"
REPEAT = "repeat interval elapsed"
REPLAY_TAIL_NS = 86_400 * NS   # replay's default horizon after the last event (`qfleet alerts replay`)

LogEntry = tuple[frozenset[str], frozenset[str], int]   # (firing fingerprints, resolved fingerprints, sent at)

_EVENT_KEYS = {"t", "labels", "state", "annotations"}


class TimelineError(ValueError):
    """Misuse of the dispatcher: time going backwards, an unknown receiver, a zero ``group_interval``."""


class ReplayError(ValueError):
    """A malformed replay event (the message names its index)."""


def dedup_reason(entry: LogEntry | None, firing: frozenset[str], resolved: frozenset[str], *, now: int,
                 repeat_interval_ns: int, send_resolved: bool) -> str | None:
    """Alertmanager's ``needsUpdate``: the notification reason, or None when nothing needs sending.

    ``ALL_RESOLVED`` is returned even without ``send_resolved`` (it must clear the log); the caller sends it
    only with ``send_resolved``.

    >>> dedup_reason(None, frozenset({"a"}), frozenset(), now=30, repeat_interval_ns=10, send_resolved=True)
    'first notification'
    >>> e = (frozenset({"a"}), frozenset(), 30)
    >>> dedup_reason(e, frozenset({"a"}), frozenset(), now=40, repeat_interval_ns=10, send_resolved=True) is None
    True
    >>> dedup_reason(e, frozenset({"a"}), frozenset(), now=41, repeat_interval_ns=10, send_resolved=True)
    'repeat interval elapsed'
    """
    if entry is None:
        return FIRST if firing else None
    last_firing, last_resolved, sent_at = entry
    if not firing <= last_firing:
        return NEW_ALERTS if last_firing else FIRST
    if not firing:
        # Everything fired and resolved since the last notification: the receiver never heard of it.
        return ALL_RESOLVED if last_firing else None
    if send_resolved and not resolved <= last_resolved:
        return SOME_RESOLVED
    if now - sent_at > repeat_interval_ns:
        return REPEAT
    return None


@dataclass(slots=True)
class _Group:
    route: ResolvedRoute
    key: str
    labels: Labels
    created: int
    next_flush: int
    seq: int
    fps: set[str] = field(default_factory=set)


def _resolved_at(a: Alert, t: int) -> bool:
    return a.ends_at is not None and a.ends_at <= t


def _normalise_log(log: Mapping[tuple[str, str], Any] | None) -> dict[tuple[str, str], LogEntry]:
    out: dict[tuple[str, str], LogEntry] = {}
    for key, value in (log or {}).items():
        try:
            f, r, sent = value
            out[(str(key[0]), str(key[1]))] = (frozenset(f), frozenset(r), int(sent))
        except (TypeError, ValueError) as e:
            raise TimelineError(f"notification log entry {key!r} = {value!r} is not (firing fingerprints, "
                                "resolved fingerprints, sent_at ns); restore it from Dispatcher.log") from e
    return out


class Dispatcher:
    """Aggregation groups and their flushes for one :class:`AlertingConfig`; time only moves forward.

    ``update`` records an alert state change (it first runs the flushes due strictly before ``t_ns``, whose
    notifications the next ``advance`` returns); ``advance`` runs every flush due up to ``t_ns`` inclusive.
    ``log`` is the notification log to persist and hand back after a restart.
    """

    def __init__(self, config: AlertingConfig, *, silences: Iterable[Silence] = (),
                 log: Mapping[tuple[str, str], Any] | None = None) -> None:
        self._config = config
        self._silences: tuple[Silence, ...] = tuple(silences)
        self._log = _normalise_log(log)
        self._alerts: dict[str, Alert] = {}
        self._refs: dict[str, int] = {}
        self._groups: dict[tuple[str, str], _Group] = {}
        self._heap: list[tuple[int, int, tuple[str, str]]] = []
        self._pending: list[Notification] = []
        self._seq = 0
        self._now: int | None = None
        self._send_resolved: dict[str, bool] = {}
        self._inhibit_cache: tuple[int, Inhibitor] | None = None

    # -- state -------------------------------------------------------------------------------------------------

    @property
    def silences(self) -> tuple[Silence, ...]:
        """The silences applied at flushes (assignable, e.g. after the store changed)."""
        return self._silences

    @silences.setter
    def silences(self, value: Iterable[Silence]) -> None:
        self._silences = tuple(value)

    @property
    def log(self) -> dict[tuple[str, str], LogEntry]:
        """``{(receiver, group_key): (firing fingerprints, resolved fingerprints, sent_at ns)}`` (a copy)."""
        return dict(self._log)

    def next_flush_ns(self) -> int | None:
        """When the earliest live group flushes next, or None when there are no groups."""
        self._prune()
        return self._heap[0][0] if self._heap else None

    def groups(self) -> list[tuple[str, str, tuple[Alert, ...]]]:
        """``(receiver, group_key, alerts)`` for every live group (diagnostics, ``alerts routes``-style output)."""
        return [(rcv, key, tuple(sorted((self._alerts[fp] for fp in g.fps), key=lambda a: a.labels)))
                for (rcv, key), g in sorted(self._groups.items())]

    # -- input -------------------------------------------------------------------------------------------------

    def update(self, alert: Alert, t_ns: int) -> None:
        """Record ``alert`` (firing, or resolved once ``ends_at`` is set) as received at ``t_ns``."""
        self._clock(t_ns)
        self._run(t_ns, inclusive=False)
        fp = alert.fingerprint
        labels = dict(alert.labels)
        for route in resolve(self._config, labels):
            self._receiver_wants_resolved(route.receiver)
            gk = (route.receiver, group_key(route, labels))
            group = self._groups.get(gk)
            if group is None:
                if route.group_interval_ns <= 0 or route.group_wait_ns < 0:
                    raise TimelineError(f"route {route.key!r} has group_wait {route.group_wait_ns} ns and "
                                        f"group_interval {route.group_interval_ns} ns; group_interval must be "
                                        "positive and group_wait not negative (e.g. 30s and 5m)")
                self._seq += 1
                group = _Group(route=route, key=gk[1], labels=labels_key(group_labels(route, labels)),
                               created=t_ns, next_flush=t_ns + route.group_wait_ns, seq=self._seq)
                self._groups[gk] = group
                heapq.heappush(self._heap, (group.next_flush, group.seq, gk))
            if fp not in group.fps:
                group.fps.add(fp)
                self._refs[fp] = self._refs.get(fp, 0) + 1
        if fp in self._refs:
            self._alerts[fp] = alert
            self._inhibit_cache = None

    def advance(self, t_ns: int) -> list[Notification]:
        """Run every flush due up to ``t_ns`` (inclusive) in time order; the notifications they produced."""
        self._clock(t_ns)
        self._run(t_ns, inclusive=True)
        out, self._pending = self._pending, []
        return out

    # -- internals ---------------------------------------------------------------------------------------------

    def _clock(self, t_ns: int) -> None:
        if self._now is not None and t_ns < self._now:
            raise TimelineError(f"time {t_ns} ns is before {self._now} ns, already processed; the dispatcher's "
                                "time only moves forward (sort events by time)")
        self._now = t_ns

    def _receiver_wants_resolved(self, name: str) -> bool:
        if name not in self._send_resolved:
            rcv = self._config.receivers.get(name)
            if rcv is None:
                raise TimelineError(f"route receiver {name!r} is not among receivers "
                                    f"{sorted(self._config.receivers)}; add it under receivers:")
            self._send_resolved[name] = any(w[1] for w in rcv.webhooks) or any(p[1] for p in rcv.pagerduty)
        return self._send_resolved[name]

    def _prune(self) -> None:
        while self._heap:
            t, seq, gk = self._heap[0]
            g = self._groups.get(gk)
            if g is not None and g.seq == seq and g.next_flush == t:
                return
            heapq.heappop(self._heap)

    def _run(self, t_ns: int, *, inclusive: bool) -> None:
        while True:
            self._prune()
            if not self._heap:
                return
            t, _, gk = self._heap[0]
            if t > t_ns or (t == t_ns and not inclusive):
                return
            heapq.heappop(self._heap)
            self._flush(self._groups[gk], t)

    def _flush(self, g: _Group, t: int) -> None:
        alerts = [self._alerts[fp] for fp in g.fps]
        route = g.route
        if not ((route.mute_time_intervals or route.active_time_intervals) and muted(self._config, route, t)):
            self._notify(g, t, alerts)
        for a in alerts:
            if _resolved_at(a, t):
                fp = a.fingerprint
                g.fps.discard(fp)
                self._refs[fp] -= 1
                if not self._refs[fp]:
                    del self._refs[fp], self._alerts[fp]
        gk = (route.receiver, g.key)
        if not g.fps:
            del self._groups[gk]
            return
        g.next_flush = t + route.group_interval_ns
        heapq.heappush(self._heap, (g.next_flush, g.seq, gk))

    def _inhibitor(self, t: int) -> Inhibitor | None:
        # One snapshot of the sources per instant: many groups flush together; updates invalidate it.
        if not self._config.inhibit_rules:
            return None
        if self._inhibit_cache is None or self._inhibit_cache[0] != t:
            self._inhibit_cache = (t, Inhibitor(self._config.inhibit_rules, self._alerts.values(), t))
        return self._inhibit_cache[1]

    def _notify(self, g: _Group, t: int, alerts: list[Alert]) -> None:
        inhibitor = self._inhibitor(t)
        visible = [a for a in alerts
                   if not (self._silences and silenced(self._silences, a.labels, t))
                   and not (inhibitor is not None and inhibitor.mutes(a))]
        if not visible:
            return
        visible.sort(key=lambda a: a.labels)
        firing = tuple(a for a in visible if not _resolved_at(a, t))
        resolved = tuple(a for a in visible if _resolved_at(a, t))
        f = frozenset(a.fingerprint for a in firing)
        r = frozenset(a.fingerprint for a in resolved)
        route = g.route
        key = (route.receiver, g.key)
        send_resolved = self._receiver_wants_resolved(route.receiver)
        reason = dedup_reason(self._log.get(key), f, r, now=t, repeat_interval_ns=route.repeat_interval_ns,
                              send_resolved=send_resolved)
        if reason is None:
            return
        self._log[key] = (f, r, t)
        if reason == ALL_RESOLVED and not send_resolved:
            return
        self._pending.append(Notification(at=t, receiver=route.receiver, group_key=g.key, group_labels=g.labels,
                                          reason=reason, firing=firing, resolved=resolved))


# -- replay ------------------------------------------------------------------------------------------------------


def _event_time(i: int, v: Any) -> int:
    """An event's ``t``: integer ns, or a Prometheus duration (``"400s"``, ``"1h5m"``), as an offset from 0."""
    if isinstance(v, int) and not isinstance(v, bool):
        if v < 0:
            raise ReplayError(f"event {i}: t {v} ns is negative; times are offsets from 0")
        return v
    try:
        return parse_duration(v.strip() if isinstance(v, str) else v)
    except DurationError as e:
        raise ReplayError(f"event {i}: t {v!r} is not a duration ({e}); write e.g. \"400s\", \"1h5m\" or "
                          "integer ns") from e


def _str_map(i: int, what: str, v: Any) -> dict[str, str]:
    if not isinstance(v, Mapping) or not all(isinstance(k, str) and isinstance(x, str) for k, x in v.items()):
        raise ReplayError(f"event {i}: {what} {v!r} is not an object of string values, e.g. "
                          '{"alertname": "NodeDown"}')
    return dict(v)


def parse_events(events: Sequence[Any]) -> list[tuple[int, dict[str, str], str, dict[str, str]]]:
    """Validate replay events into ``(t_ns, labels, state, annotations)``, stably sorted by time.

    >>> parse_events([{"t": "1m", "labels": {"a": "1"}, "state": "firing"}])
    [(60000000000, {'a': '1'}, 'firing', {})]
    """
    if isinstance(events, str | bytes) or not isinstance(events, Sequence):
        raise ReplayError(f"events must be a JSON list of objects, not {type(events).__name__}")
    out = []
    for i, ev in enumerate(events):
        if not isinstance(ev, Mapping):
            raise ReplayError(f"event {i}: {ev!r} is not an object; write "
                              '{"t": "400s", "labels": {...}, "state": "firing"}')
        extra = set(ev) - _EVENT_KEYS
        if extra:
            raise ReplayError(f"event {i}: unknown keys {sorted(extra)}; allowed: {sorted(_EVENT_KEYS)}")
        missing = [k for k in ("t", "labels", "state") if k not in ev]
        if missing:
            raise ReplayError(f"event {i}: missing {', '.join(missing)}; each event needs t, labels and state")
        t = _event_time(i, ev["t"])
        labels = _str_map(i, "labels", ev["labels"])
        if not labels_key(labels):
            raise ReplayError(f"event {i}: labels {labels!r} are empty; give at least an alertname")
        state = ev["state"]
        if state not in ("firing", "resolved"):
            raise ReplayError(f"event {i}: state {state!r} is not 'firing' or 'resolved'")
        annotations = _str_map(i, "annotations", ev.get("annotations", {}))
        out.append((t, labels, state, annotations))
    out.sort(key=lambda e: e[0])
    return out


def replay(config: AlertingConfig, events: Sequence[Any], *, until_ns: int | None = None,
           silences: Iterable[Silence] = ()) -> list[Notification]:
    """Every notification a timeline of alert state changes produces (``qfleet alerts replay``).

    ``events`` are ``{"t": "400s" | ns, "labels": {...}, "state": "firing" | "resolved", "annotations"?}`` with
    ``t`` an offset from 0; events after ``until_ns`` are ignored. ``until_ns`` defaults to the last event plus
    :data:`REPLAY_TAIL_NS` (one day). A firing event for an alert already firing keeps its ``starts_at``.
    """
    parsed = parse_events(events)
    if until_ns is None:
        until_ns = (parsed[-1][0] if parsed else 0) + REPLAY_TAIL_NS
    d = Dispatcher(config, silences=silences)
    current: dict[str, Alert] = {}
    for t, labels, state, notes in parsed:
        if t > until_ns:
            break
        key = labels_key(labels)
        fp = fingerprint(key)
        prev = current.get(fp)
        if state == "firing":
            start = prev.starts_at if prev is not None and prev.ends_at is None else t
            alert = Alert(labels=key, annotations=labels_key(notes), starts_at=start)
        else:
            end = t if prev is None or prev.ends_at is None else prev.ends_at
            alert = Alert(labels=key, annotations=labels_key(notes) or (prev.annotations if prev else ()),
                          starts_at=prev.starts_at if prev is not None else t, ends_at=end)
        current[fp] = alert
        d.update(alert, t)
    return d.advance(until_ns)
