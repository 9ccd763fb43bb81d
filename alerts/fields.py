"""Field readers shared by the alerts package's loaders (the alerting config, alert rule files): label names
and durations, each bad value recorded as a :class:`qfleet.problems.Problem` at its key path.

>>> from qfleet.problems import Problems
>>> found = Problems()
>>> duration_at(found, "route.group_wait", "1h30m"), duration_at(found, "route.group_interval", "5m5m")
(5400000000000, None)
>>> print(found.items[0])
route.group_interval: duration '5m5m' is not valid (fix: write whole numbers with units y, w, d, h, m, s, ms, largest first, each once (e.g. 90s, 1h30m, 1d))
"""

from __future__ import annotations

import re

from qfleet.problems import Problems
from qfleet.units import DurationError, parse_duration

__all__ = ["LABEL_NAME_RULE", "duration_at", "is_label_name"]

#: Prometheus' label-name grammar, for messages (Alertmanager's matchers, ``group_by``, rule labels).
LABEL_NAME_RULE = "[A-Za-z_][A-Za-z0-9_]*"
_LABEL_NAME = re.compile(rf"{LABEL_NAME_RULE}\Z")


def is_label_name(text: object) -> bool:
    """Whether ``text`` is a Prometheus label name (:data:`LABEL_NAME_RULE`).

    >>> is_label_name("qfleet_hardware_type"), is_label_name("1abc"), is_label_name("qfleet.site")
    (True, False, False)
    """
    return isinstance(text, str) and _LABEL_NAME.match(text) is not None


def duration_at(found: Problems, path: str, value: object, *, positive: bool = False) -> int | None:
    """``value`` read as a Prometheus duration (:func:`qfleet.units.parse_duration`) in ns, or None after
    recording in ``found`` what is wrong with it at ``path``.

    Args:
        found: the loader's problems.
        path: the key path of ``value``, e.g. ``route.group_wait``.
        value: the parsed YAML value (``"90s"``, ``"1h30m"``, ``0``...).
        positive: zero is a problem too (intervals, timeouts).
    """
    try:
        ns = parse_duration(value)
    except DurationError as err:
        # The units module words its errors "<what is wrong>: <how to fix it>"; keep the two apart.
        message, _, fix = str(err).rpartition(": ")
        found.add(path, message or str(err), fix if message else "", "bad_duration")
        return None
    if positive and ns == 0:
        found.add(path, "cannot be zero", "use a positive duration such as 5m", "zero_duration")
        return None
    return ns
