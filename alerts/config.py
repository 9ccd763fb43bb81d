"""Loading the ``alertmanager.yml`` subset qfleet implements (sre.md §17-19), plus one ``qfleet:`` key.

A file Alertmanager accepts loads here unchanged: the parts qfleet implements become :class:`AlertingConfig`
values, the parts it knows but does not implement (e-mail/Slack/... receivers, ``templates``, most ``global``
keys, ``http_config``, route ``labels``) come back as warnings, and anything else (a typo) is a problem. Every
problem is collected, then :class:`ConfigError` lists them all with their key paths::

    global: {resolve_timeout: 5m}                # other global keys: warnings (pagerduty_url is used)
    route:                                       # the root: receiver required, no matchers, no mute times
      receiver: tickets
      group_by: [alertname, slo]                 # ['...'] = every label; unset = one group
      group_wait: 30s                            # defaults 30s / 5m / 4h, inherited by children
      routes:
        - matchers: ['severity="page"']          # also name!="v", name=~"re", name!~"re"; unquoted values
          receiver: pages
          continue: true
          mute_time_intervals: [maintenance]     # or active_time_intervals; not inherited
    receivers:
      - name: pages
        webhook_configs: [{url: 'http://127.0.0.1:9101/', send_resolved: true, max_alerts: 0}]
        pagerduty_configs: [{routing_key: <32 chars>}]
    inhibit_rules: [{source_matchers: [...], target_matchers: [...], equal: [slo]}]
    time_intervals: [{name: maintenance, time_intervals: [{weekdays: [saturday, sunday]}]}]
    qfleet: {escalation_receiver: pages, escalate_after: 30m}

The deprecated ``match`` / ``match_re`` (routes) and ``source_match(_re)`` / ``target_match(_re)`` (inhibit
rules) are converted to matchers with a warning; the deprecated top-level ``mute_time_intervals`` joins
``time_intervals``. ``url_file`` and ``routing_key_file`` are read at load time (relative paths from the config
file's directory).
"""

from __future__ import annotations

import difflib
import logging
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from qfleet.alerts.intervals import parse_time_intervals
from qfleet.alerts.model import NS, AlertingConfig, InhibitRule, Matcher, Receiver, Route, TimeInterval

__all__ = [
    "ConfigError",
    "MatcherError",
    "config_from_dict",
    "load_config",
    "parse_duration",
    "parse_matcher",
    "parse_matchers",
    "read_config",
]

logger = logging.getLogger(__name__)

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
DEFAULT_GROUP_WAIT_NS = 30 * NS
DEFAULT_GROUP_INTERVAL_NS = 300 * NS
DEFAULT_REPEAT_INTERVAL_NS = 4 * 3600 * NS

_LABEL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_DURATION = re.compile(r"(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?\Z")
_UNITS_NS = (365 * 86400 * NS, 7 * 86400 * NS, 86400 * NS, 3600 * NS, 60 * NS, NS, NS // 1000)
_MATCHER = re.compile(r'\s*("(?:[^"\\]|\\.)*"|[^\s=!~"]+)\s*(=~|!~|!=|=)\s*(.*?)\s*\Z', re.S)

_TOP_KEYS = {"global", "route", "receivers", "inhibit_rules", "time_intervals", "mute_time_intervals",
             "templates", "tracing", "qfleet"}
_ROUTE_KEYS = {"receiver", "group_by", "continue", "matchers", "match", "match_re", "group_wait",
               "group_interval", "repeat_interval", "mute_time_intervals", "active_time_intervals", "routes"}
_ROUTE_UNSUPPORTED = {"labels"}
_GLOBAL_UNSUPPORTED = {
    "http_config", "smtp_from", "smtp_hello", "smtp_smarthost", "smtp_auth_username", "smtp_auth_password",
    "smtp_auth_password_file", "smtp_auth_secret", "smtp_auth_secret_file", "smtp_auth_identity",
    "smtp_require_tls", "smtp_tls_config", "smtp_force_implicit_tls", "slack_api_url", "slack_api_url_file",
    "slack_app_token", "slack_app_token_file", "slack_app_url", "victorops_api_key", "victorops_api_key_file",
    "victorops_api_url", "opsgenie_api_key", "opsgenie_api_key_file", "opsgenie_api_url", "wechat_api_url",
    "wechat_api_secret", "wechat_api_corp_id", "telegram_api_url", "telegram_bot_token",
    "telegram_bot_token_file", "webex_api_url", "jira_api_url", "rocketchat_api_url", "rocketchat_token",
    "rocketchat_token_file", "rocketchat_token_id", "rocketchat_token_id_file", "mattermost_webhook_url",
    "mattermost_webhook_url_file",
}
_OTHER_RECEIVERS = {
    "email_configs", "slack_configs", "opsgenie_configs", "pushover_configs", "sns_configs", "telegram_configs",
    "victorops_configs", "webex_configs", "wechat_configs", "discord_configs", "msteams_configs",
    "msteamsv2_configs", "jira_configs", "rocketchat_configs", "incidentio_configs", "mattermost_configs",
}
_WEBHOOK_KEYS = {"url", "url_file", "send_resolved", "max_alerts", "timeout"}
_WEBHOOK_UNSUPPORTED = {"http_config", "payload"}
_PD_KEYS = {"routing_key", "routing_key_file", "url", "send_resolved"}
_PD_UNSUPPORTED = {"http_config", "client", "client_url", "description", "details", "images", "links", "source",
                   "severity", "class", "component", "group", "timeout"}
_PD_V1 = {"service_key", "service_key_file"}
_INHIBIT_KEYS = {"name", "source_matchers", "target_matchers", "equal", "source_match", "source_match_re",
                 "target_match", "target_match_re"}
_QFLEET_KEYS = {"escalation_receiver", "escalate_after"}


class ConfigError(ValueError):
    """An alerting configuration with problems; ``problems`` names each one's key path and fix.

    >>> str(ConfigError(["route.receiver: required"], source="am.yml"))
    'am.yml: 1 problem:\\n  - route.receiver: required'
    """

    def __init__(self, problems: list[str], *, source: str = "") -> None:
        self.problems = list(problems)
        self.source = source
        n = len(self.problems)
        head = f"{source}: " if source else ""
        super().__init__(f"{head}{n} problem{'s' if n != 1 else ''}:\n" + "\n".join(f"  - {p}" for p in problems))


class MatcherError(ConfigError):
    """A matcher string that is not ``name="value"`` (or ``!=``, ``=~``, ``!~``)."""


def _unquote(text: str) -> str:
    """The body of a double-quoted string with ``\\"``, ``\\\\`` and ``\\n`` unescaped (other escapes kept,
    so regexes such as ``"qpu-\\d+"`` survive, as with Alertmanager's classic parser)."""
    out, i, body = [], 0, text[1:-1]
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append({"\\": "\\", '"': '"', "n": "\n"}.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def parse_matcher(text: str) -> Matcher:
    """One Alertmanager matcher: ``name="v"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"`` or unquoted values.

    Regexes are fully anchored (see :class:`alerts.model.Matcher`).

    Raises:
        MatcherError: ``text`` is not a matcher, or its regex does not compile.

    >>> parse_matcher('severity=~"page|ticket"')
    Matcher(name='severity', op='=~', value='page|ticket')
    >>> parse_matcher("team = hw")
    Matcher(name='team', op='=', value='hw')
    >>> parse_matcher("severity: page")
    Traceback (most recent call last):
    ...
    qfleet.alerts.config.MatcherError: 1 problem:
      - matcher 'severity: page': not name="value"; write e.g. severity="page" (operators =, !=, =~, !~)
    """
    if not isinstance(text, str):
        raise MatcherError([f"matcher {text!r}: expected a string such as severity=\"page\""])
    m = _MATCHER.match(text)
    if m is None:
        raise MatcherError([f"matcher {text!r}: not name=\"value\"; write e.g. severity=\"page\" "
                            "(operators =, !=, =~, !~)"])
    name, op, value = m.groups()
    if name.startswith('"'):
        name = _unquote(name)
        if not name:
            raise MatcherError([f"matcher {text!r}: empty label name"])
    elif not _LABEL_NAME.match(name):
        raise MatcherError([f"matcher {text!r}: {name!r} is not a label name ([A-Za-z_][A-Za-z0-9_]*); "
                            "quote it if it must contain other characters"])
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"') or re.search(r'(?<!\\)(?:\\\\)*"', value[1:-1]):
            raise MatcherError([f"matcher {text!r}: unterminated or extra quote in the value; "
                                'escape inner quotes as \\"'])
        value = _unquote(value)
    elif any(c in value for c in ',{}"'):
        raise MatcherError([f"matcher {text!r}: unquoted value {value!r} contains one of , {{ }} \"; "
                            f'quote it: {name}{op}"..."'])
    try:
        return Matcher(name, op, value)  # type: ignore[arg-type]
    except ValueError as e:
        raise MatcherError([str(e)]) from e


def _split_outside_quotes(text: str) -> list[str]:
    parts, cur, quoted, escaped = [], [], False, False
    for c in text:
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(c)
    parts.append("".join(cur))
    return parts


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """A comma-separated list of matchers, optionally in braces (one ``matchers:`` list item may hold several).

    >>> parse_matchers('{severity="page", node=~"qpu-.*"}')
    (Matcher(name='severity', op='=', value='page'), Matcher(name='node', op='=~', value='qpu-.*'))
    """
    body = text.strip()
    if body.startswith("{"):
        if not body.endswith("}"):
            raise MatcherError([f"matchers {text!r}: missing closing brace"])
        body = body[1:-1].strip()
    if not body:
        return ()
    parts = _split_outside_quotes(body)
    if parts and not parts[-1].strip():
        parts.pop()  # a trailing comma is allowed
    return tuple(parse_matcher(p) for p in parts)


def parse_duration(text: str | int) -> int:
    """A Prometheus duration (``30s``, ``5m``, ``1h30m``, ``1d``, ``1w``, ``1y``, ``250ms``, ``0``) in ns.

    Raises:
        ConfigError: not a Prometheus duration (units must be given and ordered largest first).

    >>> parse_duration("1h30m") // NS
    5400
    """
    if isinstance(text, int) and not isinstance(text, bool) and text == 0:
        return 0
    m = _DURATION.match(text) if isinstance(text, str) and text else None
    if text == "0":
        return 0
    if m is None or not any(m.groups()):
        raise ConfigError([f"{text!r} is not a duration; use a number and unit, largest unit first: "
                           "30s, 5m, 4h, 1d, 1h30m"])
    return sum(int(g) * u for g, u in zip(m.groups(), _UNITS_NS, strict=True) if g)


class _Loader:
    def __init__(self, source: str, base: Path | None) -> None:
        self.source = source
        self.base = base
        self.problems: list[str] = []
        self.warnings: list[str] = []
        self.receiver_refs: list[tuple[str, str]] = []     # (path, name)
        self.interval_refs: list[tuple[str, str]] = []

    # -- helpers -------------------------------------------------------------------------------------------
    def problem(self, text: str) -> None:
        self.problems.append(text)

    def check_keys(self, node: dict[str, Any], path: str, known: set[str], unsupported: set[str] | frozenset[str] = frozenset(),
                   what: str = "") -> None:
        for key in node:
            if key in known:
                continue
            if key in unsupported:
                self.warnings.append(f"{path}.{key}: an Alertmanager setting qfleet does not implement; ignored")
                continue
            close = difflib.get_close_matches(str(key), sorted(known | unsupported), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; {what or 'known keys'}: {', '.join(sorted(known))}"
            self.problem(f"{path}.{key}: unknown key{hint}")

    def mapping(self, value: Any, path: str) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(f"{path}: expected a mapping, got {value!r}")
            return None
        return value

    def listing(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(f"{path}: expected a list, got {value!r}")
            return []
        return value

    def duration(self, node: dict[str, Any], key: str, path: str, *, nonzero: bool = False) -> int | None:
        if node.get(key) is None:
            return None
        try:
            ns = parse_duration(node[key])
        except ConfigError as e:
            self.problem(f"{path}.{key}: {e.problems[0]}")
            return None
        if nonzero and ns == 0:
            self.problem(f"{path}.{key}: cannot be zero; use a positive duration such as 5m")
            return None
        return ns

    def boolean(self, node: dict[str, Any], key: str, path: str, default: bool) -> bool:
        v = node.get(key, default)
        if v is None:
            return default
        if not isinstance(v, bool):
            self.problem(f"{path}.{key}: expected true or false, got {v!r}")
            return default
        return v

    def string(self, node: dict[str, Any], key: str, path: str) -> str | None:
        v = node.get(key)
        if v is None:
            return None
        if not isinstance(v, str):
            self.problem(f"{path}.{key}: expected a string, got {v!r}")
            return None
        return v

    def names(self, value: Any, path: str) -> tuple[str, ...]:
        out = []
        for i, v in enumerate(self.listing(value, path)):
            if not isinstance(v, str):
                self.problem(f"{path}[{i}]: expected a name, got {v!r}")
            else:
                out.append(v)
        return tuple(out)

    def label_names(self, value: Any, path: str) -> tuple[str, ...]:
        out = self.names(value, path)
        for i, n in enumerate(out):
            if not _LABEL_NAME.match(n) and n != "...":
                self.problem(f"{path}[{i}]: {n!r} is not a valid label name ([A-Za-z_][A-Za-z0-9_]*)")
        return out

    def matchers(self, node: dict[str, Any], path: str, new: str, eq: str, rx: str) -> tuple[Matcher, ...]:
        out: list[Matcher] = []
        for key, op in ((eq, "="), (rx, "=~")):
            if node.get(key) is None:
                continue
            self.warnings.append(f"{path}.{key} is deprecated; write {new}: ['name{op}\"value\"'] instead")
            legacy = self.mapping(node[key], f"{path}.{key}")
            for name, value in sorted((legacy or {}).items()):
                if not isinstance(value, str | int | float) or isinstance(value, bool):
                    self.problem(f"{path}.{key}.{name}: expected a string value, got {value!r}")
                    continue
                if not isinstance(name, str) or not _LABEL_NAME.match(name):
                    self.problem(f"{path}.{key}: {name!r} is not a valid label name")
                    continue
                try:
                    out.append(Matcher(name, op, str(value)))  # type: ignore[arg-type]
                except ValueError as e:
                    self.problem(f"{path}.{key}.{name}: {e}")
        for i, text in enumerate(self.listing(node.get(new), f"{path}.{new}")):
            try:
                out.extend(parse_matchers(text) if isinstance(text, str) else (parse_matcher(text),))
            except MatcherError as e:
                self.problem(f"{path}.{new}[{i}]: {e.problems[0]}")
        return tuple(out)

    def read_file(self, name: Any, path: str) -> str | None:
        if not isinstance(name, str) or not name:
            self.problem(f"{path}: expected a file name, got {name!r}")
            return None
        p = Path(name)
        if not p.is_absolute() and self.base is not None:
            p = self.base / p
        try:
            return p.read_text().strip()
        except OSError as e:
            self.problem(f"{path}: cannot read {str(p)!r} ({e.strerror}); create it or give the value inline")
            return None

    def http_url(self, value: Any, path: str) -> str | None:
        if not isinstance(value, str):
            self.problem(f"{path}: expected an http(s) URL, got {value!r}")
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.problem(f"{path}: {value!r} is not an http(s) URL with a host, e.g. http://127.0.0.1:9101/")
            return None
        return value

    # -- sections ------------------------------------------------------------------------------------------
    def route(self, value: Any, path: str, *, root: bool) -> Route:
        node = self.mapping(value, path)
        if node is None:
            return Route()
        self.check_keys(node, path, _ROUTE_KEYS, _ROUTE_UNSUPPORTED, "route keys")
        receiver = self.string(node, "receiver", path)
        if receiver is not None:
            self.receiver_refs.append((f"{path}.receiver", receiver))
        matchers = self.matchers(node, path, "matchers", "match", "match_re")
        group_by = None
        if node.get("group_by") is not None:
            group_by = self.label_names(node["group_by"], f"{path}.group_by")
            if "..." in group_by and len(group_by) > 1:
                self.problem(f"{path}.group_by: '...' (group by every label) must be the only entry, "
                             f"got {list(group_by)}")
            dups = sorted({n for n in group_by if group_by.count(n) > 1})
            if dups:
                self.problem(f"{path}.group_by: duplicated label names {dups}")
        mute = self.names(node.get("mute_time_intervals"), f"{path}.mute_time_intervals")
        active = self.names(node.get("active_time_intervals"), f"{path}.active_time_intervals")
        for key, names in (("mute_time_intervals", mute), ("active_time_intervals", active)):
            self.interval_refs.extend((f"{path}.{key}", n) for n in names)
        cont = self.boolean(node, "continue", path, False)
        if root:
            if receiver is None:
                self.problem(f"{path}.receiver: the root route must name a default receiver")
            if matchers:
                self.problem(f"{path}: the root route must not have matchers (it receives every alert); "
                             "move them to a child route")
            if mute or active:
                self.problem(f"{path}: the root route must not have mute_time_intervals or "
                             "active_time_intervals; put them on a child route")
            if cont:
                self.problem(f"{path}.continue: the root route cannot have continue: true")
        routes = tuple(self.route(child, f"{path}.routes[{i}]", root=False)
                       for i, child in enumerate(self.listing(node.get("routes"), f"{path}.routes")))
        return Route(
            receiver=receiver,
            matchers=matchers,
            group_by=group_by,
            continue_=cont,
            group_wait_ns=self.duration(node, "group_wait", path),
            group_interval_ns=self.duration(node, "group_interval", path, nonzero=True),
            repeat_interval_ns=self.duration(node, "repeat_interval", path, nonzero=True),
            mute_time_intervals=mute,
            active_time_intervals=active,
            routes=routes,
        )

    def webhook(self, value: Any, path: str) -> tuple[str, bool, int] | None:
        node = self.mapping(value, path)
        if node is None:
            return None
        self.check_keys(node, path, _WEBHOOK_KEYS, _WEBHOOK_UNSUPPORTED, "webhook_config keys")
        url = None
        if ("url" in node) == ("url_file" in node):
            self.problem(f"{path}: give exactly one of url and url_file")
        elif "url" in node:
            url = self.http_url(node["url"], f"{path}.url")
        else:
            text = self.read_file(node["url_file"], f"{path}.url_file")
            url = self.http_url(text, f"{path}.url_file") if text is not None else None
        max_alerts = node.get("max_alerts", 0)
        if isinstance(max_alerts, bool) or not isinstance(max_alerts, int) or max_alerts < 0:
            self.problem(f"{path}.max_alerts: expected an integer >= 0 (0 = all alerts), got {max_alerts!r}")
            max_alerts = 0
        timeout = self.duration(node, "timeout", path)
        if timeout:
            self.warnings.append(f"{path}.timeout: per-receiver timeouts are not applied by qfleet's transport")
        send_resolved = self.boolean(node, "send_resolved", path, True)
        return (url, send_resolved, max_alerts) if url is not None else None

    def pagerduty(self, value: Any, path: str, default_url: str) -> tuple[str, bool, str] | None:
        node = self.mapping(value, path)
        if node is None:
            return None
        self.check_keys(node, path, _PD_KEYS | _PD_V1, _PD_UNSUPPORTED, "pagerduty_config keys")
        has_key = "routing_key" in node or "routing_key_file" in node
        if not has_key and any(k in node for k in _PD_V1):
            self.warnings.append(f"{path}: service_key (Events API v1) is not delivered by qfleet, which speaks "
                                 "Events API v2; use routing_key")
            return None
        for key in sorted(set(node) & _PD_V1):
            self.warnings.append(f"{path}.{key}: Events API v1 key ignored; routing_key is used")
        key = None
        if "routing_key" in node and "routing_key_file" in node:
            self.problem(f"{path}: give only one of routing_key and routing_key_file")
        elif "routing_key" in node:
            key = node["routing_key"]
            if not isinstance(key, str) or not key:
                self.problem(f"{path}.routing_key: expected the integration key string, got {key!r}")
                key = None
        elif "routing_key_file" in node:
            key = self.read_file(node["routing_key_file"], f"{path}.routing_key_file")
        else:
            self.problem(f"{path}: routing_key (or routing_key_file) is required")
        url = self.http_url(node["url"], f"{path}.url") if "url" in node else default_url
        send_resolved = self.boolean(node, "send_resolved", path, True)
        if key is None or url is None:
            return None
        return (key, send_resolved, url)

    def receivers(self, value: Any, default_pd_url: str) -> dict[str, Receiver]:
        out: dict[str, Receiver] = {}
        for i, item in enumerate(self.listing(value, "receivers")):
            path = f"receivers[{i}]"
            node = self.mapping(item, path)
            if node is None:
                continue
            name = self.string(node, "name", path)
            if not name:
                self.problem(f"{path}.name: every receiver needs a name")
                continue
            path = f"receivers[{i}]({name})"
            if name in out:
                self.problem(f"{path}.name: receiver {name!r} is defined twice; names must be unique")
            for key in sorted(set(node) - {"name", "webhook_configs", "pagerduty_configs"}):
                if key in _OTHER_RECEIVERS:
                    self.warnings.append(f"{path}.{key}: not delivered by qfleet (it delivers webhook_configs "
                                         "and pagerduty_configs)")
                else:
                    close = difflib.get_close_matches(key, sorted(_OTHER_RECEIVERS | {"webhook_configs",
                                                                                       "pagerduty_configs"}), n=1)
                    self.problem(f"{path}.{key}: unknown key" + (f"; did you mean {close[0]!r}?" if close else ""))
            hooks = [self.webhook(w, f"{path}.webhook_configs[{j}]")
                     for j, w in enumerate(self.listing(node.get("webhook_configs"), f"{path}.webhook_configs"))]
            pds = [self.pagerduty(p, f"{path}.pagerduty_configs[{j}]", default_pd_url)
                   for j, p in enumerate(self.listing(node.get("pagerduty_configs"), f"{path}.pagerduty_configs"))]
            out[name] = Receiver(name=name, webhooks=tuple(h for h in hooks if h is not None),
                                 pagerduty=tuple(p for p in pds if p is not None))
        return out

    def inhibit_rules(self, value: Any) -> tuple[InhibitRule, ...]:
        out = []
        for i, item in enumerate(self.listing(value, "inhibit_rules")):
            path = f"inhibit_rules[{i}]"
            node = self.mapping(item, path)
            if node is None:
                continue
            self.check_keys(node, path, _INHIBIT_KEYS, set(), "inhibit rule keys")
            source = self.matchers(node, path, "source_matchers", "source_match", "source_match_re")
            target = self.matchers(node, path, "target_matchers", "target_match", "target_match_re")
            equal = self.label_names(node.get("equal"), f"{path}.equal")
            if "..." in equal:
                self.problem(f"{path}.equal: '...' is not a label name")
            name = self.string(node, "name", path) or ""
            out.append(InhibitRule(source_matchers=source, target_matchers=target, equal=equal, name=name))
        return tuple(out)

    def time_intervals(self, doc: dict[str, Any]) -> dict[str, tuple[TimeInterval, ...]]:
        out: dict[str, tuple[TimeInterval, ...]] = {}
        for section in ("time_intervals", "mute_time_intervals"):
            items = self.listing(doc.get(section), section)
            if section == "mute_time_intervals" and items:
                self.warnings.append("mute_time_intervals (top level) is deprecated; rename it time_intervals")
            for i, item in enumerate(items):
                path = f"{section}[{i}]"
                node = self.mapping(item, path)
                if node is None:
                    continue
                self.check_keys(node, path, {"name", "time_intervals"}, set(), "time interval keys")
                name = self.string(node, "name", path)
                if not name:
                    self.problem(f"{path}.name: every time interval needs a name")
                    continue
                if name in out:
                    self.problem(f"{path}.name: time interval {name!r} is defined twice; names must be unique")
                intervals, problems, warnings = parse_time_intervals(node.get("time_intervals") or [],
                                                                     f"{path}({name}).time_intervals")
                self.problems.extend(problems)
                self.warnings.extend(warnings)
                out[name] = intervals
        return out


def config_from_dict(doc: Any, *, source: str = "<config>") -> tuple[AlertingConfig, list[str]]:
    """Validate a parsed ``alertmanager.yml`` document and build its :class:`AlertingConfig`.

    ``source`` names the document in messages; when it is a file path, ``url_file`` / ``routing_key_file``
    resolve relative to its directory.

    Returns:
        ``(config, warnings)``: warnings name the Alertmanager settings qfleet knows but does not implement.

    Raises:
        ConfigError: listing every problem (typos, undefined receivers or intervals, bad durations, regexes).

    >>> cfg, warnings = config_from_dict({"route": {"receiver": "a"}, "receivers": [{"name": "a"}]})
    >>> cfg.route.receiver, warnings
    ('a', [])
    """
    base = Path(source).parent if source and not source.startswith("<") else None
    ld = _Loader(source, base)
    if not isinstance(doc, dict):
        raise ConfigError([f"the document must be a mapping with route and receivers, got {type(doc).__name__}"],
                          source=source)
    ld.check_keys(doc, "", _TOP_KEYS, set(), "top-level keys")
    ld.problems = [p[1:] if p.startswith(".") else p for p in ld.problems]
    for key in ("templates", "tracing"):
        if doc.get(key):
            ld.warnings.append(f"{key}: not implemented by qfleet (payloads are built in code); ignored")

    resolve_timeout = 300 * NS
    default_pd_url = PAGERDUTY_URL
    glob = ld.mapping(doc.get("global"), "global")
    if glob:
        ld.check_keys(glob, "global", {"resolve_timeout", "pagerduty_url"}, _GLOBAL_UNSUPPORTED, "global keys")
        rt = ld.duration(glob, "resolve_timeout", "global", nonzero=True)
        resolve_timeout = rt if rt is not None else resolve_timeout
        if "pagerduty_url" in glob:
            default_pd_url = ld.http_url(glob["pagerduty_url"], "global.pagerduty_url") or PAGERDUTY_URL

    if doc.get("route") is None:
        ld.problem("route: required; the root route must name a default receiver")
        route = Route()
    else:
        route = ld.route(doc["route"], "route", root=True)
    receivers = ld.receivers(doc.get("receivers"), default_pd_url)
    inhibit = ld.inhibit_rules(doc.get("inhibit_rules"))
    intervals = ld.time_intervals(doc)

    escalation_receiver = None
    escalate_after = None
    q = ld.mapping(doc.get("qfleet"), "qfleet")
    if q:
        ld.check_keys(q, "qfleet", _QFLEET_KEYS, set(), "qfleet keys")
        escalation_receiver = ld.string(q, "escalation_receiver", "qfleet")
        escalate_after = ld.duration(q, "escalate_after", "qfleet", nonzero=True)
        if escalation_receiver is not None:
            ld.receiver_refs.append(("qfleet.escalation_receiver", escalation_receiver))
        if (escalation_receiver is None) != (q.get("escalate_after") is None):
            ld.problem("qfleet: escalation_receiver and escalate_after go together; give both or neither")

    for path, name in ld.receiver_refs:
        if name not in receivers:
            ld.problem(f"{path}: receiver {name!r} is not defined; add it under receivers "
                       f"(defined: {sorted(receivers)})")
    for path, name in ld.interval_refs:
        if name not in intervals:
            ld.problem(f"{path}: time interval {name!r} is not defined; add it under time_intervals "
                       f"(defined: {sorted(intervals)})")
    if ld.problems:
        raise ConfigError(ld.problems, source=source)
    config = AlertingConfig(route=route, receivers=receivers, inhibit_rules=inhibit, time_intervals=intervals,
                            resolve_timeout_ns=resolve_timeout, escalation_receiver=escalation_receiver,
                            escalate_after_ns=escalate_after)
    return config, ld.warnings


def read_config(path: str | Path) -> tuple[AlertingConfig, list[str]]:
    """Load ``path`` (YAML); returns ``(config, warnings)``.

    Raises:
        ConfigError: the file is unreadable, not YAML, or has problems (all listed).
    """
    p = Path(path)
    try:
        doc = yaml.safe_load(p.read_text())
    except OSError as e:
        raise ConfigError([f"cannot read the file ({e.strerror})"], source=str(p)) from e
    except yaml.YAMLError as e:
        raise ConfigError([f"not valid YAML: {e}"], source=str(p)) from e
    return config_from_dict(doc, source=str(p))


def load_config(path: str | Path) -> AlertingConfig:
    """Load an ``alertmanager.yml`` (the subset above); warnings are logged (use :func:`read_config` to get them).

    Raises:
        ConfigError: listing every problem with its key path.
    """
    config, warnings = read_config(path)
    for w in warnings:
        logger.warning("%s: %s", path, w)
    return config
