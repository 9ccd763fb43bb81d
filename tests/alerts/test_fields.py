"""The field readers the alerting config and rule files share: label names and Prometheus durations."""

from __future__ import annotations

from typing import Any

import pytest

from qfleet.alerts.fields import duration_at, is_label_name
from qfleet.problems import Problems
from qfleet.units import NS


@pytest.mark.parametrize(("value", "ns"), [("90s", 90 * NS), ("1h30m", 5400 * NS), ("250ms", NS // 4), ("0", 0),
                                           (0, 0), ("1d", 86400 * NS)])
def test_durations_are_read(value: Any, ns: int) -> None:
    found = Problems()
    assert duration_at(found, "a.b", value) == ns and not found.items


@pytest.mark.parametrize("value", ["5m5m", "30m1h", "1.5h", "5", 30, None, True, "5 m"])
def test_a_bad_duration_is_one_problem_at_its_path(value: Any) -> None:
    found = Problems()
    assert duration_at(found, "route.group_wait", value) is None
    [p] = found.items
    assert (p.path, p.code) == ("route.group_wait", "bad_duration")
    assert repr(value) in p.message and p.fix.startswith("write ")


def test_positive_rejects_zero() -> None:
    found = Problems()
    assert duration_at(found, "global.resolve_timeout", "0s", positive=True) is None
    assert [(p.path, p.message, p.code) for p in found.items] == [
        ("global.resolve_timeout", "cannot be zero", "zero_duration")]
    assert duration_at(found, "x", "1ms", positive=True) == NS // 1000


@pytest.mark.parametrize(("text", "ok"), [("alertname", True), ("_x1", True), ("A", True), ("1a", False),
                                          ("a-b", False), ("a.b", False), ("", False), ("a\n", False), (1, False)])
def test_label_names(text: Any, ok: bool) -> None:
    assert is_label_name(text) is ok
