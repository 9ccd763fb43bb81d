"""The routing tree (sre.md §17.1): matching order, inheritance, grouping, route and group keys, amtool parity."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from qfleet.alerts.config import config_from_dict, load_config
from qfleet.alerts.model import AlertingConfig, Matcher, Receiver, ResolvedRoute, Route
from qfleet.alerts.routing import (
    RoutingError,
    group_key,
    group_labels,
    labelset_string,
    matchers_string,
    resolve,
    routes_test,
)
from qfleet.units import NS
from tests.conftest import require_tool

SAMPLE = Path(__file__).resolve().parents[2] / "alerts" / "alerting.yaml"

TREE = {
    "route": {
        "receiver": "default",
        "group_by": ["alertname"],
        "routes": [
            {"matchers": ['severity="page"'], "receiver": "pages", "group_wait": "10s",
             "routes": [{"matchers": ['team="hw"'], "receiver": "hw-pages", "repeat_interval": "1h"}]},
            {"matchers": ['severity="page"'], "receiver": "never"},                     # shadowed by the first
            {"matchers": ['severity=~"ticket|info"'], "receiver": "tickets", "continue": True,
             "group_by": ["..."]},
            {"matchers": ["severity=ticket"], "receiver": "ticket-audit", "continue": True, "group_by": []},
            {"matchers": ['node=~"qpu-1"'], "receiver": "qpu1"},
            {"matchers": ['team=""'], "receiver": "unowned"},
        ],
    },
    "receivers": [{"name": n} for n in ("default", "pages", "hw-pages", "never", "tickets", "ticket-audit",
                                          "qpu1", "unowned")],
}


@pytest.fixture(scope="module")
def tree() -> AlertingConfig:
    return config_from_dict(TREE)[0]


# sre.md §17.1: "a matching child stops the search unless it has `continue: true`"
def test_first_matching_child_wins(tree: AlertingConfig) -> None:
    assert routes_test(tree, {"severity": "page", "team": "sw"}) == ["pages"]


# sre.md §17.1: "Matching is depth-first"
def test_matching_is_depth_first(tree: AlertingConfig) -> None:
    assert routes_test(tree, {"severity": "page", "team": "hw"}) == ["hw-pages"]


# sre.md §17.1: "`continue` | keep matching later siblings after this route matches"
def test_continue_keeps_matching_later_siblings(tree: AlertingConfig) -> None:
    assert routes_test(tree, {"severity": "ticket", "team": "hw"}) == ["tickets", "ticket-audit"]
    # ticket-audit also continues; qpu1 then matches and stops the search before unowned.
    assert routes_test(tree, {"severity": "ticket", "node": "qpu-1"}) == ["tickets", "ticket-audit", "qpu1"]


# sre.md §17.1: "if no child matches, the node itself takes the alert"
def test_node_itself_takes_the_alert_when_no_child_matches(tree: AlertingConfig) -> None:
    assert routes_test(tree, {"severity": "warning", "team": "hw"}) == ["default"]
    [r] = resolve(tree, {"severity": "page", "team": "sw"})
    assert r.key == '{}/{severity="page"}'


# sre.md §17.1: "Regex matchers are fully anchored (severity=~"page|ticket" does not match pager;
# node=~"qpu-1" does not match qpu-10)"
def test_regex_matchers_are_fully_anchored(tree: AlertingConfig) -> None:
    assert routes_test(tree, {"severity": "ticketing", "team": "hw"}) == ["default"]
    assert routes_test(tree, {"node": "qpu-10", "team": "hw"}) == ["default"]
    assert routes_test(tree, {"node": "qpu-1", "team": "hw"}) == ["qpu1"]
    assert not Matcher("severity", "=~", "page|ticket").matches({"severity": "pager"})


# sre.md §17.1: "A missing label equals the empty string"
def test_missing_label_equals_empty_string(tree: AlertingConfig) -> None:
    assert routes_test(tree, {"severity": "warning"}) == ["unowned"]
    assert routes_test(tree, {"severity": "warning", "team": ""}) == ["unowned"]


# sre.md §17.1: "Children inherit unset fields" and the defaults 30s / 5m / 4h
def test_children_inherit_unset_fields_and_defaults(tree: AlertingConfig) -> None:
    [root] = resolve(tree, {"severity": "warning", "team": "hw"})
    assert (root.group_wait_ns, root.group_interval_ns, root.repeat_interval_ns) == (30 * NS, 300 * NS,
                                                                                     4 * 3600 * NS)
    [hw] = resolve(tree, {"severity": "page", "team": "hw"})
    assert hw.receiver == "hw-pages" and hw.group_by == ("alertname",)
    assert (hw.group_wait_ns, hw.group_interval_ns, hw.repeat_interval_ns) == (10 * NS, 300 * NS, 3600 * NS)
    bare = config_from_dict({"route": {"receiver": "a", "routes": [{"matchers": ["x=1"]}]},
                             "receivers": [{"name": "a"}]})[0]
    [child] = resolve(bare, {"x": "1"})
    assert child.receiver == "a" and child.group_by is None


# sre.md §17.1: "`group_by` | label names; ['...'] = group by all labels; unset = one group" and
# "Group labels are the `group_by` labels present on the alert (a missing one is simply absent)"
def test_group_labels(tree: AlertingConfig) -> None:
    labels = {"alertname": "LinkDown", "severity": "ticket", "node": "qpu-3", "empty": ""}
    by_all, explicit_empty = resolve(tree, labels)[:2]
    assert group_labels(by_all, labels) == (("alertname", "LinkDown"), ("node", "qpu-3"),
                                            ("severity", "ticket"))
    assert group_labels(explicit_empty, labels) == ()
    [root] = resolve(tree, {"team": "x", "severity": "x"})
    assert group_labels(root, {"team": "x"}) == ()                    # alertname missing: absent
    unset = ResolvedRoute(key="{}", receiver="a", group_by=None, group_wait_ns=0, group_interval_ns=1,
                          repeat_interval_ns=1)
    assert group_labels(unset, labels) == ()


# sre.md §18: "`groupKey` | `<routeKey>:<groupLabels>`, e.g. `{}/{severity="page"}:{alertname="X"}`"
def test_group_key_matches_alertmanager_format(tree: AlertingConfig) -> None:
    labels = {"alertname": "X", "severity": "page", "team": "sw"}
    [r] = resolve(tree, labels)
    assert group_key(r, labels) == '{}/{severity="page"}:{alertname="X"}'
    labels = {"alertname": "X", "severity": "page", "team": "hw"}
    assert group_key(resolve(tree, labels)[0], labels) == '{}/{severity="page"}/{team="hw"}:{alertname="X"}'


def test_route_key_sorts_matchers_by_name_value_type() -> None:
    ms = (Matcher("team", "=", "hw"), Matcher("node", "!~", "a"), Matcher("node", "=~", "a"),
          Matcher("alertname", "!=", 'say "hi"\\'))
    assert matchers_string(ms) == '{alertname!="say \\"hi\\"\\\\",node=~"a",node!~"a",team="hw"}'
    # Go sorts the rendered pairs as text: 'a1="..."' sorts before 'a="..."'.
    assert labelset_string((("a", "x"), ("a1", "y"))) == '{a1="y", a="x"}'


def test_siblings_with_identical_matchers_share_a_key() -> None:
    cfg = config_from_dict({"route": {"receiver": "a", "routes": [
        {"matchers": ["x=1"], "continue": True}, {"matchers": ["x=1"], "receiver": "b"}]},
        "receivers": [{"name": "a"}, {"name": "b"}]})[0]
    first, second = resolve(cfg, {"x": "1"})
    assert first.key == second.key == '{}/{x="1"}' and (first.receiver, second.receiver) == ("a", "b")


def test_root_without_receiver_cannot_route() -> None:
    with pytest.raises(RoutingError, match="root route has no receiver"):
        resolve(AlertingConfig(route=Route(), receivers={"a": Receiver(name="a")}), {})


def test_sample_config_routes_pages_tickets_and_security() -> None:
    cfg = load_config(SAMPLE)
    # Pages stop at pages (no copy in tickets: the incident is the record); tickets go to tickets.
    assert routes_test(cfg, {"severity": "page", "slo": "fidelity"}) == ["pages"]
    assert routes_test(cfg, {"severity": "ticket", "slo": "fidelity"}) == ["tickets"]
    assert routes_test(cfg, {"severity": "security"}) == ["security"]
    link = {"alertname": "LinkDown", "severity": "ticket", "link": "qpu-1--qpu-2", "slo": "s"}
    [r] = resolve(cfg, link)
    assert group_key(r, link) == '{}/{severity="ticket"}/{link=~".+"}:{alertname="LinkDown", ' \
                                 'link="qpu-1--qpu-2"}'
    assert r.mute_time_intervals == ()                                  # not inherited from the parent


LABEL_SETS = [
    {},
    {"severity": "page"},
    {"severity": "page", "slo": "fidelity", "hardware_type": "transmon"},
    {"severity": "page", "link": "qpu-1--qpu-2"},
    {"severity": "ticket"},
    {"severity": "ticket", "link": "qpu-3--qpu-4", "node": "qpu-3"},
    {"severity": "ticket", "link": ""},
    {"severity": "security", "team": "sec"},
    {"severity": "securityx"},
    {"severity": "pager"},
    {"severity": "Page"},
    {"alertname": "QpuDown", "node": "qpu-7", "team": "hw"},
    {"severity": "info", "link": "x"},
]


# The task: `amtool config routes test` agrees with `routes_test` on the sample config.
def test_routes_test_agrees_with_amtool(tmp_path: Path) -> None:
    amtool = require_tool("amtool")
    doc = yaml.safe_load(SAMPLE.read_text())
    doc.pop("qfleet")
    copy = tmp_path / "alertmanager.yml"
    copy.write_text(yaml.safe_dump(doc))
    cfg = load_config(SAMPLE)
    for labels in LABEL_SETS:
        labels = labels or {"alertname": "Any"}       # amtool needs at least one label
        args = [f"{k}={v}" for k, v in labels.items() if v]   # a label set to "" is the missing label
        out = subprocess.run([amtool, "config", "routes", "test", f"--config.file={copy}", *args],
                             capture_output=True, text=True, timeout=30, check=True)
        expected = out.stdout.strip().split(",")
        assert routes_test(cfg, labels) == expected, (labels, out.stdout)


labels_st = st.dictionaries(
    st.sampled_from(["severity", "team", "node", "link", "slo", "alertname"]),
    st.sampled_from(["page", "ticket", "info", "hw", "qpu-1", "qpu-10", "", "x"]), max_size=6)


@given(labels_st)
def test_resolve_is_never_empty_and_deterministic(labels: dict[str, str]) -> None:
    cfg = config_from_dict(TREE)[0]
    first = resolve(cfg, labels)
    assert first and first == resolve(cfg, dict(reversed(list(labels.items()))))
    assert resolve(cfg, labels) == resolve(cfg, {k: v for k, v in labels.items() if v})
