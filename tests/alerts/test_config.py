"""Loading alertmanager.yml (sre.md §17-19): matcher syntax, durations, every problem listed, amtool parity."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from qfleet.alerts import config as config_module
from qfleet.alerts.config import PAGERDUTY_URL, ConfigError, config_from_dict, load_config, read_config
from qfleet.alerts.matchers import MatcherError, parse_matcher, parse_matchers
from qfleet.alerts.model import AlertingConfig, Matcher, PagerDutyFields, Route
from qfleet.problems import Problem, ProblemsError
from qfleet.units import NS
from tests.conftest import require_tool

SAMPLE = Path(__file__).resolve().parents[2] / "alerts" / "alerting.yaml"


# sre.md §17.1: "`matchers` | list of `name="v"`, `name!="v"`, `name=~"re"`, `name!~"re"`"
@pytest.mark.parametrize(("text", "expected"), [
    ('severity="page"', Matcher("severity", "=", "page")),
    ('severity!="page"', Matcher("severity", "!=", "page")),
    ('node=~"qpu-.*"', Matcher("node", "=~", "qpu-.*")),
    ('node!~"qpu-1|qpu-2"', Matcher("node", "!~", "qpu-1|qpu-2")),
    ("severity=page", Matcher("severity", "=", "page")),
    ("  team  !=  hw ", Matcher("team", "!=", "hw")),
    ("node=~qpu-.*", Matcher("node", "=~", "qpu-.*")),
    ('slo=""', Matcher("slo", "=", "")),
    ('summary="say \\"hi\\" \\\\ now"', Matcher("summary", "=", 'say "hi" \\ now')),
    ('node=~"qpu-\\d+"', Matcher("node", "=~", "qpu-\\d+")),
    ('"qfleet.site"="delft"', Matcher("qfleet.site", "=", "delft")),
    ('msg="a, b"', Matcher("msg", "=", "a, b")),
])
def test_parse_matcher(text: str, expected: Matcher) -> None:
    assert parse_matcher(text) == expected


@pytest.mark.parametrize(("text", "needle"), [
    ("severity: page", "not name=\"value\""),
    ("severity", "not name=\"value\""),
    ('1abc="x"', "'1abc' is not a label name"),
    ('node=~"("', "bad regex"),
    ('node="unterminated', "unterminated"),
    ("a=b,c=d", "quote it"),
])
def test_parse_matcher_errors_name_the_matcher(text: str, needle: str) -> None:
    with pytest.raises(MatcherError) as err:
        parse_matcher(text)
    assert needle in str(err.value) and repr(text)[1:-1][:6] in str(err.value)
    assert isinstance(err.value, ProblemsError) and isinstance(err.value, ValueError)
    [problem] = err.value.problems
    assert problem.fix and problem.code == "bad_matcher"


def test_matchers_stay_importable_from_config() -> None:
    # dashboards/data.py and alerts/cli.py import parse_matcher from the config module.
    assert config_module.parse_matcher is parse_matcher and config_module.MatcherError is MatcherError
    assert config_module.parse_matchers is parse_matchers


def test_parse_matchers_accepts_braces_and_commas() -> None:
    assert parse_matchers('{severity="page", node=~"qpu-.*",}') == (
        Matcher("severity", "=", "page"), Matcher("node", "=~", "qpu-.*"))
    assert parse_matchers("{}") == ()


def minimal(**route: Any) -> dict[str, Any]:
    return {"route": {"receiver": "a", **route}, "receivers": [{"name": "a"}]}


def problems(doc: Any) -> list[str]:
    """The problems ``config_from_dict`` raises, as the lines the user reads."""
    with pytest.raises(ConfigError) as err:
        config_from_dict(doc)
    got = [str(p) for p in err.value.problems]
    assert all(isinstance(p, Problem) and p.path is not None for p in err.value.problems)
    assert str(err.value).endswith(got[-1]) and all(line in str(err.value) for line in got)
    return got


# Prometheus' duration grammar (model.ParseDuration): units y w d h m s ms, largest first, each at most once.
@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("4h", 14400), ("1d", 86400), ("1h30m", 5400), ("90s", 90), ("1w", 604800),
    ("1y", 365 * 86400), ("1s250ms", 1.25),
])
def test_durations_in_every_interval(text: str, seconds: float) -> None:
    cfg, _ = config_from_dict(minimal(group_wait=text, group_interval=text, repeat_interval=text))
    expected = int(seconds * 1000) * NS // 1000
    assert cfg.route.group_wait_ns == cfg.route.group_interval_ns == cfg.route.repeat_interval_ns == expected


@pytest.mark.parametrize("text", ["0", "0s", 0])
def test_group_wait_may_be_zero(text: Any) -> None:
    assert config_from_dict(minimal(group_wait=text))[0].route.group_wait_ns == 0


# "5m5m" was read as 600 s by one of the old parsers; Prometheus (and now qfleet) rejects it.
@pytest.mark.parametrize("text", ["", "5", "5m5m", "1m1h", "5 m", "-1m", "1.5h", "5min", 30, True])
def test_bad_durations_name_the_key_the_value_and_the_fix(text: Any) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict(minimal(group_wait=text))
    [p] = err.value.problems
    assert p.path == "route.group_wait" and repr(text) in p.message and p.code == "bad_duration"
    assert "largest first" in p.fix or "write 1h30m" in p.fix


# global.resolve_timeout: Alertmanager's default 5m; a positive duration (an unrefreshed alert resolves after it).
@pytest.mark.parametrize(("text", "ns"), [("90s", 90 * NS), ("1h30m", 5400 * NS), ("5m", 300 * NS)])
def test_resolve_timeout_is_carried_to_the_config(text: str, ns: int) -> None:
    doc = minimal()
    doc["global"] = {"resolve_timeout": text}
    assert config_from_dict(doc)[0].resolve_timeout_ns == ns


def test_the_model_refuses_a_non_positive_resolve_timeout_or_half_an_escalation() -> None:
    route = Route(receiver="a")
    assert AlertingConfig(route=route, receivers={}).resolve_timeout_ns == 300 * NS
    for bad in (0, -NS):
        with pytest.raises(ValueError, match=f"resolve_timeout_ns={bad} must be positive"):
            AlertingConfig(route=route, receivers={}, resolve_timeout_ns=bad)
    with pytest.raises(ValueError, match="go together"):
        AlertingConfig(route=route, receivers={}, escalation_receiver="a")
    with pytest.raises(ValueError, match="escalate_after_ns=0 must be positive"):
        AlertingConfig(route=route, receivers={}, escalation_receiver="a", escalate_after_ns=0)


@pytest.mark.parametrize(("text", "message"), [("0s", "cannot be zero"), ("5m5m", "is not valid"),
                                               ("-5m", "is not valid"), (300, "is not text")])
def test_resolve_timeout_must_be_a_positive_duration(text: Any, message: str) -> None:
    doc = minimal()
    doc["global"] = {"resolve_timeout": text}
    [got] = problems(doc)
    assert got.startswith("global.resolve_timeout: ") and message in got


def test_defaults() -> None:
    cfg, warnings = config_from_dict(minimal())
    assert warnings == [] and cfg.resolve_timeout_ns == 300 * NS      # sre.md §17.1: resolve_timeout 5m
    assert cfg.route.group_by is None and cfg.inhibit_rules == () and cfg.escalation_receiver is None


# The task: "raises ConfigError listing every problem" — one document, many problems, all reported at once.
def test_every_problem_is_listed_with_its_key_path() -> None:
    doc = {
        "route": {"matchers": ['severity="page"'], "group_wait": "30 s", "mute_time_intervals": ["m"],
                  "routes": [
                      {"receiver": "ghost", "matchers": ['node=~"(qpu"'], "recieve": "x"},
                      {"group_by": ["...", "node"], "repeat_interval": "0", "active_time_intervals": ["nope"]},
                  ]},
        "receivers": [{"name": "a"}, {"name": "a"}, {"webhook_configs": [{}]}],
        "inhibit_rules": [{"source_matchers": ["x"], "equal": ["bad-name"]}],
        "time_intervals": [{"name": "m", "time_intervals": [{"weekdays": ["saturday:sunday"]}]}],
        "routs": [],
    }
    got = problems(doc)
    expected = [
        "routs: unknown key (fix: did you mean 'route'?",
        "route.receiver: the root route must name a default receiver",
        "route: the root route must not have matchers",
        "route: the root route must not have mute_time_intervals",
        "route.group_wait: duration '30 s' is not valid",
        "route.routes[0].recieve: unknown key (fix: did you mean 'receiver'?",
        "route.routes[0].matchers[0]: matcher node=~'(qpu'",
        "route.routes[1].group_by: '...' (group by every label) must be the only entry",
        "route.routes[1].repeat_interval: cannot be zero",
        "receivers[1](a).name: receiver 'a' is defined twice",
        "receivers[2].name: every receiver needs a name",
        "inhibit_rules[0].source_matchers[0]: matcher 'x'",
        "inhibit_rules[0].equal[0]: 'bad-name' is not a valid label name",
        "time_intervals[0](m).time_intervals[0].weekdays[0]: 'saturday:sunday': start day cannot be before end",
        "route.routes[0].receiver: receiver 'ghost' is not defined",
        "route.routes[1].active_time_intervals: time interval 'nope' is not defined",
    ]
    for e in expected:
        assert any(p.startswith(e) or e in p for p in got), (e, got)
    assert len(got) == len(expected), got


def test_deprecated_match_and_match_re_become_matchers() -> None:
    doc = minimal(routes=[{"match": {"severity": "page"}, "match_re": {"node": "qpu-.*"}, "receiver": "a"}])
    doc["inhibit_rules"] = [{"source_match": {"severity": "page"}, "target_match_re": {"severity": "ticket|info"},
                             "equal": ["slo"]}]
    cfg, warnings = config_from_dict(doc)
    assert cfg.route.routes[0].matchers == (Matcher("severity", "=", "page"), Matcher("node", "=~", "qpu-.*"))
    rule = cfg.inhibit_rules[0]
    assert rule.source_matchers == (Matcher("severity", "=", "page"),)
    assert rule.target_matchers == (Matcher("severity", "=~", "ticket|info"),) and rule.equal == ("slo",)
    assert sum(w.code == "deprecated" for w in warnings) == 4
    assert {w.path for w in warnings} == {"route.routes[0].match", "route.routes[0].match_re",
                                          "inhibit_rules[0].source_match", "inhibit_rules[0].target_match_re"}


def test_deprecated_matchers_are_checked_like_new_ones() -> None:
    doc = minimal(routes=[{"match_re": {"node": "qpu-(", "bad-name": "x"}, "match": {"team": ["hw"]}}])
    assert problems(doc) == [
        "route.routes[0].match.team: expected a string value, got ['hw'] (fix: quote the value)",
        "route.routes[0].match_re.bad-name: 'bad-name' is not a valid label name (fix: write [A-Za-z_][A-Za-z0-9_]*)",
        "route.routes[0].match_re.node: matcher node=~'qpu-(': bad regex, not RE2 syntax (missing ): qpu-() "
        "(fix: use RE2 syntax as Alertmanager does (https://github.com/google/re2/wiki/Syntax), e.g. qpu-.*)",
    ]


def test_known_but_unsupported_keys_are_warnings_typos_are_problems() -> None:
    doc = minimal(labels={"team": "hw"})
    doc["receivers"] = [{"name": "a", "slack_configs": [{"channel": "#x"}],
                         "webhook_configs": [{"url": "http://127.0.0.1:1/", "http_config": {}}]}]
    doc["global"] = {"smtp_smarthost": "localhost:25", "resolve_timeout": "10m"}
    doc["templates"] = ["/etc/am/*.tmpl"]
    cfg, warnings = config_from_dict(doc)
    assert cfg.resolve_timeout_ns == 600 * NS
    text = "\n".join(map(str, warnings))
    for needle in ("route.labels", "slack_configs: not delivered by qfleet", "http_config", "global.smtp_smarthost",
                   "templates"):
        assert needle in text, (needle, warnings)
    bad = minimal()
    bad["receivers"] = [{"name": "a", "webhook_config": [{"url": "http://x/"}]}]
    [got] = problems(bad)
    assert got.startswith("receivers[0](a).webhook_config: unknown key (fix: did you mean 'webhook_configs'?")
    bad = minimal()
    bad["global"] = {"resolve_timout": "5m"}
    assert problems(bad)[0].startswith("global.resolve_timout: unknown key (fix: did you mean 'resolve_timeout'?")


# sre.md §18: "`webhook_config`: `send_resolved` (default true), `url` / `url_file`, ... `max_alerts` (0 = all)"
def test_webhook_configs(tmp_path: Path) -> None:
    (tmp_path / "hook.url").write_text("http://127.0.0.1:9200/secret\n")
    doc = minimal()
    doc["receivers"] = [{"name": "a", "webhook_configs": [
        {"url": "http://127.0.0.1:9101/"},
        {"url_file": "hook.url", "send_resolved": False, "max_alerts": 3},
    ]}]
    cfg, _ = config_from_dict(doc, source=str(tmp_path / "am.yml"))
    assert cfg.receivers["a"].webhooks == (("http://127.0.0.1:9101/", True, 0),
                                           ("http://127.0.0.1:9200/secret", False, 3))
    doc["receivers"][0]["webhook_configs"] = [{"url_file": "missing.url"}, {"url": "ftp://x"},
                                              {"url": "http://x/", "url_file": "hook.url"}, {"url": "http://x/",
                                                                                           "max_alerts": -1}]
    with pytest.raises(ConfigError) as err:
        config_from_dict(doc, source=str(tmp_path / "am.yml"))
    got = [str(p) for p in err.value.problems]
    assert len(got) == 4 and "cannot read" in got[0] and "not an http(s) URL" in got[1]
    assert "exactly one of url and url_file" in got[2] and "max_alerts" in got[3]


# sre.md §17.1: "`pagerduty_url` `https://events.pagerduty.com/v2/enqueue`"; §18 send_resolved default true
def test_pagerduty_configs(tmp_path: Path) -> None:
    (tmp_path / "pd.key").write_text("k" * 32)
    doc = minimal()
    doc["receivers"] = [{"name": "a", "pagerduty_configs": [
        {"routing_key": "r" * 32, "severity": "critical"},
        {"routing_key_file": str(tmp_path / "pd.key"), "send_resolved": False, "url": "https://pd.example/v2/"},
        {"service_key": "v1"},
    ]}]
    cfg, warnings = config_from_dict(doc)
    assert cfg.receivers["a"].pagerduty == (("r" * 32, True, PAGERDUTY_URL, PagerDutyFields(severity="critical")),
                                            ("k" * 32, False, "https://pd.example/v2/", PagerDutyFields()))
    # severity is honoured now (rendered into the event), not warned about; Events API v1 keys still are.
    assert not any("severity" in w.path for w in warnings) and any("Events API v1" in str(w) for w in warnings)
    doc["global"] = {"pagerduty_url": "https://pd.internal/enqueue"}
    doc["receivers"][0]["pagerduty_configs"] = [{"routing_key": "r" * 32}]
    assert config_from_dict(doc)[0].receivers["a"].pagerduty[0][2] == "https://pd.internal/enqueue"
    doc["receivers"][0]["pagerduty_configs"] = [{"url": "https://pd/"}]
    [got] = problems(doc)
    assert got.startswith("receivers[0](a).pagerduty_configs[0]: routing_key (or routing_key_file) is required")


def test_time_intervals_and_deprecated_mute_time_intervals() -> None:
    doc = minimal(routes=[{"matchers": ["a=1"], "mute_time_intervals": ["old"], "active_time_intervals": ["new"]}])
    doc["time_intervals"] = [{"name": "new", "time_intervals": [{"weekdays": ["monday:friday"]}]}]
    doc["mute_time_intervals"] = [{"name": "old", "time_intervals": [{"months": ["december"],
                                                                      "days_of_month": ["24:26"]}]}]
    cfg, warnings = config_from_dict(doc)
    assert set(cfg.time_intervals) == {"new", "old"}
    assert cfg.time_intervals["old"][0].months == ((12, 12),) and cfg.time_intervals["old"][0].days_of_month == (
        (24, 26),)
    assert any(w.path == "mute_time_intervals" and "deprecated" in w.message for w in warnings)
    doc["mute_time_intervals"][0]["name"] = "new"
    assert any("'new' is defined twice" in p for p in problems(doc))


def test_qfleet_escalation_key() -> None:
    doc = minimal()
    doc["qfleet"] = {"escalation_receiver": "a", "escalate_after": "30m"}
    cfg, _ = config_from_dict(doc)
    assert (cfg.escalation_receiver, cfg.escalate_after_ns) == ("a", 1800 * NS)
    doc["qfleet"] = {"escalation_receiver": "b", "escalate_after": "30m", "escalate": 1}
    got = problems(doc)
    assert any("qfleet.escalate: unknown key" in p for p in got)
    assert any("qfleet.escalation_receiver: receiver 'b' is not defined" in p for p in got)
    doc["qfleet"] = {"escalation_receiver": "a"}
    assert problems(doc) == ["qfleet: escalation_receiver and escalate_after go together (fix: give both or neither)"]


def test_read_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.yml")
    (tmp_path / "bad.yml").write_text("route: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "bad.yml")
    (tmp_path / "list.yml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(tmp_path / "list.yml")


def test_sample_config_loads_with_no_problems_or_warnings() -> None:
    cfg, warnings = read_config(SAMPLE)
    assert warnings == []
    assert set(cfg.receivers) == {"pages", "tickets", "security"}
    ports = sorted(url.split(":")[2].split("/")[0] for r in cfg.receivers.values() for url, _, _ in r.webhooks)
    assert ports == ["9101", "9102", "9103"]
    assert all(url.startswith("http://127.0.0.1:") for r in cfg.receivers.values() for url, _, _ in r.webhooks)
    assert cfg.escalation_receiver == "pages" and cfg.escalate_after_ns == 1800 * NS
    assert cfg.inhibit_rules[0].equal == ("slo", "hardware_type")
    assert all("qfleet_hardware_type" not in r.equal for r in cfg.inhibit_rules)
    assert "fleet-maintenance" in cfg.time_intervals


def amtool_check(tmp_path: Path, doc: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    amtool = require_tool("amtool")
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(doc))
    return subprocess.run([amtool, "check-config", str(path)], capture_output=True, text=True, timeout=30)


def test_amtool_accepts_the_sample_without_the_qfleet_key(tmp_path: Path) -> None:
    doc = yaml.safe_load(SAMPLE.read_text())
    assert doc.pop("qfleet")
    out = amtool_check(tmp_path, doc)
    assert out.returncode == 0, out.stdout + out.stderr


USER_CONFIG = """
global:
  resolve_timeout: 5m
  smtp_smarthost: 'smtp.example.org:587'
  smtp_from: 'alertmanager@example.org'
  smtp_auth_username: 'alertmanager'
  smtp_auth_password: 'password'
  slack_api_url: 'https://hooks.slack.com/services/T000/B000/XXXX'

templates:
  - '/etc/alertmanager/template/*.tmpl'

route:
  group_by: ['alertname', 'cluster', 'service']
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 3h
  receiver: team-X-mails
  routes:
    - matchers:
        - service=~"foo1|foo2|baz"
      receiver: team-X-mails
      routes:
        - matchers:
            - severity="critical"
          receiver: team-X-pager
    - matchers:
        - service="files"
      receiver: team-Y-mails
      routes:
        - matchers:
            - severity="critical"
          receiver: team-Y-pager
    - match:
        service: database
      receiver: team-DB-pager
      group_by: [alertname, cluster, database]
      routes:
        - match:
            owner: team-X
          receiver: team-X-pager
          continue: true
        - match_re:
            owner: team-Y|team-Z
          receiver: team-Y-pager
    - receiver: ops-webhook
      matchers: ['env!="dev"', 'team!~"sandbox.*"']
      mute_time_intervals: [offhours]
      active_time_intervals: [q4]

inhibit_rules:
  - source_matchers: [severity="critical"]
    target_matchers: [severity="warning"]
    equal: [alertname, cluster, service]
  - source_match:
      alertname: ClusterDown
    target_match_re:
      alertname: '.+'
    equal: [cluster]

time_intervals:
  - name: offhours
    time_intervals:
      - times:
          - start_time: '18:00'
            end_time: '24:00'
          - start_time: '00:00'
            end_time: '08:00'
        weekdays: ['monday:friday']
        location: 'America/New_York'
      - weekdays: ['saturday', 'sunday']
  - name: q4
    time_intervals:
      - months: ['october:december']
        days_of_month: ['1:-1']
        years: ['2024:2030']

receivers:
  - name: team-X-mails
    email_configs:
      - to: 'team-X+alerts@example.org'
  - name: team-X-pager
    email_configs:
      - to: 'team-X+alerts-critical@example.org'
    pagerduty_configs:
      - routing_key: 0123456789abcdef0123456789abcdef
        severity: '{{ .CommonLabels.severity }}'
  - name: team-Y-mails
    email_configs:
      - to: 'team-Y+alerts@example.org'
  - name: team-Y-pager
    pagerduty_configs:
      - routing_key: fedcba9876543210fedcba9876543210
        send_resolved: false
  - name: team-DB-pager
    pagerduty_configs:
      - routing_key: 00112233445566778899aabbccddeeff
        url: https://events.eu.pagerduty.com/v2/enqueue
  - name: ops-webhook
    webhook_configs:
      - url: 'http://127.0.0.1:5001/hook'
        max_alerts: 10
        http_config:
          bearer_token: secret
    slack_configs:
      - channel: '#ops'
"""


def test_a_real_user_config_loads_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "alertmanager.yml"
    path.write_text(USER_CONFIG)
    cfg, warnings = read_config(path)
    assert set(cfg.receivers) == {"team-X-mails", "team-X-pager", "team-Y-mails", "team-Y-pager", "team-DB-pager",
                                  "ops-webhook"}
    assert cfg.receivers["team-DB-pager"].pagerduty == (
        ("00112233445566778899aabbccddeeff", True, "https://events.eu.pagerduty.com/v2/enqueue", PagerDutyFields()),)
    assert cfg.receivers["ops-webhook"].webhooks == (("http://127.0.0.1:5001/hook", True, 10),)
    assert cfg.route.repeat_interval_ns == 3 * 3600 * NS and len(cfg.route.routes) == 4
    assert cfg.route.routes[2].matchers == (Matcher("service", "=", "database"),)
    assert len(cfg.inhibit_rules) == 2 and cfg.time_intervals["offhours"][0].location == "America/New_York"
    text = "\n".join(map(str, warnings))
    for needle in ("email_configs: not delivered", "slack_configs: not delivered", "templates",
                   "global.smtp_smarthost", "global.slack_api_url", "http_config", "match: deprecated"):
        assert needle in text, (needle, warnings)
    assert not any("unknown key" in str(w) for w in warnings)
    # ... and Alertmanager agrees the file is valid.
    out = amtool_check(tmp_path, yaml.safe_load(USER_CONFIG))
    assert out.returncode == 0, out.stdout + out.stderr


# The task's validation list; each broken file is one Alertmanager rejects too.
BROKEN: list[tuple[str, Any, str]] = [
    ("root route without receiver", lambda d: d["route"].pop("receiver"),
     "route.receiver: the root route must name a default receiver"),
    ("root route with matchers", lambda d: d["route"].update(matchers=['a="b"']),
     "route: the root route must not have matchers"),
    ("root route muted", lambda d: d["route"].update(mute_time_intervals=["fleet-maintenance"]),
     "route: the root route must not have mute_time_intervals"),
    ("undefined receiver", lambda d: d["route"]["routes"][0].update(receiver="ghost"),
     "route.routes[0].receiver: receiver 'ghost' is not defined"),
    ("unknown time interval", lambda d: d["route"]["routes"][1].update(mute_time_intervals=["nope"]),
     "route.routes[1].mute_time_intervals: time interval 'nope' is not defined"),
    ("bad duration", lambda d: d["route"].update(group_wait="30"), "route.group_wait: duration '30' is not valid"),
    ("compound duration out of order", lambda d: d["route"].update(repeat_interval="30m1h"),
     "route.repeat_interval: duration '30m1h' is not valid"),
    ("repeated unit", lambda d: d["route"].update(group_interval="5m5m"),
     "route.group_interval: duration '5m5m' is not valid"),
    ("zero group_interval", lambda d: d["route"].update(group_interval="0s"),
     "route.group_interval: cannot be zero"),
    ("bad regex", lambda d: d["route"]["routes"][0].update(matchers=['node=~"qpu-("']),
     "route.routes[0].matchers[0]: matcher node=~'qpu-(': bad regex"),
    ("typo in a route key", lambda d: d["route"]["routes"][0].update(group_bye=["x"]),
     "route.routes[0].group_bye: unknown key (fix: did you mean 'group_by'?"),
    ("typo in an inhibit rule", lambda d: d["inhibit_rules"][0].update(equals=["slo"]),
     "inhibit_rules[0].equals: unknown key (fix: did you mean 'equal'?"),
    ("duplicate receiver", lambda d: d["receivers"].append({"name": "pages"}),
     "receivers[3](pages).name: receiver 'pages' is defined twice"),
    ("webhook without url", lambda d: d["receivers"][0]["webhook_configs"][0].pop("url"),
     "receivers[0](pages).webhook_configs[0]: give exactly one of url and url_file"),
    ("saturday:sunday", lambda d: d["time_intervals"][0]["time_intervals"][0].update(weekdays=["saturday:sunday"]),
     "start day cannot be before end day"),
    ("wildcard group_by with others", lambda d: d["route"].update(group_by=["...", "slo"]),
     "route.group_by: '...' (group by every label) must be the only entry"),
]


@pytest.mark.parametrize(("case", "breaks", "problem"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_configs_are_rejected_like_alertmanager(tmp_path: Path, case: str, breaks: Any, problem: str) -> None:
    doc = yaml.safe_load(SAMPLE.read_text())
    doc.pop("qfleet")
    bad = copy.deepcopy(doc)
    breaks(bad)
    with pytest.raises(ConfigError) as err:
        config_from_dict(bad)
    got = [str(p) for p in err.value.problems]
    assert any(p.startswith(problem) or problem in p for p in got), got
    out = amtool_check(tmp_path, bad)
    assert out.returncode != 0, f"amtool accepted the {case} config:\n{out.stdout}"
