"""Named leases in ``alerts_leases``: one ``qfleet serve`` replica at a time does a fleet-wide job.

The ``evaluate`` lease makes one replica the evaluation leader: it evaluates SLOs and rules, advances the
notification timeline and enqueues what it produced, once per interval for the whole fleet. A lease is held until
``expires_unix_nano``; the holder renews it at every cycle, and anyone may take it once it has expired, so a
dead leader is replaced one TTL after its last renewal. Claims are one conditional statement each (``INSERT ... ON
CONFLICT DO NOTHING``, then ``UPDATE ... WHERE holder = me OR expires < now``), which PostgreSQL serialises on the
row and SQLite on its database lock: two replicas never both believe they hold it.

``cycle_unix_nano`` is the instant of the last cycle the leader completed, written by :meth:`Lease.complete`
in the same transaction as the cycle's effects (outbox, notification log) and only while the lease is still
held: a new leader continues from the next cycle, neither repeating nor skipping one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from qfleet.alerts.schema import AlertsLease, table

__all__ = ["EVALUATE", "Held", "Lease", "LeaseError", "LeaseLost"]

#: The evaluation leader's lease.
EVALUATE = "evaluate"
_T = table(AlertsLease)


class LeaseError(ValueError):
    """A bad lease argument (the message names the value and the fix)."""


class LeaseLost(RuntimeError):
    """The lease was taken over (it expired) before the holder could record its cycle; nothing was recorded."""


@dataclass(frozen=True, slots=True)
class Held:
    """A lease this holder holds now: until ``expires_ns``; ``cycle_ns`` is the last completed cycle (None: none
    yet); ``gained`` is true when the lease was not this holder's before the claim (its memory is stale)."""

    expires_ns: int
    cycle_ns: int | None
    gained: bool


class Lease:
    """One named lease, claimed for ``holder`` for ``ttl_ns`` at a time, times from ``clock`` (Unix ns).

    >>> from qfleet.collector import open_engine, upgrade
    >>> e = open_engine("sqlite://"); upgrade(e)
    >>> a, b = (Lease(e, "evaluate", holder=h, ttl_ns=10, clock=lambda: 100) for h in "ab")
    >>> a.claim().gained, b.claim(), a.claim().gained
    (True, None, False)
    """

    def __init__(self, engine: Engine, name: str, *, holder: str, ttl_ns: int, clock: Callable[[], int]) -> None:
        if not name or not holder:
            raise LeaseError(f"lease name {name!r} and holder {holder!r} must not be empty")
        if ttl_ns <= 0:
            raise LeaseError(f"ttl_ns={ttl_ns} must be positive (at most the interval of the job it guards)")
        self.engine = engine
        self.name = name
        self.holder = holder
        self.ttl_ns = ttl_ns
        self.clock = clock

    def claim(self) -> Held | None:
        """Take or renew the lease; what is held, or None while another holder's lease runs."""
        now = self.clock()
        expires = now + self.ttl_ns
        with self.engine.begin() as conn:
            insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
            created = conn.execute(insert(_T).values(
                name=self.name, holder=self.holder, expires_unix_nano=expires, cycle_unix_nano=None,
            ).on_conflict_do_nothing(index_elements=["name"]).returning(_T.c.name)).first()
            if created is not None:
                return Held(expires_ns=expires, cycle_ns=None, gained=True)
            before = conn.execute(select(_T.c.holder).where(_T.c.name == self.name)).scalar()
            row = conn.execute(
                update(_T).where(_T.c.name == self.name,
                                 or_(_T.c.holder == self.holder, _T.c.expires_unix_nano < now))
                .values(holder=self.holder, expires_unix_nano=expires)
                .returning(_T.c.cycle_unix_nano)).first()
        if row is None:
            return None
        # `before` was read without a lock: when it already named us, the UPDATE (which checks holder = me or
        # expiry under the row lock) can only have renewed our own lease.
        return Held(expires_ns=expires, cycle_ns=row.cycle_unix_nano, gained=before != self.holder)

    def complete(self, conn: Connection, cycle_ns: int | None, previous_ns: int | None) -> None:
        """Record ``cycle_ns`` as completed, inside the caller's transaction ``conn`` (the cycle's effects).

        Raises:
            LeaseLost: the lease is no longer this holder's, or another holder recorded a cycle since
                ``previous_ns``; the caller's transaction must roll back.
        """
        prev = _T.c.cycle_unix_nano.is_(None) if previous_ns is None else _T.c.cycle_unix_nano == previous_ns
        done = conn.execute(update(_T).where(_T.c.name == self.name, _T.c.holder == self.holder, prev)
                            .values(cycle_unix_nano=cycle_ns).returning(_T.c.name)).first()
        if done is None:
            raise LeaseLost(f"lease {self.name!r} is no longer held by {self.holder!r}; cycle {cycle_ns} not "
                            "recorded (another replica carries on)")

    def release(self) -> None:
        """Give the lease up now (a clean shutdown), so another replica takes over without waiting for the TTL."""
        with self.engine.begin() as conn:
            conn.execute(update(_T).where(_T.c.name == self.name, _T.c.holder == self.holder)
                         .values(expires_unix_nano=0))
