"""Incidents on both backends: a notification opens an incident with a timeline, acknowledgement stops
escalation, the escalation due list, and fault linking to the simulator's ground-truth ``qfleet.fault`` span."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from qfleet.alerts.incidents import IncidentError, Incidents, incident_id
from qfleet.alerts.model import Alert, Notification, labels_key
from qfleet.alerts.rules import load_rules, sync_rules
from qfleet.alerts.sources import AlertState
from qfleet.simulator.faults import Fault, FaultKind
from qfleet.units import NS
from tests.alerts.test_sources import simulate
from tests.conftest import FakeClock

MIN = 60 * NS
GROUP = '{}/{severity="page"}:{alertname="QfleetNodeHeartbeatMissing"}'


def _alert(node: str, severity: str = "page", starts: int = 0, name: str = "QfleetNodeHeartbeatMissing") -> Alert:
    return Alert(labels=labels_key({"alertname": name, "severity": severity, "node": node}),
                 annotations=(("summary", f"Node {node} is not sending heartbeats"),), starts_at=starts)


def _note(at: int, reason: str, firing: list[Alert], resolved: list[Alert] = (), *,  # type: ignore[assignment]
          group: str = GROUP, receiver: str = "oncall") -> Notification:
    return Notification(at=at, receiver=receiver, group_key=group,
                        group_labels=(("alertname", "QfleetNodeHeartbeatMissing"),), reason=reason,
                        firing=tuple(firing), resolved=tuple(resolved))


def test_a_notification_opens_an_incident_whose_timeline_follows_the_group(engine: Engine) -> None:
    inc = Incidents(engine, clock=FakeClock())
    a, b = _alert("qpu-a"), _alert("qpu-b")
    # sre.md 17.2: "30 s first notification; 330 s new alerts added; 630 s some alerts resolved; 930 s all
    # alerts resolved" -- one incident for the group, closed by the last one.
    iid = inc.on_notification(_note(30, "first notification", [a]), 30)
    assert iid == incident_id(GROUP, 30)
    assert inc.on_notification(_note(330, "new alerts added", [a, b]), 330) == iid
    assert inc.on_notification(_note(630, "some alerts resolved", [b], [a]), 630) == iid
    [row] = inc.list(state="open")
    assert (row["id"], row["severity"], row["receiver"], row["opened_unix_nano"]) == (iid, "page", "oncall", 30)
    assert row["title"] == "Node qpu-a is not sending heartbeats"
    assert row["labels"] == {"alertname": "QfleetNodeHeartbeatMissing", "severity": "page", "node": "qpu-a"}
    assert inc.on_notification(_note(930, "all alerts resolved", [], [a, b]), 930) == iid
    assert [(e["at_unix_nano"], e["kind"]) for e in inc.timeline(iid)] == [
        (30, "fired"), (30, "notified"), (330, "fired"), (330, "notified"), (630, "notified"),
        (930, "notified"), (930, "resolved")]
    tl = inc.timeline(iid)
    assert tl[2]["detail"]["fingerprint"] == b.fingerprint and tl[2]["detail"]["labels"]["node"] == "qpu-b"
    assert tl[4]["detail"] == {"receiver": "oncall", "group_key": GROUP, "reason": "some alerts resolved",
                               "firing": [b.fingerprint], "resolved": [a.fingerprint]}
    assert inc.list(state="open") == [] and inc.get(iid)["resolved_unix_nano"] == 930
    # A group that fires again after its incident resolved opens a new one.
    again = inc.on_notification(_note(2000, "first notification", [a]), 2000)
    assert again != iid and [r["id"] for r in inc.list()] == [again, iid]
    # An all-resolved notification for a group with no unresolved incident changes nothing.
    assert inc.on_notification(_note(50, "all alerts resolved", [], [a], group="{}:{}"), 50) == ""


def test_acknowledge_stops_escalation_and_the_due_list(engine: Engine) -> None:
    inc = Incidents(engine, clock=FakeClock())
    page = inc.on_notification(_note(0, "first notification", [_alert("qpu-a")]), 0)
    other = inc.on_notification(_note(60 * NS, "first notification", [_alert("qpu-b")], group="g2"), 60 * NS)
    ticket = inc.on_notification(_note(0, "first notification", [_alert("qpu-c", "ticket")], group="g3"), 0)
    after = 15 * MIN
    assert inc.due_for_escalation(after - 1, after) == []                  # not yet
    assert inc.due_for_escalation(after, after) == [page]                  # opened exactly after_ns ago
    assert inc.due_for_escalation(after + 60 * NS, after) == [page, other]  # oldest first
    assert inc.due_for_escalation(after, after, severity="ticket") == [ticket]
    inc.acknowledge(page, "alice", after + 1)
    inc.acknowledge(page, "alice", after + 2)  # twice: no second event
    row = inc.get(page)
    assert (row["state"], row["acknowledged_by"], row["acknowledged_unix_nano"]) == ("acknowledged", "alice",
                                                                                    after + 1)
    assert [e["kind"] for e in inc.timeline(page)] == ["fired", "notified", "acknowledged"]
    assert inc.due_for_escalation(after + 60 * NS, after) == [other]
    inc.escalate(other, "platform-lead", after + 60 * NS)
    assert inc.due_for_escalation(after + 120 * NS, after) == []
    assert inc.timeline(other)[-1]["detail"] == {"to": "platform-lead"}
    assert inc.get(other)["escalated_unix_nano"] == after + 60 * NS
    # An acknowledged incident stays acknowledged while its group keeps notifying, and still resolves.
    inc.on_notification(_note(after + 5, "all alerts resolved", [], [_alert("qpu-a")]), after + 5)
    assert inc.get(page)["state"] == "resolved"
    with pytest.raises(IncidentError, match="already resolved"):
        inc.acknowledge(page, "bob", after + 6)
    with pytest.raises(IncidentError, match="no incident 'nope'"):
        inc.acknowledge("nope", "bob", 0)
    with pytest.raises(IncidentError, match="'by' is empty"):
        inc.acknowledge(other, "", 0)
    with pytest.raises(IncidentError, match="state 'closed'"):
        inc.list(state="closed")


def test_resolve_by_hand_and_the_open_list(engine: Engine) -> None:
    inc = Incidents(engine, clock=FakeClock())
    a = inc.on_notification(_note(10, "first notification", [_alert("qpu-a")]), 10)
    b = inc.on_notification(_note(20, "first notification", [_alert("qpu-b")], group="g2"), 20)
    assert [r["id"] for r in inc.open_at(15)] == [a] and [r["id"] for r in inc.open_at(30)] == [b, a]
    assert [r["id"] for r in inc.list(limit=1)] == [b]
    inc.resolve(a, "alice", 40)
    inc.resolve(a, "bob", 50)  # twice: nothing changes
    row = inc.get(a)
    assert (row["state"], row["resolved_unix_nano"]) == ("resolved", 40)
    assert inc.timeline(a)[-1] == {"seq": 3, "at_unix_nano": 40, "kind": "resolved",
                                   "detail": {"by": "alice", "reason": "resolved by hand"}}
    assert [r["id"] for r in inc.open_at(40)] == [b, a] and [r["id"] for r in inc.open_at(41)] == [b]
    with pytest.raises(IncidentError, match="'by' is empty"):
        inc.resolve(b, "", 60)
    with pytest.raises(IncidentError, match="no incident 'nope'"):
        inc.resolve("nope", "alice", 60)
    with pytest.raises(IncidentError, match="limit=0"):
        inc.list(limit=0)
    # A group that notifies again after a manual resolution opens a new incident.
    assert inc.on_notification(_note(70, "new alerts added", [_alert("qpu-a")]), 70) not in ("", a)


def test_severity_is_the_most_urgent_alert_of_the_group(sqlite_engine: Engine) -> None:
    inc = Incidents(sqlite_engine, clock=FakeClock())
    iid = inc.on_notification(_note(0, "first notification", [_alert("qpu-a", "ticket")]), 0)
    assert inc.get(iid)["severity"] == "ticket"
    inc.on_notification(_note(10, "new alerts added", [_alert("qpu-a", "ticket"), _alert("qpu-b", "page")]), 10)
    assert inc.get(iid)["severity"] == "page"


def test_rules_to_incident_to_ground_truth_fault(engine: Engine) -> None:
    """The whole chain on a real run: the F5 outage of qpu-d fires the heartbeat rule, its notification opens
    an incident, and link_faults attaches the outage's qfleet.fault span -- not the F8 fault elsewhere."""
    faults = [Fault(id="out", kind=FaultKind.F5, target="qpu-d", start_ns=10 * MIN, duration_ns=10 * MIN),
              Fault(id="rogue", kind=FaultKind.F8, target="qpu-b", start_ns=12 * MIN, duration_ns=5 * MIN,
                    magnitude=0.5)]
    sim = simulate(engine, faults, 30)
    t0 = sim.config.start_ns
    rules = [r for r in load_rules() if r.name in ("QfleetNodeHeartbeatMissing", "QfleetUnauthorizedCommands")]
    state = AlertState(engine)
    fired: list[Alert] = []
    for m in range(5, 30):
        fired += [a for a in sync_rules(rules, engine, state, t0 + m * MIN) if a.ends_at is None]
    [out] = [a for a in fired if a.label("alertname") == "QfleetNodeHeartbeatMissing"]
    assert out.label("node") == "qpu-d" and t0 + 10 * MIN < out.starts_at <= t0 + 13 * MIN
    clock = FakeClock(t0 + 30 * MIN)
    inc = Incidents(engine, clock=clock)
    at = out.starts_at + 30 * NS  # group_wait
    iid = inc.on_notification(_note(at, "first notification", [out]), at)
    assert inc.link_faults(iid) == 1
    assert inc.link_faults(iid) == 0  # already linked: idempotent
    fault = [e for e in inc.timeline(iid) if e["kind"] == "fault"]
    assert len(fault) == 1
    d = fault[0]["detail"]
    assert (d["fault_id"], d["kind"], d["target"]) == ("out", "F5", "qpu-d")
    assert (d["start"], d["end"]) == (t0 + 10 * MIN, t0 + 20 * MIN) and fault[0]["at_unix_nano"] == d["start"]
    assert inc.timeline(iid)[0]["kind"] == "fault"  # the timeline is in time order: the fault came first
    # An incident with no node or link labels links nothing.
    bare = Alert(labels=labels_key({"alertname": "Y", "severity": "page"}), starts_at=at)
    other = inc.on_notification(_note(at, "first notification", [bare], group="y"), at)
    assert inc.link_faults(other) == 0


TICKETS = '{}/{severity=~"page|ticket"}:{alertname="QfleetNodeHeartbeatMissing"}'


def test_one_incident_per_alert_group_across_receivers_and_one_escalation(engine: Engine) -> None:
    """The sample routing sends a page to `pages` and (continue) to `tickets`: two aggregation groups, one
    incident; acknowledging it leaves nothing due for escalation anywhere; it closes when both groups resolved."""
    inc = Incidents(engine, clock=FakeClock())
    a = _alert("qpu-a")
    iid = inc.on_notification(_note(10, "first notification", [a], receiver="pages"), 10)
    assert inc.on_notification(_note(30, "first notification", [a], group=TICKETS, receiver="tickets"), 30) == iid
    assert [r["id"] for r in inc.list()] == [iid]
    assert inc.groups(iid) == (("pages", GROUP), ("tickets", TICKETS))
    after = 15 * MIN
    assert inc.due_for_escalation(after + 10, after) == [iid]     # once, not once per receiver
    inc.acknowledge(iid, "alice", after)
    assert inc.due_for_escalation(after + 10, after) == []
    # Later notifications of either group append to it; it resolves when both said all resolved.
    assert inc.on_notification(_note(after + 20, "all alerts resolved", [], [a], receiver="pages"), after + 20) == iid
    assert inc.get(iid)["state"] == "acknowledged"
    assert inc.on_notification(_note(after + 40, "all alerts resolved", [], [a], group=TICKETS,
                                     receiver="tickets"), after + 40) == iid
    row = inc.get(iid)
    assert (row["state"], row["resolved_unix_nano"]) == ("resolved", after + 40)
    kinds = [(e["kind"], e["detail"].get("receiver")) for e in inc.timeline(iid)]
    assert kinds == [("fired", None), ("notified", "pages"), ("notified", "tickets"), ("acknowledged", None),
                     ("notified", "pages"), ("notified", "tickets"), ("resolved", "tickets")]


def test_a_ticket_then_its_page_are_one_incident(engine: Engine) -> None:
    inc = Incidents(engine, clock=FakeClock())
    ticket, page = _alert("qpu-a", "ticket"), _alert("qpu-a", "page")
    first = inc.on_notification(_note(0, "first notification", [ticket], group=TICKETS, receiver="tickets"), 0)
    assert inc.get(first)["severity"] == "ticket"
    assert inc.due_for_escalation(60 * MIN, 15 * MIN) == []      # a ticket-level burn never escalates to pages
    # The page differs from the ticket only by severity: the same problem, the same incident, now a page.
    assert inc.on_notification(_note(60, "first notification", [page], receiver="pages"), 60) == first
    assert inc.get(first)["severity"] == "page" and [r["id"] for r in inc.list()] == [first]
    assert inc.due_for_escalation(60 * MIN, 15 * MIN) == [first]


def test_two_incidents_whose_alerts_one_group_joins_merge(engine: Engine) -> None:
    inc = Incidents(engine, clock=FakeClock())
    down, slow = _alert("qpu-a"), _alert("qpu-a", name="QfleetNodeSlow")
    first = inc.on_notification(_note(0, "first notification", [down], receiver="pages"), 0)
    second = inc.on_notification(_note(60, "first notification", [slow], group="slow", receiver="pages"), 60)
    assert second != first
    inc.acknowledge(second, "alice", 90)
    # The ticket queue groups by node: one group carries both alerts, so both incidents are one problem.
    assert inc.on_notification(_note(300, "first notification", [down, slow], group=TICKETS,
                                     receiver="tickets"), 300) == first
    row, gone = inc.get(first), inc.get(second)
    assert (row["state"], row["acknowledged_by"], gone["state"]) == ("acknowledged", "alice", "resolved")
    assert inc.timeline(second)[-1]["detail"] == {"into": first}
    assert [r["id"] for r in inc.list(state="acknowledged")] == [first] and inc.list(state="open") == []
    assert [r["id"] for r in inc.list()] == [first]                      # each alert group counts once
    assert [r["id"] for r in inc.list(merged=True)] == [second, first]
    assert [r["id"] for r in inc.open_at(200)] == [first]
    assert sorted(e["detail"]["fingerprint"] for e in inc.timeline(first) if e["kind"] == "fired") == sorted(
        [down.fingerprint, slow.fingerprint])
    # The merged incident's group notifies the survivor from now on.
    assert inc.on_notification(_note(400, "repeat interval elapsed", [slow], group="slow", receiver="pages"),
                               400) == first
    assert ("pages", "slow") in inc.groups(first)
