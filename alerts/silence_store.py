"""The stored silences (table ``silences``): :class:`SilenceStore` is the only code that writes them.

Every silence is validated before it is stored, as Alertmanager's API does: matchers in Alertmanager's text form
(``node="qpu-a"``, ``slo=~"fid.*"``, parsed by :func:`qfleet.alerts.matchers.parse_matcher`), at least one matcher
that does not match the empty string, an end after the start, a non-empty author and comment. A bad silence is
refused with every problem at once (:class:`~qfleet.alerts.silences.SilenceError`) and nothing is written. The
command line (``qfleet alerts silence``), the on-call page and the alerting service all go through this store.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, insert, select, update

from qfleet.alerts.matchers import parse_matcher
from qfleet.alerts.model import Matcher, Silence
from qfleet.alerts.schema import SilenceRecord, table
from qfleet.alerts.silences import (
    SilenceError,
    silence_active,
    silence_from_api,
    silence_matchers,
    silence_to_api,
)
from qfleet.problems import Problem, Problems

__all__ = ["SilenceStore"]

logger = logging.getLogger(__name__)

_T = table(SilenceRecord)
_MATCHER_FIX = 'write name="value" (operators =, !=, =~, !~), e.g. node="qpu-a" or slo=~"fid.*"'


class SilenceStore:
    """Alertmanager-style silences in the store.

    Args:
        engine: a migrated store.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._invalid: tuple[str, ...] = ()

    def invalid(self) -> tuple[str, ...]:
        """Ids of the stored rows the last :meth:`list` skipped because they no longer validate (e.g. a regex RE2
        rejects); they silence nothing, and alerting carries on without them."""
        return self._invalid

    def add(self, matchers: Sequence[str], *, starts_at: int, ends_at: int, created_by: str,
            comment: str) -> Silence:
        """Validate and store a silence of ``matchers`` from ``starts_at`` to ``ends_at`` (integer Unix ns,
        the end after the start); returns it with its new id.

        Raises:
            SilenceError: every problem found (a matcher that does not parse, no matcher, every matcher matching
                the empty string, an end not after the start, an empty author or comment); nothing is stored.
        """
        found = Problems(source="silence")
        parsed = _parse(matchers, found)
        if ends_at <= starts_at:
            found.add("endsAt", f"the silence ends at {ends_at} ns, not after it starts ({starts_at} ns)",
                      "give a duration above 0, e.g. 2h", "ends_before_start")
        doc = {"matchers": [{"name": n, "value": v, "isRegex": r, "isEqual": e} for n, v, r, e in
                            silence_matchers(parsed)],
               "startsAt": starts_at, "endsAt": ends_at, "createdBy": created_by, "comment": comment}
        silence = None
        try:
            silence = silence_from_api(doc, id=str(uuid.uuid4()))
        except SilenceError as e:
            parse_failed = len(parsed) < len(matchers)
            found.items.extend(p for p in e.problems if not (parse_failed and p.code == "no_matchers"))
        found.raise_if_any(SilenceError)
        assert silence is not None  # no problem was found
        with self.engine.begin() as conn:
            conn.execute(insert(_T).values(
                id=silence.id, matchers={"matchers": silence_to_api(silence)["matchers"]},
                starts_at_unix_nano=silence.starts_at, ends_at_unix_nano=silence.ends_at,
                created_by=silence.created_by, comment=silence.comment, updated_unix_nano=silence.starts_at))
        return silence

    def expire(self, silence_id: str, at_ns: int) -> Silence:
        """End a silence that is active or pending at ``at_ns``: it ends at ``at_ns`` (a pending one also starts
        there, as in Alertmanager). Returns the expired silence.

        Raises:
            SilenceError: no such silence, or it has already ended.
        """
        with self.engine.begin() as conn:
            row = conn.execute(select(_T).where(_T.c.id == silence_id, _T.c.ends_at_unix_nano > at_ns)).first()
            if row is None:
                raise SilenceError([Problem("id", f"no active silence with id {silence_id!r} (unknown, or already "
                                                  "expired)", "list them with `qfleet alerts silence list`",
                                            "unknown_silence")])
            conn.execute(update(_T).where(_T.c.id == silence_id).values(
                starts_at_unix_nano=min(row.starts_at_unix_nano, at_ns), ends_at_unix_nano=at_ns,
                updated_unix_nano=at_ns))
        return self.get(silence_id)

    def get(self, silence_id: str) -> Silence:
        """One silence.

        Raises:
            SilenceError: no such silence.
        """
        with self.engine.connect() as conn:
            row = conn.execute(select(_T).where(_T.c.id == silence_id)).first()
        if row is None:
            raise SilenceError([Problem("id", f"no silence with id {silence_id!r}",
                                        "list them with `qfleet alerts silence list`", "unknown_silence")])
        return _silence(row)

    def active(self, at_ns: int) -> list[Silence]:
        """The silences active at ``at_ns`` (``starts_at <= at_ns <= ends_at``)."""
        return [s for s in self.list() if silence_active(s, at_ns)]

    # Last in the class: in the annotations of methods below it, `list` would name this method.
    def list(self) -> list[Silence]:
        """Every stored silence, by start (rows that no longer validate are logged and left out)."""
        with self.engine.connect() as conn:
            rows = conn.execute(select(_T).order_by(_T.c.starts_at_unix_nano, _T.c.id)).all()
        out, invalid = [], []
        for row in rows:
            try:
                out.append(_silence(row))
            except (SilenceError, ValueError, KeyError, TypeError) as e:
                # Written before silences were validated on the way in, or by hand: one bad row must not stop
                # alerting, so it is skipped, logged and counted (CycleStats.invalid_silences).
                invalid.append(str(row.id))
                logger.warning("stored silence %s is invalid and ignored: %s", row.id, e)
        self._invalid = tuple(invalid)
        return out


def _parse(matchers: Sequence[str], found: Problems) -> list[Matcher]:
    parsed = []
    for i, text in enumerate(matchers):
        try:
            parsed.append(parse_matcher(text))
        except ValueError as e:
            for message, fix in _problems_of(e):
                found.add(f"matchers[{i}]", message, fix or _MATCHER_FIX, "bad_matcher")
    return parsed


def _problems_of(e: ValueError) -> list[tuple[str, str]]:
    """(message, fix) of each problem a matcher error names (a ``ProblemsError`` or a plain message)."""
    items = getattr(e, "problems", None) or [str(e)]
    return [(p.message, p.fix) if isinstance(p, Problem) else (str(p), "") for p in items]


def _silence(row: Any) -> Silence:
    return silence_from_api({"matchers": row.matchers["matchers"], "startsAt": row.starts_at_unix_nano,
                             "endsAt": row.ends_at_unix_nano, "createdBy": row.created_by, "comment": row.comment},
                            id=row.id)
