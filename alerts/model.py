"""The alerts package's domain values: alerts, matchers, routes, receivers, silences, notifications.

Alertmanager's vocabulary and semantics (sre.md §17-19): labels are plain ``str -> str`` maps (a missing label
reads as the empty string), times are integer Unix nanoseconds, durations integer nanoseconds. Loading them from
an ``alertmanager.yml`` lives in :mod:`qfleet.alerts.config`; the routing, grouping and timeline logic in pure modules
over these values; I/O (the outbox, HTTP) at the edges.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Literal

from qfleet.alerts.regex import UserRegex, compile_regex

# NS is re-exported for older ``from qfleet.alerts.model import NS``; new code imports it from qfleet.units.
from qfleet.units import NS

__all__ = [
    "DEFAULT_GROUP_INTERVAL_NS",
    "DEFAULT_GROUP_WAIT_NS",
    "DEFAULT_REPEAT_INTERVAL_NS",
    "DEFAULT_RESEND_DELAY_NS",
    "DEFAULT_RESOLVE_TIMEOUT_NS",
    "Alert",
    "AlertingConfig",
    "AlertmanagerTarget",
    "InhibitRule",
    "Matcher",
    "NS",
    "Notification",
    "PagerDutyFields",
    "PushConfig",
    "Receiver",
    "ResolvedRoute",
    "Route",
    "Silence",
    "TimeInterval",
    "TimeRange",
    "fingerprint",
    "labels_key",
]

Labels = tuple[tuple[str, str], ...]  # sorted (name, value) pairs: hashable, canonical

# Alertmanager's defaults (config/config.go): the root route's intervals and global.resolve_timeout.
DEFAULT_GROUP_WAIT_NS = 30 * NS
DEFAULT_GROUP_INTERVAL_NS = 5 * 60 * NS
DEFAULT_REPEAT_INTERVAL_NS = 4 * 3600 * NS
DEFAULT_RESOLVE_TIMEOUT_NS = 5 * 60 * NS


def labels_key(labels: dict[str, str] | Labels) -> Labels:
    """The canonical, hashable form of a label set: sorted pairs, empty values dropped (Alertmanager semantics).

    >>> labels_key({"b": "2", "a": "1", "c": ""})
    (('a', '1'), ('b', '2'))
    """
    items = labels.items() if isinstance(labels, dict) else labels
    return tuple(sorted((k, v) for k, v in items if v != ""))


def fingerprint(labels: dict[str, str] | Labels) -> str:
    """16 hex characters identifying an alert by its labels (stable across processes and restarts).

    >>> fingerprint({"alertname": "X", "node": "a"}) == fingerprint({"node": "a", "alertname": "X"})
    True
    """
    # Separators that cannot occur in UTF-8 label text keep ("a=b", "c") and ("a", "b=c") apart.
    text = "\xff".join(f"{k}\xfe{v}" for k, v in labels_key(labels))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Matcher:
    """``name op value`` with op ``=``, ``!=``, ``=~``, ``!~``; regexes are RE2, fully anchored as in Alertmanager.

    Raises:
        qfleet.alerts.regex.RegexError: (a ``ValueError``) the value of ``=~``/``!~`` is not a valid RE2 pattern.
    """

    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str
    _regex: UserRegex | None = field(default=None, init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            object.__setattr__(self, "_regex", compile_regex(self.value))

    def matches(self, labels: dict[str, str]) -> bool:
        """Whether ``labels`` satisfy the matcher (a missing label is the empty string).

        >>> Matcher("node", "=~", "qpu-1").matches({"node": "qpu-10"})
        False
        >>> Matcher("team", "!=", "hw").matches({})
        True
        """
        v = labels.get(self.name, "")
        if self.op == "=":
            return v == self.value
        if self.op == "!=":
            return v != self.value
        assert self._regex is not None
        hit = self._regex.matches(v)
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        return f'{self.name}{self.op}"{self.value}"'


@dataclass(frozen=True, slots=True, kw_only=True)
class Alert:
    """One alert as the sources produce it: firing from ``starts_at``; resolved once ``ends_at`` is set and passed.

    ``ends_at`` None means "firing until told otherwise": as in Alertmanager, an alert without an end that its
    source stops refreshing is resolved after :attr:`AlertingConfig.resolve_timeout_ns`.
    """

    labels: Labels
    annotations: Labels = ()
    starts_at: int
    ends_at: int | None = None
    generator_url: str = ""

    @property
    def fingerprint(self) -> str:
        """16 hex characters from the labels."""
        return fingerprint(self.labels)

    def label(self, name: str) -> str:
        """The value of ``name`` ('' when missing)."""
        return dict(self.labels).get(name, "")

    def firing_at(self, t: int) -> bool:
        """Firing at ``t``: started and not yet ended (``ends_at <= t`` is resolved)."""
        return self.starts_at <= t and (self.ends_at is None or self.ends_at > t)


@dataclass(frozen=True, slots=True)
class TimeRange:
    """``[start_minute, end_minute)`` of a day."""

    start_minute: int
    end_minute: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TimeInterval:
    """One ``time_intervals`` entry: every given field must match; any element of a list suffices."""

    times: tuple[TimeRange, ...] = ()
    weekdays: tuple[tuple[int, int], ...] = ()        # inclusive ranges, Monday = 0
    days_of_month: tuple[tuple[int, int], ...] = ()   # inclusive; negative counts from the month's end
    months: tuple[tuple[int, int], ...] = ()          # inclusive, 1-12
    years: tuple[tuple[int, int], ...] = ()
    location: str = "UTC"


@dataclass(frozen=True, slots=True, kw_only=True)
class Route:
    """A node of the routing tree; unset fields (None) inherit from the parent (see :mod:`qfleet.alerts.config`)."""

    receiver: str | None = None
    matchers: tuple[Matcher, ...] = ()
    group_by: tuple[str, ...] | None = None      # ("...",) groups by all labels
    continue_: bool = False
    group_wait_ns: int | None = None
    group_interval_ns: int | None = None
    repeat_interval_ns: int | None = None
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()
    routes: tuple[Route, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class PagerDutyFields:
    """The ``severity``, ``class``, ``component`` and ``group`` templates of one ``pagerduty_configs`` entry.

    Empty ``class``/``component``/``group`` are left out of the event (``omitempty`` in Alertmanager). An empty
    ``severity`` keeps qfleet's policy (page/security -> critical, ticket -> warning, anything else ``error``,
    Alertmanager's default); a configured one is rendered as Alertmanager renders it
    (:func:`qfleet.alerts.payloads.render_pagerduty_fields`).
    """

    severity: str = ""
    class_: str = ""
    component: str = ""
    group: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Receiver:
    """A receiver with its webhook and PagerDuty configs (qfleet delivers these two kinds)."""

    name: str
    webhooks: tuple[tuple[str, bool, int], ...] = ()        # (url, send_resolved, max_alerts)
    # (routing key, send_resolved, url, severity/class/component/group templates)
    pagerduty: tuple[tuple[str, bool, str, PagerDutyFields], ...] = ()


#: Prometheus' ``--rules.alert.resend-delay`` default.
DEFAULT_RESEND_DELAY_NS = 60 * NS


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertmanagerTarget:
    """One Alertmanager: the full ``.../api/v2/alerts`` URL, the per-request timeout, an optional bearer token."""

    url: str
    timeout_s: float = 10.0
    bearer_token: str = field(default="", repr=False)   # a secret: never in repr, logs or messages


@dataclass(frozen=True, slots=True, kw_only=True)
class PushConfig:
    """The ``alerting:`` section: where to send, how often to resend, and whether qfleet routes locally too."""

    targets: tuple[AlertmanagerTarget, ...]
    resend_delay_ns: int = DEFAULT_RESEND_DELAY_NS
    route_locally: bool = True


@dataclass(frozen=True, slots=True, kw_only=True)
class InhibitRule:
    """Mute targets while a firing source with equal ``equal`` labels exists."""

    source_matchers: tuple[Matcher, ...]
    target_matchers: tuple[Matcher, ...]
    equal: tuple[str, ...] = ()
    name: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class Silence:
    """An Alertmanager API v2 silence: active while ``starts_at <= t <= ends_at`` (end inclusive)."""

    id: str
    matchers: tuple[tuple[str, str, bool, bool], ...]   # (name, value, isRegex, isEqual)
    starts_at: int
    ends_at: int
    created_by: str
    comment: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Notification:
    """One notification an aggregation group sends to one receiver at one instant."""

    at: int
    receiver: str
    group_key: str
    group_labels: Labels
    reason: str                       # Alertmanager's notification_reason strings
    firing: tuple[Alert, ...]
    resolved: tuple[Alert, ...]


@dataclass(frozen=True, slots=True, kw_only=True)
class ResolvedRoute:
    """A route an alert reached, with every inherited setting filled in (the routing tree's answer).

    ``key`` is Alertmanager's route key (e.g. ``{}/{severity="page"}``): with the group labels it forms the
    group key ``<key>:<group labels>``.
    """

    key: str
    receiver: str
    group_by: tuple[str, ...] | None      # None: one group for the route; ("...",): by all labels
    group_wait_ns: int
    group_interval_ns: int
    repeat_interval_ns: int
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AlertingConfig:
    """A loaded ``alertmanager.yml`` subset (see :mod:`qfleet.alerts.config`), plus qfleet's escalation settings.

    Attributes:
        route: the root of the routing tree.
        receivers: receiver name -> receiver.
        inhibit_rules: the inhibition rules, in file order.
        time_intervals: interval name -> its intervals (``mute_time_intervals``/``active_time_intervals``).
        resolve_timeout_ns: ``global.resolve_timeout`` (default 5m, positive): an alert without ``ends_at`` that
            its source has not refreshed for this long is resolved, as Alertmanager does for alerts without
            EndsAt (the alert sources apply it).
        escalation_receiver: ``qfleet.escalation_receiver``: pages unacknowledged for ``escalate_after_ns`` are
            sent there too (both or neither).
        escalate_after_ns: ``qfleet.escalate_after`` (positive).
        push: the ``alerting:`` section: the Alertmanagers qfleet sends its alerts to (``None``: none).

    Raises:
        ValueError: a duration is not positive, or only one of the escalation settings is given.
    """

    route: Route
    receivers: dict[str, Receiver]
    inhibit_rules: tuple[InhibitRule, ...] = ()
    time_intervals: dict[str, tuple[TimeInterval, ...]] = field(default_factory=dict)
    resolve_timeout_ns: int = DEFAULT_RESOLVE_TIMEOUT_NS
    escalation_receiver: str | None = None
    escalate_after_ns: int | None = None
    push: PushConfig | None = None

    def __post_init__(self) -> None:
        if self.resolve_timeout_ns <= 0:
            raise ValueError(f"resolve_timeout_ns={self.resolve_timeout_ns} must be positive (Alertmanager's "
                             "default is 5m)")
        if (self.escalation_receiver is None) != (self.escalate_after_ns is None):
            raise ValueError("escalation_receiver and escalate_after_ns go together; give both or neither")
        if self.escalate_after_ns is not None and self.escalate_after_ns <= 0:
            raise ValueError(f"escalate_after_ns={self.escalate_after_ns} must be positive, e.g. 30 minutes")
