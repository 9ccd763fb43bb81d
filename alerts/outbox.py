"""The durable notification outbox: rows in ``alert_outbox`` written with the state change, delivered later.

A notification is *enqueued* in the same transaction that records the alert state that caused it (pass
``conn=``), so a crash can neither lose it nor send it without the state. :class:`qfleet.alerts.webhook.Deliverer` reads
:meth:`Outbox.claim` items (leased to one replica) and reports back with :meth:`Outbox.mark_delivered` / :meth:`Outbox.mark_failed`; an item is
``pending`` until ``delivered`` or ``dead`` (dead letters are counted in :meth:`Outbox.stats`).

Delivery is FIFO per stream (receiver, url, group key): only the oldest pending item of a stream is due, so a
PagerDuty ``resolve`` never overtakes the ``trigger`` it follows while that one is backing off.
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from sqlalchemy import ColumnElement, Connection, Engine, and_, delete, exists, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from qfleet.alerts.model import Notification, Receiver
from qfleet.alerts.payloads import idempotency_key, incident_url, pagerduty_event, webhook_body
from qfleet.alerts.schema import AlertOutbox, table
from qfleet.units import NS

__all__ = [
    "Backoff",
    "BackoffError",
    "LeaseLost",
    "OutboxError",
    "OutboxItem",
    "Outbox",
    "PAGERDUTY_URL",
    "items_for",
]

PAGERDUTY_URL = "https://events.pagerduty.com/v2/enqueue"
_T = table(AlertOutbox)
_STATES = ("pending", "delivered", "dead")
_ERROR_MAX = 1000


class OutboxError(ValueError):
    """A bad outbox item or an unknown id."""


class LeaseLost(OutboxError):
    """A mark by an owner that does not hold the item's lease (another replica took it, or it is no longer
    pending): nothing was changed; ``state`` is the item's current state."""

    def __init__(self, id: str, state: str, owner: str) -> None:
        super().__init__(f"outbox item {id!r} ({state}) is not leased to {owner!r}; another replica owns it now")
        self.id = id
        self.state = state


class BackoffError(ValueError):
    """A backoff setting out of range."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OutboxItem:
    """One notification to one integration; ``id`` is the idempotency key every attempt carries.

    A ``url`` that is not ``http(s)://host/...`` is accepted here and dead-lettered by the deliverer (the error
    names it), so one bad receiver config cannot stop the state change that enqueues it.
    """

    id: str
    receiver: str
    integration: Literal["webhook", "pagerduty"]
    url: str
    group_key: str
    payload: dict[str, Any]
    attempts: int = 0

    def __post_init__(self) -> None:
        if self.integration not in ("webhook", "pagerduty"):
            raise OutboxError(f"integration {self.integration!r} is not supported; use 'webhook' or 'pagerduty'")
        if not self.id or len(self.id) > 64:
            raise OutboxError(f"outbox id {self.id!r} must be 1-64 characters; use payloads.idempotency_key()")


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: attempt ``n`` (1-based) waits ``min(max_s, base_s * factor**(n-1))``,
    scaled by a uniform factor in ``[1 - jitter, 1 + jitter]``. ``seed`` makes the jitter reproducible.

    >>> b = Backoff(jitter=0)
    >>> [b.delay_s(n) for n in (1, 2, 3, 10, 50)]
    [1.0, 2.0, 4.0, 300.0, 300.0]
    """

    base_s: float = 1.0
    factor: float = 2.0
    max_s: float = 300.0
    jitter: float = 0.2
    seed: int | None = None
    _rng: random.Random = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.base_s > 0:
            raise BackoffError(f"base_s={self.base_s} must be positive, e.g. 1")
        if self.factor < 1:
            raise BackoffError(f"factor={self.factor} must be at least 1, e.g. 2")
        if self.max_s < self.base_s:
            raise BackoffError(f"max_s={self.max_s} is below base_s={self.base_s}; raise max_s")
        if not 0 <= self.jitter < 1:
            raise BackoffError(f"jitter={self.jitter} must be in [0, 1), e.g. 0.2")
        object.__setattr__(self, "_rng", random.Random(self.seed))

    def delay_s(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        if attempt < 1:
            raise BackoffError(f"attempt={attempt} must be 1 or more (the number of failed attempts)")
        try:
            raw = min(self.max_s, self.base_s * self.factor ** (attempt - 1))
        except OverflowError:
            raw = self.max_s
        if not self.jitter:
            return float(raw)
        return raw * self._rng.uniform(1 - self.jitter, 1 + self.jitter)

    def delay_ns(self, attempt: int) -> int:
        """:meth:`delay_s` in integer nanoseconds."""
        return int(self.delay_s(attempt) * NS)


def items_for(n: Notification, receiver: Receiver, *, external_url: str,
              route_labels: tuple[tuple[str, str], ...] = (), pagerduty_client_url: str = "",
              incident_id: str = "") -> list[OutboxItem]:
    """The outbox items for ``n`` to every integration of ``receiver``, honouring ``send_resolved``; with
    ``incident_id``, each carries the incident's deep link (:func:`~qfleet.alerts.payloads.incident_url`).

    An integration with ``send_resolved: false`` gets the firing alerts only, and nothing when none fire
    (``notify/notify.go`` filters resolved alerts before the integration). Integration indexes: webhooks first,
    then PagerDuty configs.
    """
    out: list[OutboxItem] = []
    index = 0
    for url, send_resolved, max_alerts in receiver.webhooks:
        m = n if send_resolved else _firing_only(n)
        if m is not None:
            out.append(OutboxItem(
                id=idempotency_key(n, receiver.name, index), receiver=receiver.name, integration="webhook",
                url=url, group_key=n.group_key,
                payload=webhook_body(m, receiver_name=receiver.name, external_url=external_url,
                                     max_alerts=max_alerts, route_labels=route_labels, incident_id=incident_id)))
        index += 1
    for routing_key, send_resolved, url, fields in receiver.pagerduty:
        m = n if send_resolved else _firing_only(n)
        if m is not None:
            out.append(OutboxItem(
                id=idempotency_key(n, receiver.name, index), receiver=receiver.name, integration="pagerduty",
                url=url or PAGERDUTY_URL, group_key=n.group_key,
                payload=pagerduty_event(m, routing_key=routing_key, client_url=pagerduty_client_url or external_url,
                                        incident_link=incident_url(external_url, incident_id) if incident_id else "",
                                        fields=fields, receiver_name=receiver.name, external_url=external_url)))
        index += 1
    return out


_COLS = (_T.c.id, _T.c.receiver, _T.c.integration, _T.c.url, _T.c.group_key, _T.c.payload, _T.c.attempts)


def _item(r: Any) -> OutboxItem:
    return OutboxItem(id=r.id, receiver=r.receiver, integration=r.integration, url=r.url, group_key=r.group_key,
                      payload=r.payload, attempts=r.attempts)


def _firing_only(n: Notification) -> Notification | None:
    if not n.firing:
        return None
    return Notification(at=n.at, receiver=n.receiver, group_key=n.group_key, group_labels=n.group_labels,
                        reason=n.reason, firing=n.firing, resolved=())


class Outbox:
    """SQLAlchemy Core access to ``alert_outbox`` (SQLite and PostgreSQL), times from ``clock`` (Unix ns).

    Several replicas share one table: :meth:`claim` leases due items to ``owner`` (``SELECT ... FOR UPDATE SKIP
    LOCKED`` on PostgreSQL, plus a conditional UPDATE on both backends), and a mark takes effect only while that
    owner holds the lease. A crashed owner's items are claimable again once the lease ends (same id, same key).
    """

    def __init__(self, engine: Engine, *, clock: Callable[[], int], owner: str | None = None) -> None:
        if owner is not None and not 0 < len(owner) <= 200:
            raise OutboxError(f"owner {owner!r} must be 1-200 characters, e.g. host:pid")
        self._engine = engine
        self._clock = clock
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def enqueue(self, items: Sequence[OutboxItem], *, conn: Connection | None = None) -> int:
        """Record ``items`` as pending, due now; returns how many were new (an existing id is left unchanged).

        With ``conn`` the rows join the caller's transaction (commit is the caller's); otherwise one is opened.
        """
        if conn is None:
            with self._engine.begin() as c:
                return self.enqueue(items, conn=c)
        now = self._clock()
        insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
        added = 0
        for it in items:
            stmt = insert(_T).values(
                id=it.id, receiver=it.receiver, integration=it.integration, url=it.url, group_key=it.group_key,
                payload=it.payload, state="pending", attempts=0, created_unix_nano=now,
                next_attempt_unix_nano=now, delivered_unix_nano=None, last_error="",
            ).on_conflict_do_nothing(index_elements=["id"]).returning(_T.c.id)
            added += len(conn.execute(stmt).all())
        return added

    def _due_filter(self, now: int) -> list[ColumnElement[bool]]:
        """Pending, due, lease free or expired, and the oldest pending item of its stream (FIFO)."""
        older = _T.alias("older")
        blocked = exists().where(
            older.c.state == "pending", older.c.receiver == _T.c.receiver, older.c.url == _T.c.url,
            older.c.group_key == _T.c.group_key,
            or_(older.c.created_unix_nano < _T.c.created_unix_nano,
                and_(older.c.created_unix_nano == _T.c.created_unix_nano, older.c.id < _T.c.id)))
        free = or_(_T.c.lease_owner.is_(None), _T.c.lease_until_unix_nano.is_(None),
                   _T.c.lease_until_unix_nano <= now)
        return [_T.c.state == "pending", _T.c.next_attempt_unix_nano <= now, free, ~blocked]

    def due(self, limit: int) -> list[OutboxItem]:
        """Up to ``limit`` claimable items, oldest first, one per stream (FIFO); read-only (see :meth:`claim`)."""
        if limit < 1:
            raise OutboxError(f"limit={limit} must be at least 1")
        q = (select(*_COLS).where(*self._due_filter(self._clock()))
             .order_by(_T.c.created_unix_nano, _T.c.id).limit(limit))
        with self._engine.connect() as c:
            return [_item(r) for r in c.execute(q)]

    def claim(self, limit: int, *, lease_ns: int) -> list[OutboxItem]:
        """Lease up to ``limit`` due items (as :meth:`due`) to this owner for ``lease_ns``; no two owners ever
        get the same item while its lease runs."""
        if limit < 1:
            raise OutboxError(f"limit={limit} must be at least 1")
        if lease_ns < 1:
            raise OutboxError(f"lease_ns={lease_ns} must be positive")
        now = self._clock()
        q = select(*_COLS).where(*self._due_filter(now)).order_by(_T.c.created_unix_nano, _T.c.id).limit(limit)
        with self._engine.begin() as c:
            if c.dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True, of=_T)
            rows = c.execute(q).all()
            if not rows:
                return []
            # The conditional UPDATE re-checks the lease at write time: safe even where the SELECT locked nothing.
            got = set(c.execute(
                update(_T).where(_T.c.id.in_([r.id for r in rows]), *self._due_filter(now))
                .values(lease_owner=self.owner, lease_until_unix_nano=now + lease_ns)
                .returning(_T.c.id)).scalars())
        return [_item(r) for r in rows if r.id in got]

    def release(self, ids: Iterable[str]) -> int:
        """Give back this owner's leases on ``ids`` without an attempt (e.g. deferred items); returns how many."""
        ids = list(ids)
        if not ids:
            return 0
        with self._engine.begin() as c:
            return c.execute(update(_T).where(_T.c.id.in_(ids), _T.c.lease_owner == self.owner,
                                              _T.c.state == "pending")
                             .values(lease_owner=None, lease_until_unix_nano=None)).rowcount

    def prune(self, *, older_than_ns: int) -> int:
        """Delete delivered and dead items older than now - ``older_than_ns`` (delivery time, else creation);
        returns how many. Pending items are never pruned."""
        if older_than_ns < 1:
            raise OutboxError(f"older_than_ns={older_than_ns} must be positive, e.g. 14 days")
        cutoff = self._clock() - older_than_ns
        with self._engine.begin() as c:
            return c.execute(delete(_T).where(
                _T.c.state.in_(("delivered", "dead")),
                func.coalesce(_T.c.delivered_unix_nano, _T.c.created_unix_nano) < cutoff)).rowcount

    def mark_delivered(self, id: str) -> str:
        """Record a 2xx answer for ``id`` and end the lease; returns ``"delivered"``.

        Raises:
            LeaseLost: this owner does not hold the lease of a pending ``id``; nothing changed.
        """
        with self._engine.begin() as c:
            done = c.execute(update(_T).where(_T.c.id == id, _T.c.state == "pending", _T.c.lease_owner == self.owner)
                             .values(state="delivered", delivered_unix_nano=self._clock(), last_error="",
                                     lease_owner=None, lease_until_unix_nano=None)).rowcount
            state = self._state(c, id)
        if not done:
            raise LeaseLost(id, state, self.owner)
        return state

    def mark_failed(self, id: str, error: str, *, max_attempts: int, backoff: Backoff, permanent: bool = False,
                    retry_after_s: float = 0.0) -> str:
        """Record a failed attempt: ``dead`` when ``permanent`` or after ``max_attempts``, else retried after
        ``backoff`` (or ``retry_after_s``, a receiver's ``Retry-After``, if longer); ends the lease. Returns the
        new state; raises :class:`LeaseLost` (nothing changed) when this owner does not hold the lease."""
        if max_attempts < 1:
            raise OutboxError(f"max_attempts={max_attempts} must be at least 1")
        with self._engine.begin() as c:
            row = c.execute(select(_T.c.state, _T.c.attempts, _T.c.lease_owner).where(_T.c.id == id)
                            .with_for_update()).first()
            if row is None:
                raise OutboxError(f"no outbox item {id!r}; pass an id returned by Outbox.claim()")
            if row.state != "pending" or row.lease_owner != self.owner:
                raise LeaseLost(id, str(row.state), self.owner)
            attempts = row.attempts + 1
            now = self._clock()
            values: dict[str, Any] = {"attempts": attempts, "last_error": error[:_ERROR_MAX], "lease_owner": None,
                                      "lease_until_unix_nano": None}
            if permanent or attempts >= max_attempts:
                values["state"] = "dead"
            else:
                values["next_attempt_unix_nano"] = now + max(backoff.delay_ns(attempts), int(retry_after_s * NS))
            c.execute(update(_T).where(_T.c.id == id, _T.c.lease_owner == self.owner).values(**values))
            return self._state(c, id)

    def stats(self) -> dict[str, int]:
        """Item counts by state: ``pending``, ``delivered``, ``dead`` (always all three keys)."""
        out = dict.fromkeys(_STATES, 0)
        with self._engine.connect() as c:
            for state, count in c.execute(select(_T.c.state, func.count()).group_by(_T.c.state)):
                out[state] = int(count)
        return out

    def get(self, id: str) -> dict[str, Any] | None:
        """The full row of ``id`` (state, attempts, times, last error), or None."""
        with self._engine.connect() as c:
            row = c.execute(select(_T).where(_T.c.id == id)).mappings().first()
            return dict(row) if row is not None else None

    @staticmethod
    def _state(c: Connection, id: str) -> str:
        state = c.execute(select(_T.c.state).where(_T.c.id == id)).scalar()
        if state is None:
            raise OutboxError(f"no outbox item {id!r}; pass an id returned by Outbox.claim()")
        return str(state)
