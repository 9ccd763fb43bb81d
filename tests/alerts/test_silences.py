"""Silences: matching, the inclusive active window, the API v2 JSON shape (sre.md §17.3), and the store that
validates every silence before it writes it."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Engine, func, insert, select

from qfleet.alerts.model import Matcher, Silence
from qfleet.alerts.schema import SilenceRecord
from qfleet.alerts.silence_store import SilenceStore
from qfleet.alerts.silences import (
    SilenceError,
    matcher_text,
    silence_active,
    silence_from_api,
    silence_matchers,
    silence_matches,
    silence_state,
    silence_to_api,
    silenced,
)
from qfleet.problems import ProblemsError
from qfleet.units import NS, format_rfc3339, parse_rfc3339

T0 = parse_rfc3339("2026-12-01T10:00:00Z")


def doc(*matchers: dict, starts: object = "2026-12-01T10:00:00Z", ends: object = "2026-12-01T12:00:00Z",
        **extra: object) -> dict:
    d = {"matchers": list(matchers) or [{"name": "site", "value": "delft", "isRegex": False}],
         "startsAt": starts, "endsAt": ends, "createdBy": "ana", "comment": "maintenance"}
    d.update(extra)
    return d


def sil(*matchers: tuple[str, str, bool, bool], start: int = 0, end: int = 100) -> Silence:
    return Silence(id="s", matchers=matchers, starts_at=start, ends_at=end, created_by="a", comment="c")


# sre.md §17.3: "active while startsAt ≤ t ≤ endsAt".
@pytest.mark.parametrize(("t", "active"), [(9, False), (10, True), (15, True), (20, True), (21, False)])
def test_active_window_includes_both_ends(t: int, active: bool) -> None:
    s = sil(("a", "b", False, True), start=10, end=20)
    assert silence_active(s, t) is active
    assert silenced([s], {"a": "b"}, t) is active


# sre.md §17.3: "States pending, active, expired".
def test_states() -> None:
    s = sil(("a", "b", False, True), start=10, end=20)
    assert [silence_state(s, t) for t in (0, 10, 20, 21)] == ["pending", "active", "active", "expired"]


# sre.md §17.3: "isEqual defaults to true; false negates, e.g. silence all of site=delft except slo=fidelity".
def test_is_equal_false_negates_the_matcher() -> None:
    s = silence_from_api(doc({"name": "site", "value": "delft", "isRegex": False},
                             {"name": "slo", "value": "fidelity", "isRegex": False, "isEqual": False}), id="x")
    assert s.matchers == (("site", "delft", False, True), ("slo", "fidelity", False, False))
    assert silence_matches(s, {"site": "delft", "slo": "latency"})
    assert silence_matches(s, {"site": "delft"})                      # missing slo is "" != "fidelity"
    assert not silence_matches(s, {"site": "delft", "slo": "fidelity"})
    assert not silence_matches(s, {"site": "paris", "slo": "latency"})


def test_negated_regex() -> None:
    s = sil(("site", "delft", False, True), ("node", "qpu-[12]", True, False))
    assert silence_matches(s, {"site": "delft", "node": "qpu-3"})
    assert not silence_matches(s, {"site": "delft", "node": "qpu-1"})
    assert silence_matches(s, {"site": "delft", "node": "qpu-10"})    # anchored: qpu-10 is not qpu-[12]


# sre.md §17.1: regex matchers are fully anchored; a missing label equals the empty string.
@pytest.mark.parametrize(("labels", "hit"), [({"node": "qpu-1"}, True), ({"node": "qpu-10"}, False),
                                             ({"node": "xqpu-1"}, False), ({}, False)])
def test_regex_is_fully_anchored(labels: dict, hit: bool) -> None:
    assert silence_matches(sil(("node", "qpu-1", True, True)), labels) is hit


def test_all_matchers_must_hold_and_tuple_labels_work() -> None:
    s = sil(("a", "1", False, True), ("b", "2", False, True))
    assert silence_matches(s, (("a", "1"), ("b", "2")))
    assert not silence_matches(s, {"a": "1"})


def test_silenced_needs_an_active_matching_silence() -> None:
    on = sil(("a", "1", False, True), start=0, end=10)
    later = sil(("b", "1", False, True), start=50, end=60)
    assert silenced([later, on], {"a": "1"}, 5)
    assert not silenced([later, on], {"b": "1"}, 5)
    assert silenced([later, on], {"b": "1"}, 55)
    assert not silenced([], {"a": "1"}, 5)


def test_from_api_times_rfc3339_with_offsets_fractions_and_ns() -> None:
    s = silence_from_api(doc(starts="2026-12-01T11:00:00.000000001+01:00", ends=T0 + 3600 * NS), id="x")
    assert s.starts_at == T0 + 1 and s.ends_at == T0 + 3600 * NS
    assert (s.id, s.created_by, s.comment) == ("x", "ana", "maintenance")
    assert parse_rfc3339("1970-01-01T00:00:00Z") == 0
    assert T0 == int(datetime.fromisoformat("2026-12-01T10:00:00+00:00").timestamp()) * NS


def test_to_api_shape() -> None:
    s = silence_from_api(doc(starts="2026-12-01T10:00:00.250Z"), id="x")
    assert silence_to_api(s) == {
        "id": "x", "matchers": [{"name": "site", "value": "delft", "isRegex": False, "isEqual": True}],
        "startsAt": "2026-12-01T10:00:00.25Z", "endsAt": "2026-12-01T12:00:00Z", "createdBy": "ana",
        "comment": "maintenance"}


@given(st.integers(min_value=-(10**18), max_value=4 * 10**18))
def test_rfc3339_round_trip(t: int) -> None:
    assert parse_rfc3339(format_rfc3339(t)) == t


@given(st.integers(min_value=0, max_value=10**18), st.integers(min_value=0, max_value=10**15),
       st.booleans(), st.booleans())
def test_api_round_trip(start: int, length: int, is_regex: bool, is_equal: bool) -> None:
    s = Silence(id="i", matchers=(("site", "delft", False, True), ("node", "q.*", is_regex, is_equal)),
                starts_at=start, ends_at=start + length, created_by="ana", comment="why")
    api = silence_to_api(s)
    assert silence_from_api(api, id=api["id"]) == s


@pytest.mark.parametrize(("d", "needle"), [
    (doc(matchers=[]), "at least one matcher"),
    (doc({"name": "node", "value": "qpu-(", "isRegex": True}), "qpu-("),
    (doc({"name": "no-de", "value": "x", "isRegex": False}), "no-de"),
    (doc({"name": "node", "value": "x", "isRegex": "yes"}), "isRegex"),
    (doc({"name": "node", "value": 3, "isRegex": False}), "3"),
    (doc({"name": "node", "value": "x", "isRegex": False, "op": "="}), "op"),
    (doc({"name": "node", "value": ".*", "isRegex": True}), "empty string"),
    (doc({"name": "node", "value": "x", "isRegex": False, "isEqual": False}), "empty string"),
    (doc(starts="2026-12-01T12:00:00Z", ends="2026-12-01T10:00:00Z"), "before it starts"),
    (doc(starts="yesterday"), "yesterday"),
    (doc(starts="2026-02-30T10:00:00Z"), "2026-02-30"),
    (doc(createdBy=""), "createdBy"),
    (doc(comment="  "), "comment"),
    (["not", "a", "dict"], "not an object"),
])
def test_from_api_rejects_what_alertmanager_rejects(d: object, needle: str) -> None:
    with pytest.raises(SilenceError, match=None) as e:
        silence_from_api(d, id="s1")  # type: ignore[arg-type]
    assert needle in str(e.value)
    assert isinstance(e.value, ProblemsError) and isinstance(e.value, ValueError)
    assert all(p.fix for p in e.value.problems)  # every problem says how to fix it


def test_from_api_reports_every_problem_at_once() -> None:
    bad = doc({"name": "no-de", "value": "x"}, {"name": "node", "value": "(", "isRegex": True},
              starts="yesterday", createdBy="", comment="")
    with pytest.raises(SilenceError) as e:
        silence_from_api(bad, id="s1")
    assert [p.path for p in e.value.problems] == ["matchers[0].name", "matchers[1].value", "startsAt", "createdBy",
                                                  "comment"]
    assert str(e.value).startswith("silence 's1': 5 problems")


def test_missing_times_are_rejected() -> None:
    d = doc()
    del d["endsAt"]
    with pytest.raises(SilenceError, match="endsAt"):
        silence_from_api(d, id="s1")


def test_equal_start_and_end_is_allowed() -> None:
    s = silence_from_api(doc(starts=T0, ends=T0), id="x")
    assert silence_active(s, T0) and not silence_active(s, T0 + 1)


def test_matchers_in_text_form_and_back() -> None:
    ms = [Matcher("node", "=", "qpu-a"), Matcher("node", "!=", "qpu-b"), Matcher("slo", "=~", "fid.*"),
          Matcher("slo", "!~", "lat.*")]
    tuples = silence_matchers(ms)
    assert tuples == (("node", "qpu-a", False, True), ("node", "qpu-b", False, False), ("slo", "fid.*", True, True),
                      ("slo", "lat.*", True, False))
    assert [matcher_text(t) for t in tuples] == [str(m) for m in ms]   # Alertmanager's own spelling


# -- the store ---------------------------------------------------------------------------------------------------


def _count(engine: Engine) -> int:
    with engine.connect() as c:
        return int(c.execute(select(func.count()).select_from(SilenceRecord.__table__)).scalar_one())


def test_store_adds_lists_and_expires(engine: Engine) -> None:
    store = SilenceStore(engine)
    s = store.add(['node="qpu-a"', 'slo!~"fid.*"'], starts_at=T0, ends_at=T0 + 3600 * NS, created_by="ana",
                  comment="recalibration")
    assert s.matchers == (("node", "qpu-a", False, True), ("slo", "fid.*", True, False))
    assert store.get(s.id) == s and store.list() == [s]
    assert store.active(T0) == [s] and store.active(T0 + 3600 * NS) == [s] and store.active(T0 + 3600 * NS + 1) == []
    later = store.add(['node="qpu-b"'], starts_at=T0 + 7200 * NS, ends_at=T0 + 9000 * NS, created_by="ana",
                      comment="later")
    assert store.list() == [s, later] and silence_state(later, T0) == "pending"
    # Expiring ends an active silence now; a pending one also starts now (nothing silenced in between).
    assert store.expire(s.id, T0 + 60 * NS).ends_at == T0 + 60 * NS
    gone = store.expire(later.id, T0 + 120 * NS)
    assert (gone.starts_at, gone.ends_at) == (T0 + 120 * NS, T0 + 120 * NS)
    with pytest.raises(SilenceError, match="no active silence with id"):
        store.expire(s.id, T0 + 180 * NS)
    with pytest.raises(SilenceError, match="'nope'"):
        store.get("nope")
    assert silence_to_api(store.get(s.id))["matchers"][1] == {"name": "slo", "value": "fid.*", "isRegex": True,
                                                              "isEqual": False}


@pytest.mark.parametrize(("matchers", "kw", "paths"), [
    (["node: qpu-a"], {}, ["matchers[0]"]),
    (['node=~"("'], {}, ["matchers[0]"]),
    ([], {}, ["matchers"]),
    (['node=~".*"'], {}, ["matchers"]),                       # would silence everything
    (['node="a"'], {"ends_at": T0}, ["endsAt"]),              # a silence must last
    (['node="a"'], {"created_by": " "}, ["createdBy"]),
    (['node="a"'], {"comment": ""}, ["comment"]),
    (["node: qpu-a", 'slo="x"'], {"created_by": "", "comment": ""}, ["matchers[0]", "createdBy", "comment"]),
])
def test_store_refuses_bad_silences_before_writing(sqlite_engine: Engine, matchers: list[str], kw: dict[str, object],
                                                   paths: list[str]) -> None:
    args: dict[str, object] = {"starts_at": T0, "ends_at": T0 + NS, "created_by": "ana", "comment": "why", **kw}
    with pytest.raises(SilenceError) as e:
        SilenceStore(sqlite_engine).add(matchers, **args)  # type: ignore[arg-type]
    assert [p.path for p in e.value.problems] == paths
    assert all(p.fix for p in e.value.problems)
    assert _count(sqlite_engine) == 0


def test_store_skips_a_stored_row_that_no_longer_validates(sqlite_engine: Engine) -> None:
    """A row written before silences were validated on the way in (here: a bad regex) is left out, not fatal."""
    with sqlite_engine.begin() as c:
        c.execute(insert(SilenceRecord.__table__).values(
            id="old", matchers={"matchers": [{"name": "node", "value": "(", "isRegex": True, "isEqual": True}]},
            starts_at_unix_nano=0, ends_at_unix_nano=T0, created_by="x", comment="y", updated_unix_nano=0))
    store = SilenceStore(sqlite_engine)
    ok = store.add(['node="a"'], starts_at=0, ends_at=T0, created_by="ana", comment="why")
    assert store.list() == [ok]
