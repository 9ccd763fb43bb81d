"""Alertmanager's matcher syntax: ``name="value"``, ``name!="value"``, ``name=~"regex"``, ``name!~"regex"``.

As Alertmanager's classic parser (``pkg/labels/parse.go``): values may be unquoted (then without ``, { } "``),
label names may be double-quoted to hold other characters, inside quotes ``\\"``, ``\\\\`` and ``\\n`` are
unescaped and every other backslash is kept (so regexes such as ``"qpu-\\d+"`` survive); regexes are RE2, fully
anchored (see :mod:`qfleet.alerts.regex`). Used by the alerting config, ``qfleet alerts silence``
and the on-call page.
"""

from __future__ import annotations

import re
from typing import Literal

from qfleet.alerts.fields import LABEL_NAME_RULE, is_label_name
from qfleet.alerts.model import Matcher
from qfleet.alerts.regex import RegexError, compile_regex
from qfleet.problems import Problem, ProblemsError

__all__ = ["MatcherError", "matcher", "parse_matcher", "parse_matchers"]

# Matched against the stripped text: no trailing `\s*` after a lazy group, so no backtracking on long input.
_MATCHER = re.compile(r'("(?:[^"\\]|\\.)*"|[^\s=!~"]+)\s*(=~|!~|!=|=)\s*(.*)\Z', re.S)
_OPS: dict[str, Literal["=", "!=", "=~", "!~"]] = {"=": "=", "!=": "!=", "=~": "=~", "!~": "!~"}
_SYNTAX_FIX = 'write e.g. severity="page" (operators =, !=, =~, !~)'


class MatcherError(ProblemsError):
    """A matcher string that is not ``name="value"`` (or ``!=``, ``=~``, ``!~``); the problem names the text.

    The problem's path is empty: a loader that reads the matcher from a file re-records it at its key path.
    """


def _fail(message: str, fix: str = _SYNTAX_FIX) -> MatcherError:
    return MatcherError([Problem("", message, fix, "bad_matcher")])


def _unquote(text: str) -> str:
    """The body of a double-quoted string with ``\\"``, ``\\\\`` and ``\\n`` unescaped (other escapes kept)."""
    out, i, body = [], 0, text[1:-1]
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            nxt = body[i + 1]
            out.append({"\\": "\\", '"': '"', "n": "\n"}.get(nxt, "\\" + nxt))
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def _has_unescaped_quote(body: str) -> bool:
    """A ``"`` not escaped by a backslash in ``body`` (a scan: linear, unlike a lookbehind regex)."""
    i = 0
    while i < len(body):
        if body[i] == '"':
            return True
        i += 2 if body[i] == "\\" else 1
    return False


def _name(text: str, name: str) -> str:
    if name.startswith('"'):
        name = _unquote(name)
        if not name:
            raise _fail(f"matcher {text!r} has an empty label name", "name the label, e.g. severity")
    elif not is_label_name(name):
        raise _fail(f"matcher {text!r}: {name!r} is not a label name ({LABEL_NAME_RULE})",
                    "quote the name if it must contain other characters")
    return name


def _value(text: str, name: str, op: str, value: str) -> str:
    if value.startswith('"'):
        if len(value) < 2 or not value.endswith('"') or _has_unescaped_quote(value[1:-1]):
            raise _fail(f"matcher {text!r} has an unterminated or extra quote in the value",
                        'escape inner quotes as \\"')
        return _unquote(value)
    if any(c in value for c in ',{}"'):
        raise _fail(f"matcher {text!r}: unquoted value {value!r} contains one of , {{ }} \"",
                    f'quote it: {name}{op}"..."')
    return value


def parse_matcher(text: str) -> Matcher:
    """One Alertmanager matcher: ``name="v"``, ``name!="v"``, ``name=~"re"``, ``name!~"re"`` or unquoted values.

    Raises:
        MatcherError: ``text`` is not a matcher, or its regex does not compile.

    Examples:
        >>> parse_matcher('severity=~"page|ticket"')
        Matcher(name='severity', op='=~', value='page|ticket')
        >>> parse_matcher("team = hw")
        Matcher(name='team', op='=', value='hw')
        >>> parse_matcher("severity: page")
        Traceback (most recent call last):
        ...
        qfleet.alerts.matchers.MatcherError: matcher 'severity: page' is not name="value" (fix: write e.g. severity="page" (operators =, !=, =~, !~))
    """
    if not isinstance(text, str):
        raise _fail(f"matcher {text!r} is not a string")
    m = _MATCHER.match(text.strip())
    if m is None:
        raise _fail(f'matcher {text!r} is not name="value"')
    raw_name, op, raw_value = m.groups()
    name = _name(text, raw_name)
    return matcher(name, _OPS[op], _value(text, name, op, raw_value))


def matcher(name: str, op: Literal["=", "!=", "=~", "!~"], value: str) -> Matcher:
    """:class:`~qfleet.alerts.model.Matcher` ``name op value``, a regex RE2 rejects reported as a
    :class:`MatcherError` (the model raises a plain :class:`~qfleet.alerts.regex.RegexError`).

    Examples:
        >>> matcher("node", "=~", "qpu-(?!7)")
        Traceback (most recent call last):
        ...
        qfleet.alerts.matchers.MatcherError: matcher node=~'qpu-(?!7)': bad regex, not RE2 syntax (invalid perl operator: (?!) (fix: RE2 has no lookahead; add a !~ matcher for what must not match)
    """
    if op in ("=~", "!~"):
        try:
            compile_regex(value)
        except RegexError as err:
            raise _fail(f"matcher {name}{op}{value!r}: bad regex, not RE2 syntax ({err.reason})", err.fix) from err
    return Matcher(name, op, value)


def _split_outside_quotes(text: str) -> list[str]:
    parts: list[str] = []
    cur: list[str] = []
    quoted = escaped = False
    for c in text:
        if escaped:
            escaped = False
        elif c == "\\" and quoted:
            escaped = True
        elif c == '"':
            quoted = not quoted
        elif c == "," and not quoted:
            parts.append("".join(cur))
            cur = []
            continue
        cur.append(c)
    parts.append("".join(cur))
    return parts


def parse_matchers(text: str) -> tuple[Matcher, ...]:
    """A comma-separated list of matchers, optionally in braces (one ``matchers:`` list item may hold several).

    Raises:
        MatcherError: a matcher is malformed, or the braces are unbalanced.

    Examples:
        >>> parse_matchers('{severity="page", node=~"qpu-.*"}')
        (Matcher(name='severity', op='=', value='page'), Matcher(name='node', op='=~', value='qpu-.*'))
    """
    body = text.strip()
    if body.startswith("{"):
        if not body.endswith("}"):
            raise _fail(f"matchers {text!r} miss the closing brace", "end the list with }")
        body = body[1:-1].strip()
    if not body:
        return ()
    parts = _split_outside_quotes(body)
    if parts and not parts[-1].strip():
        parts.pop()  # a trailing comma is allowed
    return tuple(parse_matcher(p) for p in parts)
