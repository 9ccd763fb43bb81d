"""Loading the ``alertmanager.yml`` subset qfleet implements (sre.md §17-19), plus one ``qfleet:`` key.

A file Alertmanager accepts loads here unchanged: the parts qfleet implements become :class:`AlertingConfig`
values, the parts it knows but does not implement (e-mail/Slack/... receivers, ``templates``, most ``global``
keys, ``http_config``, route ``labels``) come back as warnings, and anything else (a typo) is a problem. Every
problem is collected (a :class:`qfleet.problems.Problem`: key path, what is wrong, the fix), then
:class:`ConfigError` lists them all::

    global: {resolve_timeout: 5m}                # unrefreshed alerts without an end resolve after it;
                                                 # pagerduty_url is used, other global keys: warnings
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
    alerting:                                    # optional: also send the alerts to existing Alertmanagers,
      alertmanagers:                             # as Prometheus' alerting section does (qfleet.alerts.am_push)
        - static_configs: [{targets: ['127.0.0.1:9093']}]
          scheme: http                           # default http; path_prefix default /; timeout default 10s
          authorization: {credentials_file: am.token}    # optional bearer token, read from a file
      resend_delay: 1m                           # Prometheus' --rules.alert.resend-delay (default 1m)
      route_locally: true                        # false: only send, qfleet's own routing stays idle

The deprecated ``match`` / ``match_re`` (routes) and ``source_match(_re)`` / ``target_match(_re)`` (inhibit
rules) are converted to matchers with a warning; the deprecated top-level ``mute_time_intervals`` joins
``time_intervals``. ``url_file`` and ``routing_key_file`` are read at load time (relative paths from the config
file's directory). ``pagerduty_configs`` honour ``severity``, ``class``, ``component`` and ``group``, templated
with the subset :func:`qfleet.alerts.payloads.check_template` accepts.

The ``alerting:`` section (modelled on Prometheus' own) lists the Alertmanagers qfleet sends its alerts to
(:class:`~qfleet.alerts.model.PushConfig`, sent by :mod:`qfleet.alerts.am_push`).

Why one module: every section is read by the same loader (its key, type, file and URL checks), so that all the
problems of a file, whatever their section, are gathered into one :class:`ConfigError`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from qfleet.alerts.fields import LABEL_NAME_RULE, duration_at, is_label_name
from qfleet.alerts.intervals import parse_time_intervals
from qfleet.alerts.matchers import MatcherError, matcher, parse_matcher, parse_matchers
from qfleet.alerts.model import (
    DEFAULT_RESEND_DELAY_NS,
    DEFAULT_RESOLVE_TIMEOUT_NS,
    AlertingConfig,
    AlertmanagerTarget,
    InhibitRule,
    Matcher,
    PagerDutyFields,
    PushConfig,
    Receiver,
    Route,
    TimeInterval,
)
from qfleet.alerts.payloads import check_template
from qfleet.problems import Problem, Problems, ProblemsError, did_you_mean, read_yaml
from qfleet.units import NS

# MatcherError, parse_matcher and parse_matchers live in qfleet.alerts.matchers; they stay importable from here.
__all__ = [
    "PAGERDUTY_URL",
    "ConfigError",
    "MatcherError",
    "config_from_dict",
    "load_config",
    "parse_matcher",
    "parse_matchers",
    "read_config",
]

logger = logging.getLogger(__name__)

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"

_TOP_KEYS = {"global", "route", "receivers", "inhibit_rules", "time_intervals", "mute_time_intervals",
             "templates", "tracing", "qfleet", "alerting"}
_ROUTE_KEYS = {"receiver", "group_by", "continue", "matchers", "match", "match_re", "group_wait",
               "group_interval", "repeat_interval", "mute_time_intervals", "active_time_intervals", "routes"}
_ROUTE_UNSUPPORTED = {"labels"}
_GLOBAL_KEYS = {"resolve_timeout", "pagerduty_url"}
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
_DELIVERED = {"webhook_configs", "pagerduty_configs"}
_OTHER_RECEIVERS = {
    "email_configs", "slack_configs", "opsgenie_configs", "pushover_configs", "sns_configs", "telegram_configs",
    "victorops_configs", "webex_configs", "wechat_configs", "discord_configs", "msteams_configs",
    "msteamsv2_configs", "jira_configs", "rocketchat_configs", "incidentio_configs", "mattermost_configs",
}
_WEBHOOK_KEYS = {"url", "url_file", "send_resolved", "max_alerts", "timeout"}
_WEBHOOK_UNSUPPORTED = {"http_config", "payload"}
_PD_KEYS = {"routing_key", "routing_key_file", "url", "send_resolved", "severity", "class", "component", "group"}
_PD_UNSUPPORTED = {"http_config", "client", "client_url", "description", "details", "images", "links", "source",
                   "timeout"}
_PD_V1 = {"service_key", "service_key_file"}
_INHIBIT_KEYS = {"name", "source_matchers", "target_matchers", "equal", "source_match", "source_match_re",
                 "target_match", "target_match_re"}
_INTERVAL_KEYS = {"name", "time_intervals"}
_QFLEET_KEYS = {"escalation_receiver", "escalate_after"}
_ALERTING_KEYS = {"alertmanagers", "resend_delay", "route_locally"}
_ALERTING_UNSUPPORTED = {"alert_relabel_configs"}
_AM_KEYS = {"static_configs", "scheme", "path_prefix", "timeout", "api_version", "authorization"}
_AM_UNSUPPORTED = {"relabel_configs", "alert_relabel_configs", "tls_config", "proxy_url", "no_proxy",
                   "proxy_from_environment", "proxy_connect_header", "follow_redirects", "enable_http2",
                   "basic_auth", "oauth2", "sigv4", "dns_sd_configs", "file_sd_configs", "consul_sd_configs",
                   "kubernetes_sd_configs", "http_sd_configs", "ec2_sd_configs", "azure_sd_configs",
                   "gce_sd_configs"}
_DEFAULT_AM_TIMEOUT_NS = 10 * NS     # Prometheus' alertmanager_config timeout default


class ConfigError(ProblemsError):
    """An alerting configuration with problems: ``problems`` holds each one (key path, what is wrong, the fix),
    ``warnings`` the Alertmanager settings qfleet knows but ignores.

    Examples:
        >>> print(ConfigError([Problem("route.receiver", "required", "name the default receiver")], source="am.yml"))
        am.yml: route.receiver: required (fix: name the default receiver)
    """


def _at(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


class _Loader:
    """Reads one document's sections, recording every problem and warning in ``found``; names a route or the
    ``qfleet`` key refers to are checked once every section is read."""

    def __init__(self, source: str) -> None:
        self.found = Problems(source=source)
        self.base = Path(source).parent if source and not source.startswith("<") else None
        self.receiver_refs: list[tuple[str, str]] = []     # (path, receiver name)
        self.interval_refs: list[tuple[str, str]] = []     # (path, time interval name)

    # -- values ------------------------------------------------------------------------------------------------
    def problem(self, path: str, message: str, fix: str = "", code: str = "") -> None:
        self.found.add(path, message, fix, code)

    def check_keys(self, node: dict[str, Any], path: str, known: set[str], unsupported: set[str] | None = None,
                   what: str = "known keys") -> None:
        unsupported = unsupported or set()
        for key in node:
            if key in known:
                continue
            if key in unsupported:
                self.found.warn(_at(path, key), "an Alertmanager setting qfleet does not implement; ignored",
                                code="unsupported")
                continue
            self.problem(_at(path, key), "unknown key",
                         f"{did_you_mean(str(key), sorted(known | unsupported))}{what}: {', '.join(sorted(known))}",
                         "unknown_key")

    def mapping(self, value: Any, path: str) -> dict[str, Any] | None:
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.problem(path, f"expected a mapping, got {value!r}", "write key: value pairs", "bad_type")
            return None
        return value

    def listing(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            self.problem(path, f"expected a list, got {value!r}", "write a YAML list, e.g. [a, b]", "bad_type")
            return []
        return value

    def duration(self, node: dict[str, Any], key: str, path: str, *, positive: bool = False) -> int | None:
        return None if node.get(key) is None else duration_at(self.found, _at(path, key), node[key],
                                                             positive=positive)

    def boolean(self, node: dict[str, Any], key: str, path: str, default: bool) -> bool:
        v = node.get(key, default)
        if v is None:
            return default
        if not isinstance(v, bool):
            self.problem(_at(path, key), f"expected true or false, got {v!r}", "write true or false", "bad_type")
            return default
        return v

    def string(self, node: dict[str, Any], key: str, path: str) -> str | None:
        v = node.get(key)
        if v is None:
            return None
        if not isinstance(v, str):
            self.problem(_at(path, key), f"expected a string, got {v!r}", "quote the value", "bad_type")
            return None
        return v

    def names(self, value: Any, path: str) -> tuple[str, ...]:
        out = []
        for i, v in enumerate(self.listing(value, path)):
            if not isinstance(v, str):
                self.problem(f"{path}[{i}]", f"expected a name, got {v!r}", "quote the name", "bad_type")
            else:
                out.append(v)
        return tuple(out)

    def label_names(self, value: Any, path: str) -> tuple[str, ...]:
        out = self.names(value, path)
        for i, n in enumerate(out):
            if not is_label_name(n) and n != "...":
                self.problem(f"{path}[{i}]", f"{n!r} is not a valid label name", f"write {LABEL_NAME_RULE}",
                             "bad_label_name")
        return out

    def legacy_matchers(self, node: dict[str, Any], path: str, new: str, key: str,
                        op: Literal["=", "=~"]) -> list[Matcher]:
        """``match: {name: value}`` / ``match_re`` (deprecated): matchers, with a warning."""
        self.found.warn(_at(path, key), "deprecated Alertmanager syntax", f"write {new}: ['name{op}\"value\"']",
                        "deprecated")
        out = []
        for name, value in sorted((self.mapping(node[key], _at(path, key)) or {}).items(), key=str):
            where = _at(_at(path, key), name)
            if not isinstance(value, str | int | float) or isinstance(value, bool):
                self.problem(where, f"expected a string value, got {value!r}", "quote the value", "bad_type")
            elif not is_label_name(name):
                self.problem(where, f"{name!r} is not a valid label name", f"write {LABEL_NAME_RULE}",
                             "bad_label_name")
            else:
                try:
                    out.append(matcher(name, op, str(value)))
                except MatcherError as e:
                    self.found.items.extend(Problem(where, p.message, p.fix, p.code) for p in e.problems)
        return out

    def matchers(self, node: dict[str, Any], path: str, new: str, eq: str, rx: str) -> tuple[Matcher, ...]:
        out: list[Matcher] = []
        if node.get(eq) is not None:
            out.extend(self.legacy_matchers(node, path, new, eq, "="))
        if node.get(rx) is not None:
            out.extend(self.legacy_matchers(node, path, new, rx, "=~"))
        for i, text in enumerate(self.listing(node.get(new), _at(path, new))):
            try:
                out.extend(parse_matchers(text) if isinstance(text, str) else (parse_matcher(text),))
            except MatcherError as e:
                self.found.items.extend(Problem(f"{_at(path, new)}[{i}]", p.message, p.fix, p.code)
                                        for p in e.problems)
        return tuple(out)

    def read_file(self, name: Any, path: str) -> str | None:
        if not isinstance(name, str) or not name:
            self.problem(path, f"expected a file name, got {name!r}", "name a file holding the value", "bad_type")
            return None
        p = Path(name)
        if not p.is_absolute() and self.base is not None:
            p = self.base / p
        try:
            return p.read_text().strip()
        except OSError as e:
            self.problem(path, f"cannot read {str(p)!r} ({e.strerror})", "create it or give the value inline",
                         "unreadable")
            return None

    def http_url(self, value: Any, path: str) -> str | None:
        parts = urlsplit(value) if isinstance(value, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            self.problem(path, f"{value!r} is not an http(s) URL with a host", "write e.g. http://127.0.0.1:9101/",
                         "bad_url")
            return None
        return str(value)

    # -- sections ----------------------------------------------------------------------------------------------
    def global_section(self, value: Any) -> tuple[int, str]:
        """``(resolve_timeout_ns, default PagerDuty URL)``."""
        node = self.mapping(value, "global") or {}
        self.check_keys(node, "global", _GLOBAL_KEYS, _GLOBAL_UNSUPPORTED, "global keys")
        resolve_timeout = self.duration(node, "resolve_timeout", "global", positive=True)
        pd_url = self.http_url(node["pagerduty_url"], "global.pagerduty_url") if "pagerduty_url" in node else None
        return resolve_timeout or DEFAULT_RESOLVE_TIMEOUT_NS, pd_url or PAGERDUTY_URL

    def root_route(self, value: Any) -> Route:
        if value is None:
            self.problem("route", "required", "add a root route naming a default receiver, e.g. route: "
                         "{receiver: tickets}", "required")
            return Route()
        route = self.route(value, "route")
        if not isinstance(value, dict):
            return route  # already reported: not a mapping
        if route.receiver is None:
            self.problem("route.receiver", "the root route must name a default receiver",
                         "add receiver: <name> to route", "required")
        if route.matchers:
            self.problem("route", "the root route must not have matchers (it receives every alert)",
                         "move them to a child route", "root_route")
        if route.mute_time_intervals or route.active_time_intervals:
            self.problem("route", "the root route must not have mute_time_intervals or active_time_intervals",
                         "put them on a child route", "root_route")
        if route.continue_:
            self.problem("route.continue", "the root route cannot have continue: true", "remove it", "root_route")
        return route

    def group_by(self, node: dict[str, Any], path: str) -> tuple[str, ...] | None:
        if node.get("group_by") is None:
            return None
        group_by = self.label_names(node["group_by"], _at(path, "group_by"))
        if "..." in group_by and len(group_by) > 1:
            self.problem(_at(path, "group_by"), f"'...' (group by every label) must be the only entry, got "
                         f"{list(group_by)}", "write group_by: ['...'] alone", "bad_group_by")
        dups = sorted({n for n in group_by if group_by.count(n) > 1})
        if dups:
            self.problem(_at(path, "group_by"), f"duplicated label names {dups}", "list each label once",
                         "bad_group_by")
        return group_by

    def route(self, value: Any, path: str) -> Route:
        node = self.mapping(value, path)
        if node is None:
            return Route()
        self.check_keys(node, path, _ROUTE_KEYS, _ROUTE_UNSUPPORTED, "route keys")
        receiver = self.string(node, "receiver", path)
        if receiver is not None:
            self.receiver_refs.append((_at(path, "receiver"), receiver))
        matchers = self.matchers(node, path, "matchers", "match", "match_re")
        group_by = self.group_by(node, path)
        timing = {key: self.names(node.get(key), _at(path, key))
                  for key in ("mute_time_intervals", "active_time_intervals")}
        for key, names in timing.items():
            self.interval_refs.extend((_at(path, key), n) for n in names)
        cont = self.boolean(node, "continue", path, False)
        routes = tuple(self.route(child, f"{path}.routes[{i}]")
                       for i, child in enumerate(self.listing(node.get("routes"), _at(path, "routes"))))
        return Route(
            receiver=receiver, matchers=matchers, group_by=group_by, continue_=cont,
            group_wait_ns=self.duration(node, "group_wait", path),
            group_interval_ns=self.duration(node, "group_interval", path, positive=True),
            repeat_interval_ns=self.duration(node, "repeat_interval", path, positive=True),
            mute_time_intervals=timing["mute_time_intervals"], active_time_intervals=timing["active_time_intervals"],
            routes=routes,
        )

    def webhook(self, value: Any, path: str) -> tuple[str, bool, int] | None:
        node = self.mapping(value, path)
        if node is None:
            return None
        self.check_keys(node, path, _WEBHOOK_KEYS, _WEBHOOK_UNSUPPORTED, "webhook_config keys")
        url = None
        if ("url" in node) == ("url_file" in node):
            self.problem(path, "give exactly one of url and url_file", "add url: http://host:port/path", "required")
        elif "url" in node:
            url = self.http_url(node["url"], _at(path, "url"))
        else:
            text = self.read_file(node["url_file"], _at(path, "url_file"))
            url = self.http_url(text, _at(path, "url_file")) if text is not None else None
        max_alerts = node.get("max_alerts", 0)
        if isinstance(max_alerts, bool) or not isinstance(max_alerts, int) or max_alerts < 0:
            self.problem(_at(path, "max_alerts"), f"expected an integer >= 0, got {max_alerts!r}",
                         "write 0 for all alerts or a positive limit", "bad_type")
            max_alerts = 0
        if self.duration(node, "timeout", path):
            self.found.warn(_at(path, "timeout"), "per-receiver timeouts are not applied by qfleet's transport",
                            code="unsupported")
        send_resolved = self.boolean(node, "send_resolved", path, True)
        return (url, send_resolved, max_alerts) if url is not None else None

    def routing_key(self, node: dict[str, Any], path: str) -> str | None:
        if "routing_key" in node and "routing_key_file" in node:
            self.problem(path, "give only one of routing_key and routing_key_file", "remove one", "conflict")
            return None
        if "routing_key_file" in node:
            return self.read_file(node["routing_key_file"], _at(path, "routing_key_file"))
        if "routing_key" not in node:
            self.problem(path, "routing_key (or routing_key_file) is required",
                         "add the 32-character integration key as routing_key", "required")
            return None
        key = node["routing_key"]
        if not isinstance(key, str) or not key:
            self.problem(_at(path, "routing_key"), f"expected the integration key string, got {key!r}",
                         "quote the 32-character integration key", "bad_type")
            return None
        return key

    def pagerduty(self, value: Any, path: str,
                  default_url: str) -> tuple[str, bool, str, PagerDutyFields] | None:
        node = self.mapping(value, path)
        if node is None:
            return None
        self.check_keys(node, path, _PD_KEYS | _PD_V1, _PD_UNSUPPORTED, "pagerduty_config keys")
        if "routing_key" not in node and "routing_key_file" not in node and any(k in node for k in _PD_V1):
            self.found.warn(path, "service_key (Events API v1) is not delivered by qfleet, which speaks Events API "
                            "v2", "use routing_key", "unsupported")
            return None
        for v1 in sorted(set(node) & _PD_V1):
            self.found.warn(_at(path, v1), "Events API v1 key ignored; routing_key is used", code="unsupported")
        key = self.routing_key(node, path)
        url = self.http_url(node["url"], _at(path, "url")) if "url" in node else default_url
        send_resolved = self.boolean(node, "send_resolved", path, True)
        texts = {k: self.template(node, k, path) for k in ("severity", "class", "component", "group")}
        if key is None or url is None:
            return None
        return key, send_resolved, url, PagerDutyFields(severity=texts["severity"], class_=texts["class"],
                                                        component=texts["component"], group=texts["group"])

    def template(self, node: dict[str, Any], key: str, path: str) -> str:
        """A templated string field ('' when absent), checked against the template subset qfleet renders."""
        text = self.string(node, key, path) or ""
        problem = check_template(text)
        if problem:
            message, _, fix = problem.partition("; ")
            self.problem(_at(path, key), message, fix, "bad_template")
            return ""
        return text

    def receiver(self, item: Any, path: str, default_pd_url: str) -> Receiver | None:
        node = self.mapping(item, path)
        if node is None:
            return None
        name = self.string(node, "name", path)
        if not name:
            self.problem(_at(path, "name"), "every receiver needs a name", "add name: <receiver name>", "required")
            return None
        path = f"{path}({name})"
        for key in sorted(set(node) - {"name"} - _DELIVERED):
            if key in _OTHER_RECEIVERS:
                self.found.warn(_at(path, key), "not delivered by qfleet (it delivers webhook_configs and "
                                "pagerduty_configs)", code="unsupported")
            else:
                self.problem(_at(path, key), "unknown key", f"{did_you_mean(key, sorted(_OTHER_RECEIVERS | _DELIVERED))}"
                             "qfleet delivers webhook_configs and pagerduty_configs", "unknown_key")
        hooks = [self.webhook(w, f"{path}.webhook_configs[{j}]")
                 for j, w in enumerate(self.listing(node.get("webhook_configs"), _at(path, "webhook_configs")))]
        pds = [self.pagerduty(p, f"{path}.pagerduty_configs[{j}]", default_pd_url)
               for j, p in enumerate(self.listing(node.get("pagerduty_configs"), _at(path, "pagerduty_configs")))]
        return Receiver(name=name, webhooks=tuple(h for h in hooks if h is not None),
                        pagerduty=tuple(p for p in pds if p is not None))

    def receivers(self, value: Any, default_pd_url: str) -> dict[str, Receiver]:
        out: dict[str, Receiver] = {}
        for i, item in enumerate(self.listing(value, "receivers")):
            receiver = self.receiver(item, f"receivers[{i}]", default_pd_url)
            if receiver is None:
                continue
            if receiver.name in out:
                self.problem(f"receivers[{i}]({receiver.name}).name", f"receiver {receiver.name!r} is defined twice",
                             "give every receiver its own name", "duplicate")
            out[receiver.name] = receiver
        return out

    def inhibit_rules(self, value: Any) -> tuple[InhibitRule, ...]:
        out = []
        for i, item in enumerate(self.listing(value, "inhibit_rules")):
            path = f"inhibit_rules[{i}]"
            node = self.mapping(item, path)
            if node is None:
                continue
            self.check_keys(node, path, _INHIBIT_KEYS, what="inhibit rule keys")
            source = self.matchers(node, path, "source_matchers", "source_match", "source_match_re")
            target = self.matchers(node, path, "target_matchers", "target_match", "target_match_re")
            equal = self.label_names(node.get("equal"), _at(path, "equal"))
            if "..." in equal:
                self.problem(_at(path, "equal"), "'...' is not a label name", "list the labels to compare",
                             "bad_label_name")
            name = self.string(node, "name", path) or ""
            out.append(InhibitRule(source_matchers=source, target_matchers=target, equal=equal, name=name))
        return tuple(out)

    def time_intervals(self, doc: dict[str, Any]) -> dict[str, tuple[TimeInterval, ...]]:
        out: dict[str, tuple[TimeInterval, ...]] = {}
        for section in ("time_intervals", "mute_time_intervals"):
            items = self.listing(doc.get(section), section)
            if section == "mute_time_intervals" and items:
                self.found.warn(section, "the top-level mute_time_intervals is deprecated",
                                "rename it time_intervals", "deprecated")
            for i, item in enumerate(items):
                path = f"{section}[{i}]"
                node = self.mapping(item, path)
                if node is None:
                    continue
                self.check_keys(node, path, _INTERVAL_KEYS, what="time interval keys")
                name = self.string(node, "name", path)
                if not name:
                    self.problem(_at(path, "name"), "every time interval needs a name", "add name: <interval name>",
                                 "required")
                    continue
                if name in out:
                    self.problem(_at(path, "name"), f"time interval {name!r} is defined twice",
                                 "give every time interval its own name", "duplicate")
                intervals, problems, warnings = parse_time_intervals(node.get("time_intervals") or [],
                                                                     f"{path}({name}).time_intervals")
                self.found.items.extend(problems)
                self.found.warnings.extend(warnings)
                out[name] = intervals
        return out

    def qfleet_section(self, value: Any) -> tuple[str | None, int | None]:
        """``(escalation_receiver, escalate_after_ns)`` from the ``qfleet:`` key (both or neither)."""
        node = self.mapping(value, "qfleet") or {}
        self.check_keys(node, "qfleet", _QFLEET_KEYS, what="qfleet keys")
        receiver = self.string(node, "escalation_receiver", "qfleet")
        after = self.duration(node, "escalate_after", "qfleet", positive=True)
        if receiver is not None:
            self.receiver_refs.append(("qfleet.escalation_receiver", receiver))
        if (receiver is None) != (node.get("escalate_after") is None):
            self.problem("qfleet", "escalation_receiver and escalate_after go together",
                         "give both or neither", "conflict")
        return (receiver, after) if receiver is not None and after is not None else (None, None)

    def alerting_section(self, value: Any) -> PushConfig | None:
        """The ``alerting:`` section (Prometheus' shape): the Alertmanagers qfleet sends its alerts to."""
        if value is None:
            return None
        node = self.mapping(value, "alerting") or {}
        self.check_keys(node, "alerting", _ALERTING_KEYS, _ALERTING_UNSUPPORTED, "alerting keys")
        targets = [t for i, item in enumerate(self.listing(node.get("alertmanagers"), "alerting.alertmanagers"))
                   for t in self.alertmanager(item, f"alerting.alertmanagers[{i}]")]
        resend = self.duration(node, "resend_delay", "alerting", positive=True) or DEFAULT_RESEND_DELAY_NS
        local = self.boolean(node, "route_locally", "alerting", True)
        if not targets:
            self.problem("alerting.alertmanagers", "no Alertmanager to send to",
                         "add - static_configs: [{targets: ['host:9093']}], or remove the alerting section",
                         "required")
            return None
        return PushConfig(targets=tuple(targets), resend_delay_ns=resend, route_locally=local)

    def alertmanager(self, value: Any, path: str) -> list[AlertmanagerTarget]:
        """One ``alertmanagers`` entry: a target per ``static_configs[].targets`` host:port."""
        node = self.mapping(value, path)
        if node is None:
            return []
        self.check_keys(node, path, _AM_KEYS, _AM_UNSUPPORTED, "alertmanager config keys")
        scheme = node.get("scheme", "http")
        if scheme not in ("http", "https"):
            self.problem(_at(path, "scheme"), f"expected http or https, got {scheme!r}", "write scheme: http",
                         "bad_value")
            return []
        if node.get("api_version", "v2") != "v2":
            self.problem(_at(path, "api_version"), f"{node['api_version']!r} is not supported (Alertmanager 0.27 "
                         "removed API v1)", "write api_version: v2 or leave it out", "bad_value")
        prefix = self.string(node, "path_prefix", path) or "/"
        timeout_ns = self.duration(node, "timeout", path, positive=True) or _DEFAULT_AM_TIMEOUT_NS
        token = self.bearer(node.get("authorization"), _at(path, "authorization"))
        out = []
        for i, sc in enumerate(self.listing(node.get("static_configs"), _at(path, "static_configs"))):
            where = f"{_at(path, 'static_configs')}[{i}]"
            sc_node = self.mapping(sc, where) or {}
            self.check_keys(sc_node, where, {"targets"}, {"labels"}, "static_config keys")
            for j, target in enumerate(self.names(sc_node.get("targets"), _at(where, "targets"))):
                url = self.http_url(f"{scheme}://{target}", f"{_at(where, 'targets')}[{j}]")
                if url is not None and not urlsplit(url).path:
                    base = "/".join(p for p in (url, prefix.strip("/")) if p)
                    out.append(AlertmanagerTarget(url=f"{base}/api/v2/alerts", timeout_s=timeout_ns / NS,
                                                  bearer_token=token))
                elif url is not None:
                    self.problem(f"{_at(where, 'targets')}[{j}]", f"{target!r} is not host:port",
                                 "write e.g. 127.0.0.1:9093 (a path goes in path_prefix)", "bad_url")
        if not out:
            self.problem(_at(path, "static_configs"), "no targets", "add static_configs: [{targets: ['host:9093']}]",
                         "required")
        return out

    def bearer(self, value: Any, path: str) -> str:
        """The bearer token of an ``authorization`` block, read from ``credentials_file`` ('' without one)."""
        if value is None:
            return ""
        node = self.mapping(value, path) or {}
        self.check_keys(node, path, {"type", "credentials", "credentials_file"}, what="authorization keys")
        if "credentials" in node:
            self.problem(_at(path, "credentials"), "inline secrets are not accepted",
                         "put the token in a file (chmod 600) and name it as credentials_file", "inline_secret")
        if str(node.get("type", "Bearer")).lower() != "bearer":
            self.problem(_at(path, "type"), f"{node['type']!r} is not supported", "write type: Bearer",
                         "bad_value")
        if "credentials_file" not in node:
            if "credentials" not in node:
                self.problem(path, "credentials_file is required", "name the file holding the token",
                             "required")
            return ""
        return self.read_file(node["credentials_file"], _at(path, "credentials_file")) or ""

    def check_references(self, receivers: dict[str, Receiver], intervals: dict[str, Any]) -> None:
        for path, name in self.receiver_refs:
            if name not in receivers:
                self.problem(path, f"receiver {name!r} is not defined",
                             f"add it under receivers (defined: {sorted(receivers)})", "undefined_receiver")
        for path, name in self.interval_refs:
            if name not in intervals:
                self.problem(path, f"time interval {name!r} is not defined",
                             f"add it under time_intervals (defined: {sorted(intervals)})", "undefined_interval")


def config_from_dict(doc: Any, *, source: str = "<config>") -> tuple[AlertingConfig, list[Problem]]:
    """Validate a parsed ``alertmanager.yml`` document and build its :class:`AlertingConfig`.

    Args:
        doc: the parsed YAML document.
        source: names the document in messages; when it is a file path, ``url_file`` / ``routing_key_file``
            resolve relative to its directory.

    Returns:
        ``(config, warnings)``: warnings name the Alertmanager settings qfleet knows but does not implement.

    Raises:
        ConfigError: listing every problem (typos, undefined receivers or intervals, bad durations, regexes).

    Examples:
        >>> from qfleet.units import NS
        >>> cfg, warnings = config_from_dict({"route": {"receiver": "a"}, "receivers": [{"name": "a"}]})
        >>> cfg.route.receiver, cfg.resolve_timeout_ns // NS, warnings
        ('a', 300, [])
    """
    if not isinstance(doc, dict):
        raise ConfigError([Problem("", f"the document must be a mapping with route and receivers, got "
                                   f"{type(doc).__name__}", "start the file with route: and receivers:",
                                   "bad_type")], source=source)
    ld = _Loader(source)
    ld.check_keys(doc, "", _TOP_KEYS, what="top-level keys")
    for key in ("templates", "tracing"):
        if doc.get(key):
            ld.found.warn(key, "not implemented by qfleet (payloads are built in code); ignored", code="unsupported")
    resolve_timeout, default_pd_url = ld.global_section(doc.get("global"))
    route = ld.root_route(doc.get("route"))
    receivers = ld.receivers(doc.get("receivers"), default_pd_url)
    inhibit = ld.inhibit_rules(doc.get("inhibit_rules"))
    intervals = ld.time_intervals(doc)
    escalation_receiver, escalate_after = ld.qfleet_section(doc.get("qfleet"))
    push = ld.alerting_section(doc.get("alerting"))
    ld.check_references(receivers, intervals)
    ld.found.raise_if_any(ConfigError)
    config = AlertingConfig(route=route, receivers=receivers, inhibit_rules=inhibit, time_intervals=intervals,
                            resolve_timeout_ns=resolve_timeout, escalation_receiver=escalation_receiver,
                            escalate_after_ns=escalate_after, push=push)
    return config, list(ld.found.warnings)


def read_config(path: str | Path) -> tuple[AlertingConfig, list[Problem]]:
    """Load ``path`` (YAML); returns ``(config, warnings)``.

    Raises:
        ConfigError: the file is unreadable, not YAML, or has problems (all listed).
    """
    p = Path(path)
    return config_from_dict(read_yaml(p, what="alerting config", error=ConfigError), source=str(p))


def load_config(path: str | Path) -> AlertingConfig:
    """Load an ``alertmanager.yml`` (the subset above); warnings are logged (use :func:`read_config` to get them).

    Raises:
        ConfigError: listing every problem with its key path.
    """
    config, warnings = read_config(path)
    for w in warnings:
        logger.warning("%s: %s", path, w)
    return config
