"""User-supplied regexes (route, inhibit and silence matchers) on RE2, anchored as Alertmanager anchors them.

Alertmanager compiles a matcher's value as Go's ``regexp.MustCompile("^(?:" + value + ")$")``: RE2 syntax and
semantics, linear time in the input. Python's ``re`` backtracks (``(a+)+$`` against 34 ``a`` and ``!`` runs for
hours with the GIL held), so every user pattern is compiled here, once, on the ``google-re2`` binding; a pattern
RE2 rejects (backreferences, lookaround, possessive quantifiers, ``\\Z``...) is a :class:`RegexError` naming it and
the fix. Two constructs RE2 accepts but Go's parser (and so Alertmanager and ``amtool``) rejects are refused too:
``\\C`` (one byte, which can split a UTF-8 character) and ``(?<name>...)`` (older Go; ``(?P<name>...)`` works
everywhere).

>>> compile_regex("qpu-[0-9]+").matches("qpu-12"), compile_regex("qpu-[0-9]+").matches("xqpu-12")
(True, False)
>>> compile_regex("(a+)+$").matches("a" * 34 + "!")
False
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import re2  # type: ignore[import-untyped]  # google-re2 ships no type information

__all__ = ["RegexError", "UserRegex", "compile_regex"]

_SYNTAX = "https://github.com/google/re2/wiki/Syntax"
# (what RE2's message starts with, the fix): the constructs people bring from Perl/Python regexes.
_FIXES = (
    ("invalid perl operator: (?=", "RE2 has no lookahead; match the wanted values directly, or add a != or !~ "
     "matcher"),
    ("invalid perl operator: (?!", "RE2 has no lookahead; add a !~ matcher for what must not match"),
    ("invalid perl operator: (?<", "RE2 has no lookbehind; match the wanted values directly, or add a !~ matcher"),
    ("invalid perl operator: (?>", "RE2 never backtracks, so atomic groups are not needed: write (?:...)"),
    ("invalid perl operator: (?#", "RE2 has no (?#comments); delete it"),
    ("invalid perl operator: (?x", "RE2 has no (?x) verbose mode; delete the flag and the spaces"),
    ("invalid perl operator: (?P", "RE2 has no backreferences or recursion; spell the alternatives out, e.g. "
     "(a|b)"),
    ("bad repetition operator: *+", "RE2 has no possessive quantifiers and never backtracks: write * instead"),
    ("bad repetition operator: ++", "RE2 has no possessive quantifiers and never backtracks: write + instead"),
    ("bad repetition operator: ?+", "RE2 has no possessive quantifiers and never backtracks: write ? instead"),
    ("invalid escape sequence: \\Z", "write \\z, or nothing: matchers are anchored at both ends already"),
    ("invalid repetition size", "repeat counts are at most 1000, also when nested, e.g. [0-9]{1,3}"),
)
_DEFAULT_FIX = f"use RE2 syntax as Alertmanager does ({_SYNTAX}), e.g. qpu-.*"


class RegexError(ValueError):
    """A pattern RE2 (Alertmanager's regex engine) rejects; ``pattern``, ``reason`` and ``fix`` say which, why
    and what to write instead, ``message`` the first two in a sentence."""

    def __init__(self, pattern: str, reason: str, fix: str) -> None:
        self.pattern, self.reason, self.fix = pattern, reason, fix
        self.message = f"regex {pattern!r} is not valid in Alertmanager's regex syntax, RE2 ({reason})"
        super().__init__(f"{self.message}; {fix}")


def _options() -> Any:
    opts = re2.Options()
    opts.log_errors = False   # RE2 would print every rejected pattern to stderr
    return opts


_OPTIONS = _options()


@dataclass(frozen=True, slots=True)
class UserRegex:
    """A compiled user pattern: :meth:`matches` is Alertmanager's ``Matcher.Matches`` for ``=~``."""

    pattern: str
    _compiled: Any

    def matches(self, value: str) -> bool:
        """Whether ``value`` matches ``^(?:pattern)$`` (in time linear in ``len(value)``)."""
        try:
            text: str | bytes = value.encode()
        except UnicodeEncodeError:
            # Lone surrogates (e.g. undecodable argv bytes): kept as bytes, which RE2 reads as invalid UTF-8
            # like Go does, instead of raising in the middle of routing.
            text = value.encode("utf-8", "surrogatepass")
        return self._compiled.search(text) is not None


def _go_rejects(pattern: str) -> str | None:
    r"""The construct in ``pattern`` that RE2 accepts but Go's ``regexp/syntax`` rejects, or None.

    A small scan that skips escapes, ``\Q...\E`` and character classes (where ``(?<`` is plain text).
    """
    i, n, in_class = 0, len(pattern), False
    while i < n:
        c = pattern[i]
        if c == "\\":
            nxt = pattern[i + 1:i + 2]
            if nxt == "C":
                return "\\C"
            if nxt == "Q" and not in_class:
                end = pattern.find("\\E", i + 2)
                i = n if end < 0 else end + 2
                continue
            i += 2
        elif in_class:
            if pattern.startswith("[:", i) and (end := pattern.find(":]", i + 2)) >= 0:
                i = end + 2
                continue
            in_class = c != "]"
            i += 1
        elif c == "[":
            in_class = True
            i += 1
            i += pattern.startswith("^", i)
            i += pattern.startswith("]", i)  # a ] right after [ or [^ is a literal
        elif pattern.startswith("(?<", i) and not pattern.startswith(("(?<=", "(?<!"), i):
            return "(?<"
        else:
            i += 1
    return None


def _fix(reason: str) -> str:
    if reason.startswith(tuple(f"invalid escape sequence: \\{d}" for d in "123456789")):
        return "RE2 has no backreferences; spell the alternatives out, e.g. (a|b)"
    return next((fix for start, fix in _FIXES if reason.startswith(start)), _DEFAULT_FIX)


def _reason(err: Exception) -> str:
    msg = err.args[0] if err.args else ""
    return msg.decode(errors="replace") if isinstance(msg, bytes) else str(msg)


@lru_cache(maxsize=4096)
def compile_regex(pattern: str) -> UserRegex:
    r"""``pattern`` compiled as Alertmanager compiles a matcher's value (``^(?:pattern)$`` on RE2); cached.

    Raises:
        RegexError: RE2 or Go rejects the pattern; the message names it, the reason and the fix.

    Examples:
        >>> compile_regex("(a)\\1")
        Traceback (most recent call last):
        ...
        qfleet.alerts.regex.RegexError: regex '(a)\\1' is not valid in Alertmanager's regex syntax, RE2 (invalid escape sequence: \1); RE2 has no backreferences; spell the alternatives out, e.g. (a|b)
    """
    try:
        compiled = re2.compile(f"^(?:{pattern})$", _OPTIONS)
    except re2.error as err:
        reason = _reason(err)
        try:  # RE2's message quotes the anchored text for some errors; the bare pattern's reads better
            re2.compile(pattern, _OPTIONS)
        except re2.error as bare:
            reason = _reason(bare)
        raise RegexError(pattern, reason, _fix(reason)) from None
    if (construct := _go_rejects(pattern)) is not None:
        fix = ("write (?P<name>...) (Go before 1.22, and so amtool and older Alertmanagers, reject (?<name>...))"
               if construct == "(?<" else "match a whole character with . instead")
        raise RegexError(pattern, f"{'(?<name>' if construct == '(?<' else construct} is not supported by Go's regexp", fix)
    return UserRegex(pattern, compiled)
