"""Alertmanager API v2 silences: matching, activity, and the JSON shape (sre.md §17.3).

A silence holds ``(name, value, isRegex, isEqual)`` matchers; it silences an alert whose labels satisfy every
matcher while ``startsAt <= t <= endsAt`` (both ends inclusive). Regexes are fully anchored, a missing label is the
empty string, and ``isEqual: false`` negates the matcher (``!=`` / ``!~``).

>>> s = silence_from_api({"matchers": [{"name": "site", "value": "delft", "isRegex": False},
...                                    {"name": "slo", "value": "fidelity", "isRegex": False, "isEqual": False}],
...                       "startsAt": "2026-12-01T10:00:00Z", "endsAt": "2026-12-01T12:00:00Z",
...                       "createdBy": "ana", "comment": "maintenance"}, id="s1")
>>> silence_matches(s, {"site": "delft", "slo": "latency"}), silence_matches(s, {"site": "delft", "slo": "fidelity"})
(True, False)
>>> silence_to_api(s)["endsAt"]
'2026-12-01T12:00:00Z'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

from qfleet.alerts.model import NS, Labels, Silence

__all__ = [
    "SilenceError",
    "format_rfc3339",
    "parse_rfc3339",
    "silence_active",
    "silence_from_api",
    "silence_matches",
    "silence_state",
    "silence_to_api",
    "silenced",
]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})\Z")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MATCHER_KEYS = {"name", "value", "isRegex", "isEqual"}


class SilenceError(ValueError):
    """A silence document that Alertmanager would reject (bad matcher, times, missing author or comment)."""


@lru_cache(maxsize=1024)
def _regex(value: str) -> re.Pattern[str]:
    try:
        return re.compile(f"(?:{value})\\Z")
    except re.error as e:
        raise SilenceError(f"silence matcher regex {value!r} is invalid ({e}); use an RE2-style expression, "
                           "e.g. qpu-.*") from e


def _matcher_holds(matcher: tuple[str, str, bool, bool], labels: Mapping[str, str]) -> bool:
    name, value, is_regex, is_equal = matcher
    v = labels.get(name, "")
    hit = _regex(value).match(v) is not None if is_regex else v == value
    return hit if is_equal else not hit


def _as_dict(labels: Mapping[str, str] | Labels) -> Mapping[str, str]:
    return labels if isinstance(labels, Mapping) else dict(labels)


def silence_matches(s: Silence, labels: Mapping[str, str] | Labels) -> bool:
    """Whether every matcher of ``s`` holds for ``labels`` (anchored regexes; ``isEqual`` False negates).

    >>> s = Silence(id="x", matchers=(("node", "qpu-1", True, True),), starts_at=0, ends_at=1,
    ...             created_by="a", comment="c")
    >>> silence_matches(s, {"node": "qpu-1"}), silence_matches(s, {"node": "qpu-10"})
    (True, False)
    """
    d = _as_dict(labels)
    return all(_matcher_holds(m, d) for m in s.matchers)


def silence_active(s: Silence, t_ns: int) -> bool:
    """Active while ``starts_at <= t_ns <= ends_at`` (the end is inclusive, as in Alertmanager)."""
    return s.starts_at <= t_ns <= s.ends_at


def silence_state(s: Silence, t_ns: int) -> Literal["pending", "active", "expired"]:
    """Alertmanager's silence state at ``t_ns``.

    >>> s = Silence(id="x", matchers=(("a", "b", False, True),), starts_at=10, ends_at=20, created_by="a",
    ...             comment="c")
    >>> [silence_state(s, t) for t in (9, 10, 20, 21)]
    ['pending', 'active', 'active', 'expired']
    """
    if t_ns < s.starts_at:
        return "pending"
    return "active" if t_ns <= s.ends_at else "expired"


def silenced(silences: Iterable[Silence], labels: Mapping[str, str] | Labels, t_ns: int) -> bool:
    """Whether any silence active at ``t_ns`` matches ``labels``."""
    d = _as_dict(labels)
    return any(silence_active(s, t_ns) and silence_matches(s, d) for s in silences)


def parse_rfc3339(text: str) -> int:
    """RFC 3339 text to integer Unix ns (nanosecond fractions kept).

    >>> parse_rfc3339("1970-01-01T00:00:01.5+01:00")
    -3598500000000
    """
    m = _RFC3339.match(text.strip()) if isinstance(text, str) else None
    if not m:
        raise SilenceError(f"time {text!r} is not RFC 3339; write e.g. 2026-12-01T10:00:00Z")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, zone = m.group(7) or "", m.group(8)
    offset = timedelta(0)
    if zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        offset = sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6]))
    try:
        dt = datetime(year, month, day, hour, minute, second, tzinfo=UTC) - offset
    except ValueError as e:
        raise SilenceError(f"time {text!r} is not a valid date ({e}); write e.g. 2026-12-01T10:00:00Z") from e
    delta = dt - _EPOCH
    seconds = delta.days * 86_400 + delta.seconds
    return seconds * NS + int(frac.ljust(9, "0") if frac else 0)


def format_rfc3339(t_ns: int) -> str:
    """Integer Unix ns to RFC 3339 UTC, fraction trimmed as Go's RFC3339Nano (inverse of :func:`parse_rfc3339`).

    >>> format_rfc3339(1_500_000_000), format_rfc3339(0)
    ('1970-01-01T00:00:01.5Z', '1970-01-01T00:00:00Z')
    """
    seconds, frac = divmod(t_ns, NS)
    text = (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


def _time(doc: Mapping[str, Any], key: str) -> int:
    if key not in doc:
        raise SilenceError(f"silence has no {key!r}; give an RFC 3339 time, e.g. 2026-12-01T10:00:00Z")
    v = doc[key]
    if isinstance(v, bool):
        raise SilenceError(f"silence {key} {v!r} is not a time; give RFC 3339 text or integer Unix ns")
    if isinstance(v, int):
        return v
    if isinstance(v, str):
        return parse_rfc3339(v)
    raise SilenceError(f"silence {key} {v!r} is not a time; give RFC 3339 text or integer Unix ns")


def _matcher(i: int, m: Any) -> tuple[str, str, bool, bool]:
    if not isinstance(m, Mapping):
        raise SilenceError(f"silence matcher {i} ({m!r}) is not an object; write "
                           '{"name": "site", "value": "delft", "isRegex": false}')
    extra = set(m) - _MATCHER_KEYS
    if extra:
        raise SilenceError(f"silence matcher {i} has unknown keys {sorted(extra)}; allowed: {sorted(_MATCHER_KEYS)}")
    name, value = m.get("name"), m.get("value")
    if not isinstance(name, str) or not _LABEL_NAME.match(name):
        raise SilenceError(f"silence matcher {i} name {name!r} is not a label name; use [a-zA-Z_][a-zA-Z0-9_]*")
    if not isinstance(value, str):
        raise SilenceError(f"silence matcher {i} ({name}) value {value!r} is not a string")
    is_regex, is_equal = m.get("isRegex", False), m.get("isEqual", True)
    for key, flag in (("isRegex", is_regex), ("isEqual", is_equal)):
        if not isinstance(flag, bool):
            raise SilenceError(f"silence matcher {i} ({name}) {key} {flag!r} is not true or false")
    if is_regex:
        _regex(value)
    return name, value, is_regex, is_equal


def silence_from_api(doc: Mapping[str, Any], *, id: str) -> Silence:  # noqa: A002 - the API's field name
    """A validated :class:`Silence` from an API v2 ``postableSilence`` document (times RFC 3339 or integer ns).

    Rejected as Alertmanager does: no matchers, a bad name or regex, every matcher matching the empty string
    (that would silence everything), ``endsAt`` before ``startsAt``, an empty ``createdBy`` or ``comment``.
    ``isEqual`` defaults to true, ``isRegex`` to false.
    """
    if not isinstance(doc, Mapping):
        raise SilenceError(f"silence {id!r} is {type(doc).__name__}, not an object")
    matchers = doc.get("matchers")
    if not isinstance(matchers, list | tuple) or not matchers:
        raise SilenceError(f"silence {id!r} needs at least one matcher, e.g. "
                           '[{"name": "site", "value": "delft", "isRegex": false}]')
    ms = tuple(_matcher(i, m) for i, m in enumerate(matchers))
    if all(_matcher_holds(m, {}) for m in ms):
        raise SilenceError(f"silence {id!r}: every matcher matches the empty string, so it would silence all "
                           "alerts; add a matcher that requires a label value, e.g. site=\"delft\"")
    starts, ends = _time(doc, "startsAt"), _time(doc, "endsAt")
    if ends < starts:
        raise SilenceError(f"silence {id!r} ends ({doc['endsAt']!r}) before it starts ({doc['startsAt']!r}); "
                           "swap them or extend endsAt")
    created_by, comment = doc.get("createdBy"), doc.get("comment")
    if not isinstance(created_by, str) or not created_by.strip():
        raise SilenceError(f"silence {id!r} has no createdBy; say who created it")
    if not isinstance(comment, str) or not comment.strip():
        raise SilenceError(f"silence {id!r} has no comment; say why alerts are silenced")
    return Silence(id=id, matchers=ms, starts_at=starts, ends_at=ends, created_by=created_by, comment=comment)


def silence_to_api(s: Silence) -> dict[str, Any]:
    """The API v2 JSON shape of ``s`` (``id``, ``matchers``, RFC 3339 ``startsAt``/``endsAt``, author, comment)."""
    return {
        "id": s.id,
        "matchers": [{"name": n, "value": v, "isRegex": r, "isEqual": e} for n, v, r, e in s.matchers],
        "startsAt": format_rfc3339(s.starts_at),
        "endsAt": format_rfc3339(s.ends_at),
        "createdBy": s.created_by,
        "comment": s.comment,
    }
