"""Loading alertmanager.yml (sre.md §17-19): matcher syntax, durations, every problem listed, amtool parity."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from qfleet.alerts.config import (
    PAGERDUTY_URL,
    ConfigError,
    MatcherError,
    config_from_dict,
    load_config,
    parse_duration,
    parse_matcher,
    parse_matchers,
    read_config,
)
from qfleet.alerts.model import NS, Matcher
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
    assert isinstance(err.value, ValueError)


def test_parse_matchers_accepts_braces_and_commas() -> None:
    assert parse_matchers('{severity="page", node=~"qpu-.*",}') == (
        Matcher("severity", "=", "page"), Matcher("node", "=~", "qpu-.*"))
    assert parse_matchers("{}") == ()


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30), ("5m", 300), ("4h", 14400), ("1d", 86400), ("1h30m", 5400), ("1w", 604800), ("0", 0),
    ("0s", 0), (0, 0), ("1y", 365 * 86400),
])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds * NS


def test_parse_duration_milliseconds() -> None:
    assert parse_duration("1s250ms") == 1_250_000_000


@pytest.mark.parametrize("text", ["", "5", "1m1h", "5 m", "-1m", "1.5h", "5min", 30, True])
def test_bad_durations(text: Any) -> None:
    with pytest.raises(ConfigError, match="is not a duration"):
        parse_duration(text)


def minimal(**route: Any) -> dict[str, Any]:
    return {"route": {"receiver": "a", **route}, "receivers": [{"name": "a"}]}


def problems(doc: Any) -> list[str]:
    with pytest.raises(ConfigError) as err:
        config_from_dict(doc)
    assert str(err.value).count("\n  - ") == len(err.value.problems)
    return err.value.problems


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
        "routs: unknown key; did you mean 'route'?",
        "route.receiver: the root route must name a default receiver",
        "route: the root route must not have matchers",
        "route: the root route must not have mute_time_intervals",
        "route.group_wait: '30 s' is not a duration",
        "route.routes[0].recieve: unknown key; did you mean 'receiver'?",
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
    assert sum("deprecated" in w for w in warnings) == 4


def test_known_but_unsupported_keys_are_warnings_typos_are_problems() -> None:
    doc = minimal(labels={"team": "hw"})
    doc["receivers"] = [{"name": "a", "slack_configs": [{"channel": "#x"}],
                         "webhook_configs": [{"url": "http://127.0.0.1:1/", "http_config": {}}]}]
    doc["global"] = {"smtp_smarthost": "localhost:25", "resolve_timeout": "10m"}
    doc["templates"] = ["/etc/am/*.tmpl"]
    cfg, warnings = config_from_dict(doc)
    assert cfg.resolve_timeout_ns == 600 * NS
    text = "\n".join(warnings)
    for needle in ("route.labels", "slack_configs: not delivered by qfleet", "http_config", "global.smtp_smarthost",
                   "templates"):
        assert needle in text, (needle, warnings)
    bad = minimal()
    bad["receivers"] = [{"name": "a", "webhook_config": [{"url": "http://x/"}]}]
    assert problems(bad) == ["receivers[0](a).webhook_config: unknown key; did you mean 'webhook_configs'?"]
    bad = minimal()
    bad["global"] = {"resolve_timout": "5m"}
    assert problems(bad)[0].startswith("global.resolve_timout: unknown key; did you mean 'resolve_timeout'?")


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
    got = err.value.problems
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
    assert cfg.receivers["a"].pagerduty == (("r" * 32, True, PAGERDUTY_URL),
                                            ("k" * 32, False, "https://pd.example/v2/"))
    assert any("severity" in w for w in warnings) and any("Events API v1" in w for w in warnings)
    doc["global"] = {"pagerduty_url": "https://pd.internal/enqueue"}
    doc["receivers"][0]["pagerduty_configs"] = [{"routing_key": "r" * 32}]
    assert config_from_dict(doc)[0].receivers["a"].pagerduty[0][2] == "https://pd.internal/enqueue"
    doc["receivers"][0]["pagerduty_configs"] = [{"url": "https://pd/"}]
    assert problems(doc) == ["receivers[0](a).pagerduty_configs[0]: routing_key (or routing_key_file) is required"]


def test_time_intervals_and_deprecated_mute_time_intervals() -> None:
    doc = minimal(routes=[{"matchers": ["a=1"], "mute_time_intervals": ["old"], "active_time_intervals": ["new"]}])
    doc["time_intervals"] = [{"name": "new", "time_intervals": [{"weekdays": ["monday:friday"]}]}]
    doc["mute_time_intervals"] = [{"name": "old", "time_intervals": [{"months": ["december"],
                                                                      "days_of_month": ["24:26"]}]}]
    cfg, warnings = config_from_dict(doc)
    assert set(cfg.time_intervals) == {"new", "old"}
    assert cfg.time_intervals["old"][0].months == ((12, 12),) and cfg.time_intervals["old"][0].days_of_month == (
        (24, 26),)
    assert any("mute_time_intervals (top level) is deprecated" in w for w in warnings)
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
    assert problems(doc) == ["qfleet: escalation_receiver and escalate_after go together; give both or neither"]


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
    assert cfg.inhibit_rules[0].equal == ("slo", "qfleet_hardware_type")
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
        ("00112233445566778899aabbccddeeff", True, "https://events.eu.pagerduty.com/v2/enqueue"),)
    assert cfg.receivers["ops-webhook"].webhooks == (("http://127.0.0.1:5001/hook", True, 10),)
    assert cfg.route.repeat_interval_ns == 3 * 3600 * NS and len(cfg.route.routes) == 4
    assert cfg.route.routes[2].matchers == (Matcher("service", "=", "database"),)
    assert len(cfg.inhibit_rules) == 2 and cfg.time_intervals["offhours"][0].location == "America/New_York"
    text = "\n".join(warnings)
    for needle in ("email_configs: not delivered", "slack_configs: not delivered", "templates",
                   "global.smtp_smarthost", "global.slack_api_url", "http_config", "match is deprecated",
                   "pagerduty_configs[0].severity"):
        assert needle in text, (needle, warnings)
    assert not any("unknown key" in w for w in warnings)
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
    ("bad duration", lambda d: d["route"].update(group_wait="30"), "route.group_wait: '30' is not a duration"),
    ("compound duration out of order", lambda d: d["route"].update(repeat_interval="30m1h"),
     "route.repeat_interval: '30m1h' is not a duration"),
    ("zero group_interval", lambda d: d["route"].update(group_interval="0s"),
     "route.group_interval: cannot be zero"),
    ("bad regex", lambda d: d["route"]["routes"][0].update(matchers=['node=~"qpu-("']),
     "route.routes[0].matchers[0]: matcher node=~'qpu-(': bad regex"),
    ("typo in a route key", lambda d: d["route"]["routes"][0].update(group_bye=["x"]),
     "route.routes[0].group_bye: unknown key; did you mean 'group_by'?"),
    ("typo in an inhibit rule", lambda d: d["inhibit_rules"][0].update(equals=["slo"]),
     "inhibit_rules[0].equals: unknown key; did you mean 'equal'?"),
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
    assert any(p.startswith(problem) or problem in p for p in err.value.problems), err.value.problems
    out = amtool_check(tmp_path, bad)
    assert out.returncode != 0, f"amtool accepted the {case} config:\n{out.stdout}"
