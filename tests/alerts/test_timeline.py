"""The notification timeline, case by case against sre.md §17.2 (Alertmanager's dispatcher and dedup stage)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qfleet.alerts.model import (
    Alert,
    AlertingConfig,
    InhibitRule,
    Matcher,
    Notification,
    PagerDutyFields,
    Receiver,
    Route,
    Silence,
    TimeInterval,
    TimeRange,
    fingerprint,
    labels_key,
)
from qfleet.alerts.timeline import (
    ALL_RESOLVED,
    FIRST,
    NEW_ALERTS,
    REPEAT,
    REPLAY_TAIL_NS,
    SOME_RESOLVED,
    Dispatcher,
    ReplayError,
    TimelineError,
    dedup_reason,
    replay,
)
from qfleet.units import NS

H = 3600


def config(*, wait: int = 30, interval: int = 300, repeat: int = 4 * H, send_resolved: bool = True,
           group_by: tuple[str, ...] | None = ("alertname",), mute: tuple[str, ...] = (),
           intervals: dict | None = None, inhibit: tuple[InhibitRule, ...] = (),
           pagerduty_resolved: bool | None = None) -> AlertingConfig:
    """Root receiver ``ops`` (one webhook), one child route (alertname=~".+") carrying the timing and mutes."""
    child = Route(matchers=(Matcher("alertname", "=~", ".+"),), group_wait_ns=wait * NS,
                  group_interval_ns=interval * NS, repeat_interval_ns=repeat * NS, mute_time_intervals=mute)
    pd = () if pagerduty_resolved is None else (("k" * 32, pagerduty_resolved, "https://pd", PagerDutyFields()),)
    return AlertingConfig(
        route=Route(receiver="ops", group_by=group_by, routes=(child,)),
        receivers={"ops": Receiver(name="ops", webhooks=(("http://hook", send_resolved, 0),), pagerduty=pd)},
        inhibit_rules=inhibit, time_intervals=intervals or {})


def ev(t: int | str, name: str, state: str = "firing", **labels: str) -> dict:
    return {"t": f"{t}s" if isinstance(t, int) else t, "labels": {"alertname": name, **labels}, "state": state}


def names(alerts: tuple[Alert, ...]) -> list[str]:
    return [a.label("alertname") for a in alerts]


def timeline(notes: list[Notification]) -> list[tuple[int, str, list[str], list[str]]]:
    return [(n.at // NS, n.reason, names(n.firing), names(n.resolved)) for n in notes]


def one_group(by: tuple[str, ...] | None = None, **kw: object) -> AlertingConfig:
    """A config where every alert shares one group (group_by unset)."""
    return config(group_by=by, **kw)  # type: ignore[arg-type]


# -- the §17.2 scenario table --------------------------------------------------------------------------------


# "A stays firing | 30 s first notification; 4h05m30s and 8h10m30s repeat interval elapsed (alertmanager#676)".
def test_a_stays_firing_repeats_at_4h05m30s_and_8h10m30s() -> None:
    notes = replay(config(), [ev(0, "A")], until_ns=(8 * H + 10 * 60 + 30) * NS)
    assert timeline(notes) == [(30, FIRST, ["A"], []), (4 * H + 5 * 60 + 30, REPEAT, ["A"], []),
                               (8 * H + 10 * 60 + 30, REPEAT, ["A"], [])]


# "repeat_interval: 12m, group_interval: 5m | repeats every 15 min (930 s, 1830 s, 2730 s)".
def test_repeat_interval_rounds_up_to_group_interval() -> None:
    notes = replay(config(repeat=12 * 60), [ev(0, "A")], until_ns=3000 * NS)
    assert [(n.at // NS, n.reason) for n in notes] == [(30, FIRST), (930, REPEAT), (1830, REPEAT), (2730, REPEAT)]


# "alertmanager#676: 5m/5m gives 10-min repeats" (the comparison is strict: now - last > repeat_interval).
def test_repeat_equal_to_group_interval_gives_double_the_interval() -> None:
    notes = replay(config(repeat=300), [ev(0, "A")], until_ns=1300 * NS)
    assert [(n.at // NS, n.reason) for n in notes] == [(30, FIRST), (630, REPEAT), (1230, REPEAT)]


# "B fires at 60 s, A resolves at 400 s, B at 700 s | 30 s first; 330 s new alerts added; 630 s some alerts
# resolved; 930 s all alerts resolved".
def test_b_joins_a_resolves_b_resolves() -> None:
    events = [ev(0, "A"), ev(60, "B"), ev(400, "A", "resolved"), ev(700, "B", "resolved")]
    notes = replay(one_group(), events, until_ns=2000 * NS)
    assert timeline(notes) == [(30, FIRST, ["A"], []), (330, NEW_ALERTS, ["A", "B"], []),
                               (630, SOME_RESOLVED, ["B"], ["A"]), (930, ALL_RESOLVED, [], ["B"])]
    assert len({n.group_key for n in notes}) == 1


def test_group_is_destroyed_after_all_resolved() -> None:
    d = Dispatcher(one_group())
    d.update(Alert(labels=labels_key({"alertname": "A"}), starts_at=0), 0)
    d.update(Alert(labels=labels_key({"alertname": "A"}), starts_at=0, ends_at=100 * NS), 100 * NS)
    assert [n.reason for n in d.advance(330 * NS)] == [FIRST, ALL_RESOLVED]
    assert d.next_flush_ns() is None and d.groups() == []


# "A resolves at 20 s (inside group_wait) | none".
def test_resolve_inside_group_wait_sends_nothing() -> None:
    d = Dispatcher(config())
    assert replay(config(), [ev(0, "A"), ev(20, "A", "resolved")]) == []
    d.update(Alert(labels=labels_key({"alertname": "A"}), starts_at=0), 0)
    d.update(Alert(labels=labels_key({"alertname": "A"}), starts_at=0, ends_at=20 * NS), 20 * NS)
    assert d.advance(30 * NS) == [] and d.log == {} and d.next_flush_ns() is None


# "A resolves at 100 s, re-fires at 150 s | only the 30 s first notification".
def test_flap_between_flushes_sends_only_the_first_notification() -> None:
    notes = replay(config(), [ev(0, "A"), ev(100, "A", "resolved"), ev(150, "A")], until_ns=3 * H * NS)
    assert timeline(notes) == [(30, FIRST, ["A"], [])]


# "route muted 0-1 h | first notification at 3630 s".
def test_muted_route_first_notification_after_the_mute() -> None:
    cfg = config(mute=("maint",), intervals={"maint": (TimeInterval(times=(TimeRange(0, 60),)),)})
    d = Dispatcher(cfg)
    d.update(Alert(labels=labels_key({"alertname": "A"}), starts_at=0), 0)
    assert d.advance(3600 * NS) == [] and d.log == {}     # "nothing is sent and the notification log is unchanged"
    assert timeline(d.advance(3630 * NS)) == [(3630, FIRST, ["A"], [])]


# §17.2: "After a flush, resolved alerts are dropped" -- a muted flush counts (Alertmanager's mute stage ends the
# pipeline successfully), so an alert resolving during the mute is never reported and the log keeps it firing.
def test_alert_resolving_while_muted_is_dropped_without_touching_the_log() -> None:
    cfg = config(mute=("maint",), intervals={"maint": (TimeInterval(times=(TimeRange(5, 60),)),)})
    d = Dispatcher(cfg)
    a = labels_key({"alertname": "A"})
    d.update(Alert(labels=a, starts_at=0), 0)
    assert [n.reason for n in d.advance(30 * NS)] == [FIRST]
    logged = d.log
    d.update(Alert(labels=a, starts_at=0, ends_at=400 * NS), 400 * NS)
    assert d.advance(2 * H * NS) == [] and d.log == logged and d.groups() == []


# §17.1: "active_time_intervals: outside which muted".
def test_active_time_interval_mutes_outside_it() -> None:
    cfg = config(intervals={"office": (TimeInterval(times=(TimeRange(60, 120),)),)})
    child = cfg.route.routes[0]
    cfg = AlertingConfig(route=Route(receiver="ops", group_by=("alertname",), routes=(
        Route(matchers=child.matchers, group_wait_ns=child.group_wait_ns, group_interval_ns=child.group_interval_ns,
              repeat_interval_ns=child.repeat_interval_ns, active_time_intervals=("office",)),)),
        receivers=cfg.receivers, time_intervals=cfg.time_intervals)
    assert timeline(replay(cfg, [ev(0, "A")], until_ns=2 * H * NS)) == [(3630, FIRST, ["A"], [])]


# "`send_resolved: false`, A and B resolve | partial resolution sends nothing; final `all alerts resolved`
# logged, not sent".
def test_send_resolved_false() -> None:
    d = Dispatcher(one_group(send_resolved=False))
    a, b = labels_key({"alertname": "A"}), labels_key({"alertname": "B"})
    d.update(Alert(labels=a, starts_at=0), 0)
    d.update(Alert(labels=b, starts_at=0), 0)
    assert timeline(d.advance(30 * NS)) == [(30, FIRST, ["A", "B"], [])]
    d.update(Alert(labels=a, starts_at=0, ends_at=400 * NS), 400 * NS)
    d.update(Alert(labels=b, starts_at=0, ends_at=700 * NS), 700 * NS)
    assert d.advance(2000 * NS) == []
    (entry,) = d.log.values()
    assert entry == (frozenset(), frozenset({fingerprint(b)}), 930 * NS)   # logged at 930 s, not sent


# -- the dedup reasons table, row by row ---------------------------------------------------------------------

E = frozenset


@pytest.mark.parametrize(("entry", "firing", "resolved", "now", "send_resolved", "reason"), [
    # 1 "no previous log entry and something fires | first notification"
    (None, E("a"), E(), 30, True, FIRST),
    (None, E(), E("a"), 30, True, None),
    # 2 "firing set not a subset of the last firing set | new alerts added (first notification if none firing)"
    ((E("a"), E(), 30), E("ab"), E(), 40, True, NEW_ALERTS),
    ((E("a"), E(), 30), E("b"), E("a"), 40, False, NEW_ALERTS),
    ((E(), E("a"), 30), E("a"), E(), 40, True, FIRST),
    # 3 "nothing fires and the last entry had firing alerts | all alerts resolved (logged always)"
    ((E("a"), E(), 30), E(), E("a"), 40, True, ALL_RESOLVED),
    ((E("a"), E(), 30), E(), E("a"), 40, False, ALL_RESOLVED),
    ((E(), E("a"), 30), E(), E("ab"), 40, True, None),
    # 4 "send_resolved and resolved set not a subset of the last resolved set | some alerts resolved"
    ((E("ab"), E(), 30), E("b"), E("a"), 40, True, SOME_RESOLVED),
    ((E("ab"), E(), 30), E("b"), E("a"), 40, False, None),
    ((E("b"), E("a"), 30), E("b"), E("a"), 40, True, None),
    # 5 "now - last > repeat_interval (strict) | repeat interval elapsed"
    ((E("a"), E(), 30), E("a"), E(), 130, True, None),
    ((E("a"), E(), 30), E("a"), E(), 131, True, REPEAT),
    ((E("ab"), E(), 30), E("b"), E("a"), 131, False, REPEAT),
])
def test_dedup_reason_rows_in_order(entry: object, firing: frozenset, resolved: frozenset, now: int,
                                    send_resolved: bool, reason: str | None) -> None:
    assert dedup_reason(entry, firing, resolved, now=now, repeat_interval_ns=100,  # type: ignore[arg-type]
                        send_resolved=send_resolved) == reason


# -- groups ------------------------------------------------------------------------------------------------------


# §17.2: "an empty group is destroyed, so the next alert waits group_wait again"; row 2: "first notification
# if the last entry had none firing".
def test_new_group_after_destruction_waits_group_wait_and_is_a_first_notification() -> None:
    events = [ev(0, "A"), ev(100, "A", "resolved"), ev(400, "A")]
    notes = replay(config(), events, until_ns=800 * NS)
    assert timeline(notes) == [(30, FIRST, ["A"], []), (330, ALL_RESOLVED, [], ["A"]), (430, FIRST, ["A"], [])]


def test_groups_are_separate_per_group_by_value() -> None:
    notes = replay(config(), [ev(0, "A"), ev(10, "B")], until_ns=100 * NS)
    assert [(n.at // NS, names(n.firing), n.group_labels) for n in notes] == [
        (30, ["A"], (("alertname", "A"),)), (40, ["B"], (("alertname", "B"),))]
    assert notes[0].group_key != notes[1].group_key and notes[0].receiver == "ops"


def test_alert_arriving_in_an_existing_group_waits_for_the_next_tick() -> None:
    notes = replay(one_group(), [ev(0, "A"), ev(31, "B")], until_ns=400 * NS)
    assert timeline(notes) == [(30, FIRST, ["A"], []), (330, NEW_ALERTS, ["A", "B"], [])]


def test_update_at_a_flush_instant_is_part_of_that_flush() -> None:
    notes = replay(one_group(), [ev(0, "A"), ev(30, "B")], until_ns=40 * NS)
    assert timeline(notes) == [(30, FIRST, ["A", "B"], [])]


# §17.2: "At a flush, alerts with endsAt ≤ flush time are resolved, the rest firing".
def test_alert_with_a_future_end_resolves_at_the_first_flush_after_it() -> None:
    d = Dispatcher(config())
    d.update(Alert(labels=labels_key({"alertname": "A"}), starts_at=0, ends_at=330 * NS), 0)
    assert timeline(d.advance(700 * NS)) == [(30, FIRST, ["A"], []), (330, ALL_RESOLVED, [], ["A"])]


def test_notification_holds_the_alerts_as_of_the_flush() -> None:
    d = Dispatcher(config())
    a = labels_key({"alertname": "A", "node": "q1"})
    d.update(Alert(labels=a, annotations=(("summary", "old"),), starts_at=0), 0)
    d.update(Alert(labels=a, annotations=(("summary", "new"),), starts_at=0), 10 * NS)
    (n,) = d.advance(30 * NS)
    assert n.firing[0].annotations == (("summary", "new"),) and n.resolved == ()


def test_pagerduty_send_resolved_is_enough_to_emit_resolved() -> None:
    cfg = config(send_resolved=False, pagerduty_resolved=True)
    notes = replay(cfg, [ev(0, "A"), ev(100, "A", "resolved")], until_ns=400 * NS)
    assert [n.reason for n in notes] == [FIRST, ALL_RESOLVED]


def test_continue_routes_notify_each_receiver() -> None:
    cfg = AlertingConfig(
        route=Route(receiver="ops", group_by=("alertname",), group_wait_ns=30 * NS, routes=(
            Route(receiver="pager", matchers=(Matcher("severity", "=", "page"),), continue_=True),
            Route(receiver="hw", matchers=(Matcher("team", "=", "hw"),), group_wait_ns=60 * NS))),
        receivers={r: Receiver(name=r, webhooks=(("http://x", True, 0),)) for r in ("ops", "pager", "hw")})
    notes = replay(cfg, [ev(0, "A", severity="page", team="hw")], until_ns=100 * NS)
    assert [(n.at // NS, n.receiver) for n in notes] == [(30, "pager"), (60, "hw")]


# -- silences and inhibition at flushes ----------------------------------------------------------------------


def silence(name: str, start: int, end: int) -> Silence:
    return Silence(id=name, matchers=(("alertname", name, False, True),), starts_at=start * NS, ends_at=end * NS,
                   created_by="a", comment="c")


def test_silenced_alerts_are_left_out_of_the_notification() -> None:
    notes = replay(one_group(), [ev(0, "A"), ev(0, "B")], until_ns=40 * NS, silences=[silence("B", 0, 10**6)])
    assert timeline(notes) == [(30, FIRST, ["A"], [])]


def test_everything_silenced_sends_nothing_and_logs_nothing_until_the_silence_ends() -> None:
    d = Dispatcher(config(), silences=[silence("A", 0, 30)])
    d.update(Alert(labels=labels_key({"alertname": "A"}), starts_at=0), 0)
    assert d.advance(30 * NS) == [] and d.log == {}       # end inclusive: still silenced at 30 s
    assert timeline(d.advance(330 * NS)) == [(330, FIRST, ["A"], [])]


def test_silenced_resolution_is_not_reported_but_the_alert_is_dropped() -> None:
    events = [ev(0, "A"), ev(0, "B"), ev(100, "B", "resolved")]
    notes = replay(one_group(), events, until_ns=H * NS, silences=[silence("B", 50, 10**6)])
    assert timeline(notes) == [(30, FIRST, ["A", "B"], [])]


def test_silences_are_assignable() -> None:
    d = Dispatcher(config())
    d.silences = [silence("A", 0, 100)]
    d.update(Alert(labels=labels_key({"alertname": "A"}), starts_at=0), 0)
    assert d.advance(30 * NS) == [] and len(d.silences) == 1


INHIBIT = InhibitRule(source_matchers=(Matcher("alertname", "=", "NodeDown"),),
                      target_matchers=(Matcher("severity", "=", "ticket"),), equal=("node",))


def test_inhibited_alerts_are_left_out_while_the_source_fires() -> None:
    events = [ev(0, "NodeDown", node="q1"), ev(0, "Slow", node="q1", severity="ticket"),
              ev(0, "Slow2", node="q2", severity="ticket"), ev(400, "NodeDown", "resolved", node="q1")]
    notes = replay(one_group(inhibit=(INHIBIT,)), events, until_ns=700 * NS)
    assert timeline(notes) == [(30, FIRST, ["NodeDown", "Slow2"], []),
                               (630, NEW_ALERTS, ["Slow", "Slow2"], ["NodeDown"])]


def test_inhibition_sources_come_from_other_groups() -> None:
    events = [ev(0, "NodeDown", node="q1"), ev(0, "Slow", node="q1", severity="ticket")]
    notes = replay(config(inhibit=(INHIBIT,)), events, until_ns=100 * NS)
    assert timeline(notes) == [(30, FIRST, ["NodeDown"], [])]


# -- restart and misuse --------------------------------------------------------------------------------------


def test_restored_log_prevents_a_duplicate_first_notification() -> None:
    a = Alert(labels=labels_key({"alertname": "A"}), starts_at=0)
    d1 = Dispatcher(config())
    d1.update(a, 0)
    assert [n.reason for n in d1.advance(100 * NS)] == [FIRST]
    d2 = Dispatcher(config(), log=d1.log)             # the service restarts at 1000 s
    d2.update(a, 1000 * NS)
    assert d2.advance(2 * H * NS) == []
    # The new group ticks at 1030 + k*300 s; the first tick more than 4 h after the logged 30 s is k = 45.
    assert [(n.at // NS, n.reason) for n in d2.advance(5 * H * NS)] == [(1030 + 45 * 300, REPEAT)]
    assert list(d2.log.values())[0][2] == (1030 + 45 * 300) * NS


def test_restored_log_lets_a_resolved_alert_clear_it() -> None:
    a = labels_key({"alertname": "A"})
    d1 = Dispatcher(config())
    d1.update(Alert(labels=a, starts_at=0), 0)
    d1.advance(100 * NS)
    d2 = Dispatcher(config(), log={k: (sorted(f), list(r), s) for k, (f, r, s) in d1.log.items()})
    d2.update(Alert(labels=a, starts_at=0, ends_at=500 * NS), 500 * NS)
    assert timeline(d2.advance(600 * NS)) == [(530, ALL_RESOLVED, [], ["A"])]


def test_bad_log_entry_is_rejected() -> None:
    with pytest.raises(TimelineError, match="notification log entry"):
        Dispatcher(config(), log={("ops", "g"): (["a"], 5)})


def test_time_going_backwards_is_rejected() -> None:
    d = Dispatcher(config())
    d.advance(100 * NS)
    with pytest.raises(TimelineError, match="only moves forward"):
        d.update(Alert(labels=labels_key({"alertname": "A"}), starts_at=0), 50 * NS)


def test_unknown_receiver_is_named() -> None:
    cfg = AlertingConfig(route=Route(receiver="nobody"), receivers={})
    with pytest.raises(TimelineError, match="'nobody'"):
        replay(cfg, [ev(0, "A")])


def test_zero_group_interval_is_rejected_instead_of_looping() -> None:
    with pytest.raises(TimelineError, match="group_interval must be positive"):
        replay(config(interval=0), [ev(0, "A")])


def test_next_flush_ns() -> None:
    d = Dispatcher(config())
    assert d.next_flush_ns() is None
    d.update(Alert(labels=labels_key({"alertname": "A"}), starts_at=0), 5 * NS)
    assert d.next_flush_ns() == 35 * NS
    d.advance(35 * NS)
    assert d.next_flush_ns() == 335 * NS


# -- replay ----------------------------------------------------------------------------------------------------


def test_replay_accepts_ns_and_compound_durations_and_sorts_events() -> None:
    events = [{"t": 400 * NS, "labels": {"alertname": "A"}, "state": "resolved"},
              {"t": "0s", "labels": {"alertname": "A"}, "state": "firing", "annotations": {"summary": "s"}}]
    notes = replay(config(), events, until_ns=3 * H * NS)
    assert timeline(notes) == [(30, FIRST, ["A"], []), (630, ALL_RESOLVED, [], ["A"])]
    assert notes[1].resolved[0].annotations == (("summary", "s"),)
    assert notes[1].resolved[0].starts_at == 0 and notes[1].resolved[0].ends_at == 400 * NS
    assert timeline(replay(config(), [ev("1h1m", "A")], until_ns=2 * H * NS)) == [(3690, FIRST, ["A"], [])]


def test_replay_until_ignores_later_events_and_defaults_to_a_day_after_the_last() -> None:
    assert replay(config(), [ev(0, "A"), ev(100, "B")], until_ns=50 * NS)[-1].at == 30 * NS
    assert REPLAY_TAIL_NS == 24 * H * NS
    notes = replay(config(), [ev(0, "A")])
    assert notes[-1].at <= 24 * H * NS and [n.reason for n in notes].count(REPEAT) == 5


def test_refiring_alert_keeps_its_start() -> None:
    (n,) = replay(config(), [ev(0, "A"), ev(10, "A")], until_ns=40 * NS)
    assert n.firing[0].starts_at == 0


@pytest.mark.parametrize(("events", "needle"), [
    ({"t": "0s"}, "JSON list"),
    ([ev(0, "A"), "x"], "event 1: 'x' is not an object"),
    ([ev(0, "A"), {"labels": {"alertname": "A"}, "state": "firing"}], "event 1: missing t"),
    ([{"t": "5 minutes", "labels": {"a": "b"}, "state": "firing"}], "event 0: t '5 minutes'"),
    ([{"t": -1, "labels": {"a": "b"}, "state": "firing"}], "event 0: t -1 ns is negative"),
    ([{"t": True, "labels": {"a": "b"}, "state": "firing"}], "event 0: t True"),
    ([ev(0, "A"), ev(1, "B"), {"t": "1s", "labels": {"a": 1}, "state": "firing"}], "event 2: labels"),
    ([{"t": "1s", "labels": {"a": ""}, "state": "firing"}], "event 0: labels {'a': ''} are empty"),
    ([{"t": "1s", "labels": {"a": "b"}, "state": "pending"}], "event 0: state 'pending'"),
    ([{"t": "1s", "labels": {"a": "b"}, "state": "firing", "annotations": ["x"]}], "event 0: annotations"),
    ([{"t": "1s", "labels": {"a": "b"}, "state": "firing", "at": 1}], "event 0: unknown keys ['at']"),
])
def test_replay_errors_name_the_event(events: object, needle: str) -> None:
    with pytest.raises(ReplayError) as e:
        replay(config(), events)  # type: ignore[arg-type]
    assert needle in str(e.value)


# -- properties ------------------------------------------------------------------------------------------------

EVENTS = st.lists(
    st.fixed_dictionaries({"t": st.integers(min_value=0, max_value=3000).map(lambda s: f"{s}s"),
                           "labels": st.fixed_dictionaries({"alertname": st.sampled_from("ABC"),
                                                            "node": st.sampled_from(["q1", "q2"])}),
                           "state": st.sampled_from(["firing", "resolved"])}),
    max_size=12)
MUTED = config(mute=("m",), intervals={"m": (TimeInterval(times=(TimeRange(10, 20),)),)})
CONFIGS = st.sampled_from([config(), config(group_by=None), config(send_resolved=False),
                           config(wait=0, interval=60, repeat=60), config(inhibit=(INHIBIT,)), MUTED])


@settings(max_examples=150, deadline=None)
@given(CONFIGS, EVENTS)
def test_replay_is_deterministic(cfg: AlertingConfig, events: list[dict]) -> None:
    assert replay(cfg, events, until_ns=6000 * NS) == replay(cfg, events, until_ns=6000 * NS)


@settings(max_examples=150, deadline=None)
@given(CONFIGS, EVENTS)
def test_notifications_are_never_empty_and_never_before_group_wait(cfg: AlertingConfig,
                                                                   events: list[dict]) -> None:
    wait = cfg.route.routes[0].group_wait_ns
    assert wait is not None
    times = sorted(int(e["t"][:-1]) * NS for e in events)
    for n in replay(cfg, events, until_ns=6000 * NS):
        assert n.firing or n.resolved
        members = [int(e["t"][:-1]) * NS for e in events
                   if labels_key({k: v for k, v in e["labels"].items() if (k, v) in n.group_labels})
                   == n.group_labels]
        assert members and n.at >= min(members) + wait >= times[0] + wait
        assert {a.fingerprint for a in n.firing}.isdisjoint(a.fingerprint for a in n.resolved)
        assert all(a.ends_at is None or a.ends_at > n.at for a in n.firing)
        assert all(a.ends_at is not None and a.ends_at <= n.at for a in n.resolved)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([config(), config(group_by=None), config(wait=0, interval=60, repeat=60)]), EVENTS)
def test_when_everything_resolves_the_log_ends_with_nothing_firing(cfg: AlertingConfig, events: list[dict]) -> None:
    tail = [{"t": "3100s", "labels": e["labels"], "state": "resolved"} for e in events]
    d = Dispatcher(cfg)
    for e in sorted(events, key=lambda e: int(e["t"][:-1])) + tail:
        t = int(e["t"][:-1]) * NS
        d.update(Alert(labels=labels_key(e["labels"]), starts_at=t,
                       ends_at=None if e["state"] == "firing" else t), t)
    d.advance(6000 * NS)
    assert d.groups() == [] and d.next_flush_ns() is None
    assert all(not firing for firing, _, _ in d.log.values())
