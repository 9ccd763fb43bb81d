"""The routing tree: which routes an alert reaches, its group labels and group key (sre.md §17.1).

As Alertmanager's ``dispatch/route.go``: matching is depth-first; the first matching child takes the alert
(later siblings are tried only if that child has ``continue: true``); if no child matches, the node itself
takes it. Children inherit ``receiver``, ``group_by`` and the three intervals from their parent (root defaults
30s / 5m / 4h); ``mute_time_intervals`` and ``active_time_intervals`` are per route, not inherited.

Route keys are Alertmanager's ``Route.Key()``: the parent's key, ``/``, then the route's matchers sorted by
(name, value, operator) as ``{name="value",...}`` (values escaped as OpenMetrics: ``\\``, ``"``, newline). The
root has no matchers, so its key is ``{}``. Siblings with identical matchers share a key, exactly as in
Alertmanager (its ``Route.ID()`` adds the sibling index, its ``Key()`` does not; the group key uses ``Key()``).

>>> from qfleet.alerts.model import AlertingConfig, Matcher, Receiver, Route
>>> page = Route(receiver="pages", matchers=(Matcher("severity", "=", "page"),), group_by=("alertname",))
>>> cfg = AlertingConfig(route=Route(receiver="tickets", routes=(page,)),
...                      receivers={"pages": Receiver(name="pages"), "tickets": Receiver(name="tickets")})
>>> [r] = resolve(cfg, {"alertname": "X", "severity": "page"})
>>> group_key(r, {"alertname": "X", "severity": "page"})
'{}/{severity="page"}:{alertname="X"}'
>>> routes_test(cfg, {"severity": "pager"})
['tickets']
"""

from __future__ import annotations

from qfleet.alerts.fields import is_label_name
from qfleet.alerts.model import (
    DEFAULT_GROUP_INTERVAL_NS,
    DEFAULT_GROUP_WAIT_NS,
    DEFAULT_REPEAT_INTERVAL_NS,
    AlertingConfig,
    Labels,
    Matcher,
    ResolvedRoute,
    Route,
    labels_key,
)

__all__ = ["RoutingError", "group_key", "group_labels", "labelset_string", "matchers_string", "resolve",
           "route_key", "routes_test"]

_OPS = ("=", "!=", "=~", "!~")      # Go's MatchType order, the last sort key of Alertmanager's matchers


class RoutingError(ValueError):
    """A routing tree that cannot route (a root without a receiver): build it with :mod:`qfleet.alerts.config`."""


def _om_escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _go_quote(value: str) -> str:
    """Go's ``strconv.Quote`` for the characters label values carry."""
    out = []
    for c in value:
        if c in '"\\':
            out.append("\\" + c)
        elif c in "\a\b\f\n\r\t\v":
            out.append({"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
                        "\v": "\\v"}[c])
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def matchers_string(matchers: tuple[Matcher, ...]) -> str:
    """Alertmanager's ``labels.Matchers.String()`` after ``NewRoute`` sorts them.

    >>> matchers_string((Matcher("team", "=", "hw"), Matcher("severity", "=~", "page|ticket")))
    '{severity=~"page|ticket",team="hw"}'
    """
    ordered = sorted(matchers, key=lambda m: (m.name, m.value, _OPS.index(m.op)))
    parts = []
    for m in ordered:
        name = m.name if is_label_name(m.name) else _go_quote(m.name)
        parts.append(f'{name}{m.op}"{_om_escape(m.value)}"')
    return "{" + ",".join(parts) + "}"


def labelset_string(labels: Labels) -> str:
    """Prometheus ``model.LabelSet.String()``: ``{a="1", b="2"}`` (pairs sorted as text, Go-quoted values).

    >>> labelset_string((("alertname", "X"), ("node", "qpu-1")))
    '{alertname="X", node="qpu-1"}'
    """
    return "{" + ", ".join(sorted(f"{k}={_go_quote(v)}" for k, v in labels)) + "}"


def route_key(parent_key: str | None, route: Route) -> str:
    """The key of ``route`` under a parent with key ``parent_key`` (None for the root).

    >>> route_key("{}", Route(matchers=(Matcher("severity", "=", "page"),)))
    '{}/{severity="page"}'
    """
    own = matchers_string(route.matchers)
    return own if parent_key is None else f"{parent_key}/{own}"


def _walk(route: Route, key: str, opts: ResolvedRoute, labels: dict[str, str], out: list[ResolvedRoute]) -> None:
    matched = False
    for child in route.routes:
        if not all(m.matches(labels) for m in child.matchers):
            continue
        matched = True
        child_opts = ResolvedRoute(
            key=route_key(key, child),
            receiver=child.receiver if child.receiver is not None else opts.receiver,
            group_by=child.group_by if child.group_by is not None else opts.group_by,
            group_wait_ns=child.group_wait_ns if child.group_wait_ns is not None else opts.group_wait_ns,
            group_interval_ns=(child.group_interval_ns if child.group_interval_ns is not None
                               else opts.group_interval_ns),
            repeat_interval_ns=(child.repeat_interval_ns if child.repeat_interval_ns is not None
                                else opts.repeat_interval_ns),
            mute_time_intervals=child.mute_time_intervals,
            active_time_intervals=child.active_time_intervals,
        )
        _walk(child, child_opts.key, child_opts, labels, out)
        if not child.continue_:
            break
    if not matched:
        out.append(opts)


def resolve(config: AlertingConfig, labels: dict[str, str]) -> tuple[ResolvedRoute, ...]:
    """Every route ``labels`` reach, in tree order, with inherited settings filled in (never empty).

    A missing label reads as ``""``; regexes are fully anchored.

    Raises:
        RoutingError: the root route has no receiver (a config from :func:`qfleet.alerts.config.load_config` always does).
    """
    root = config.route
    if root.receiver is None:
        raise RoutingError("the root route has no receiver; every alert needs a default receiver "
                           "(load the config with qfleet.alerts.config.load_config, which checks this)")
    opts = ResolvedRoute(
        key=route_key(None, root),
        receiver=root.receiver,
        group_by=root.group_by,
        group_wait_ns=root.group_wait_ns if root.group_wait_ns is not None else DEFAULT_GROUP_WAIT_NS,
        group_interval_ns=(root.group_interval_ns if root.group_interval_ns is not None
                           else DEFAULT_GROUP_INTERVAL_NS),
        repeat_interval_ns=(root.repeat_interval_ns if root.repeat_interval_ns is not None
                            else DEFAULT_REPEAT_INTERVAL_NS),
        mute_time_intervals=root.mute_time_intervals,
        active_time_intervals=root.active_time_intervals,
    )
    out: list[ResolvedRoute] = []
    _walk(root, opts.key, opts, labels, out)
    return tuple(out)


def group_labels(route: ResolvedRoute, labels: dict[str, str] | Labels) -> Labels:
    """The alert's labels named by the route's ``group_by`` (all for ``...``, none when unset), sorted.

    A ``group_by`` label the alert lacks (or has empty) is simply absent.

    >>> r = ResolvedRoute(key="{}", receiver="a", group_by=("slo", "node"), group_wait_ns=0,
    ...                   group_interval_ns=1, repeat_interval_ns=1)
    >>> group_labels(r, {"node": "qpu-1", "team": "hw"})
    (('node', 'qpu-1'),)
    """
    pairs = labels_key(labels)
    if route.group_by is None:
        return ()
    if "..." in route.group_by:
        return pairs
    wanted = set(route.group_by)
    return tuple((k, v) for k, v in pairs if k in wanted)


def group_key(route: ResolvedRoute, labels: dict[str, str] | Labels) -> str:
    """Alertmanager's aggregation-group key ``<route key>:<group labels>``, as in the webhook's ``groupKey``.

    >>> r = ResolvedRoute(key="{}", receiver="a", group_by=None, group_wait_ns=0, group_interval_ns=1,
    ...                   repeat_interval_ns=1)
    >>> group_key(r, {"alertname": "X"})
    '{}:{}'
    """
    return f"{route.key}:{labelset_string(group_labels(route, labels))}"


def routes_test(config: AlertingConfig, labels: dict[str, str]) -> list[str]:
    """The receivers ``labels`` reach, in order, as ``amtool config routes test`` prints them (comma-joined).

    Duplicates stay (a receiver reached by two routes is listed twice, as amtool does).
    """
    return [r.receiver for r in resolve(config, labels)]
