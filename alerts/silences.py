"""Alertmanager API v2 silences: matching, activity, and the JSON shape (sre.md §17.3).

A silence holds ``(name, value, isRegex, isEqual)`` matchers; it silences an alert whose labels satisfy every
matcher while ``startsAt <= t <= endsAt`` (both ends inclusive). Regexes are RE2, fully anchored as Alertmanager's
(:mod:`qfleet.alerts.regex`), a missing label is the empty string, and ``isEqual: false`` negates the matcher
(``!=`` / ``!~``).

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
from typing import Any, Literal

from qfleet.alerts.model import Labels, Matcher, Silence
from qfleet.alerts.regex import RegexError, UserRegex, compile_regex
from qfleet.problems import Problem, Problems, ProblemsError
from qfleet.units import TimestampError, format_rfc3339, parse_rfc3339

__all__ = [
    "SilenceError",
    "matcher_text",
    "silence_active",
    "silence_from_api",
    "silence_matchers",
    "silence_matches",
    "silence_state",
    "silence_to_api",
    "silenced",
]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_MATCHER_KEYS = ("name", "value", "isRegex", "isEqual")
_EXAMPLE = '{"name": "site", "value": "delft", "isRegex": false}'
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1   # times are stored as signed 64-bit Unix ns
_OPS = {(False, True): "=", (False, False): "!=", (True, True): "=~", (True, False): "!~"}


class SilenceError(ProblemsError):
    """A silence that Alertmanager would reject (bad matcher, times, missing author or comment); ``problems``
    names every one with its field and fix."""


def _regex(value: str) -> UserRegex:
    try:
        return compile_regex(value)
    except RegexError as e:
        raise SilenceError([Problem("matchers", e.message, e.fix, "bad_regex")]) from e


def _matcher_holds(matcher: tuple[str, str, bool, bool], labels: Mapping[str, str]) -> bool:
    name, value, is_regex, is_equal = matcher
    v = labels.get(name, "")
    hit = _regex(value).matches(v) if is_regex else v == value
    return hit if is_equal else not hit


def _as_dict(labels: Mapping[str, str] | Labels) -> Mapping[str, str]:
    return labels if isinstance(labels, Mapping) else dict(labels)


def silence_matchers(matchers: Iterable[Matcher]) -> tuple[tuple[str, str, bool, bool], ...]:
    """Alertmanager matchers (``node="qpu-a"``, ``slo!~"fid.*"``) as a silence's ``(name, value, isRegex,
    isEqual)`` tuples.

    >>> silence_matchers([Matcher("slo", "!~", "fid.*")])
    (('slo', 'fid.*', True, False),)
    """
    return tuple((m.name, m.value, m.op in ("=~", "!~"), m.op in ("=", "=~")) for m in matchers)


def matcher_text(matcher: tuple[str, str, bool, bool]) -> str:
    """A silence matcher in Alertmanager's text form.

    >>> matcher_text(("node", "qpu-a", False, False)), matcher_text(("slo", "fid.*", True, True))
    ('node!="qpu-a"', 'slo=~"fid.*"')
    """
    name, value, is_regex, is_equal = matcher
    return f'{name}{_OPS[(is_regex, is_equal)]}"{value}"'


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


def _time(doc: Mapping[str, Any], key: str, found: Problems) -> int | None:
    if key not in doc:
        found.add(key, "missing", "give an RFC 3339 time, e.g. 2026-12-01T10:00:00Z", "missing")
        return None
    v = doc[key]
    if isinstance(v, int) and not isinstance(v, bool):
        t = v
    else:
        try:
            t = parse_rfc3339(v)
        except TimestampError as e:
            found.add(key, str(e), "give RFC 3339 text or integer Unix ns", "bad_time")
            return None
    if not _INT64_MIN <= t <= _INT64_MAX:
        found.add(key, f"{v!r} is outside the times the store holds (1677-09-21 to 2262-04-11)",
                  "give a time in that range, e.g. a silence of days, not centuries", "bad_time")
        return None
    return t


def _matcher(where: str, m: Any, found: Problems) -> tuple[str, str, bool, bool] | None:
    if not isinstance(m, Mapping):
        found.add(where, f"{m!r} is not an object", f"write {_EXAMPLE}", "bad_matcher")
        return None
    before = len(found)
    found.unknown_keys(m, where, _MATCHER_KEYS)
    name, value = m.get("name"), m.get("value")
    if not isinstance(name, str) or not _LABEL_NAME.match(name):
        found.add(f"{where}.name", f"{name!r} is not a label name", "use [a-zA-Z_][a-zA-Z0-9_]*", "bad_name")
    if not isinstance(value, str):
        found.add(f"{where}.value", f"{value!r} is not a string", 'quote it, e.g. "value": "3"', "bad_value")
    is_regex, is_equal = m.get("isRegex", False), m.get("isEqual", True)
    for key, flag in (("isRegex", is_regex), ("isEqual", is_equal)):
        if not isinstance(flag, bool):
            found.add(f"{where}.{key}", f"{flag!r} is not true or false", f"write {key}: true or false", "bad_flag")
    if is_regex is True and isinstance(value, str):
        try:
            _regex(value)
        except SilenceError as e:
            found.add(f"{where}.value", e.problems[0].message, e.problems[0].fix, "bad_regex")
    if len(found) > before:
        return None
    assert isinstance(name, str) and isinstance(value, str) and isinstance(is_regex, bool) and isinstance(
        is_equal, bool)  # checked above
    return name, value, is_regex, is_equal


def _matchers(doc: Mapping[str, Any], found: Problems) -> tuple[tuple[str, str, bool, bool], ...]:
    matchers = doc.get("matchers")
    if not isinstance(matchers, list | tuple) or not matchers:
        found.add("matchers", "a silence needs at least one matcher", f"write [{_EXAMPLE}]", "no_matchers")
        return ()
    ms = [_matcher(f"matchers[{i}]", m, found) for i, m in enumerate(matchers)]
    valid = tuple(m for m in ms if m is not None)
    if len(valid) == len(ms) and all(_matcher_holds(m, {}) for m in valid):
        found.add("matchers", "every matcher matches the empty string, so the silence would silence all alerts",
                  'add a matcher that requires a label value, e.g. site="delft"', "matches_everything")
    return valid


def _text(doc: Mapping[str, Any], key: str, why: str, found: Problems) -> str:
    v = doc.get(key)
    if not isinstance(v, str) or not v.strip():
        found.add(key, f"{v!r} is empty or missing", why, "required")
        return ""
    return v


def silence_from_api(doc: Mapping[str, Any], *, id: str) -> Silence:  # noqa: A002 - the API's field name
    """A validated :class:`Silence` from an API v2 ``postableSilence`` document (times RFC 3339 or integer ns).

    Rejected as Alertmanager does: no matchers, a bad name or regex, every matcher matching the empty string
    (that would silence everything), ``endsAt`` before ``startsAt``, an empty ``createdBy`` or ``comment``.
    ``isEqual`` defaults to true, ``isRegex`` to false.

    Raises:
        SilenceError: with every problem of ``doc`` at once.
    """
    found = Problems(source=f"silence {id!r}")
    if not isinstance(doc, Mapping):
        found.add("", f"the silence is {type(doc).__name__}, not an object", f'write {{"matchers": [{_EXAMPLE}], '
                  '"startsAt": ..., "endsAt": ..., "createdBy": ..., "comment": ...}', "not_an_object")
        found.raise_if_any(SilenceError)
    matchers = _matchers(doc, found)
    starts, ends = _time(doc, "startsAt", found), _time(doc, "endsAt", found)
    if starts is not None and ends is not None and ends < starts:
        found.add("endsAt", f"the silence ends ({doc['endsAt']!r}) before it starts ({doc['startsAt']!r})",
                  "swap them or extend endsAt", "ends_before_start")
    created_by = _text(doc, "createdBy", "say who created the silence", found)
    comment = _text(doc, "comment", "say why alerts are silenced", found)
    found.raise_if_any(SilenceError)
    assert starts is not None and ends is not None  # no problem was found
    return Silence(id=id, matchers=matchers, starts_at=starts, ends_at=ends, created_by=created_by, comment=comment)


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
