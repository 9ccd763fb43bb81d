"""The alerts' state that must survive a restart: alerts, notification log, outbox, silences, incidents.

Only ``qfleet.alerts`` writes these tables; dashboards and command lines go through its repositories
(:class:`~qfleet.alerts.silence_store.SilenceStore`, :class:`~qfleet.alerts.incidents.Incidents`,
:class:`~qfleet.alerts.sources.AlertState`, :class:`~qfleet.alerts.outbox.Outbox`; the notification log is
:class:`~qfleet.alerts.service.AlertService`'s alone).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import BigInteger, Index, Integer, MetaData, String, Table, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from qfleet.collector.schema import NAMING_CONVENTION, JsonType

__all__ = ["AlertOutbox", "AlertRecord", "AlertsBase", "AlertsLease", "Incident", "IncidentEvent", "NotificationLog", "SilenceRecord",
           "table"]


class AlertsBase(DeclarativeBase):
    """Declarative base of the alerts' tables (its own metadata; Alembic gathers every package's)."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION, info={"owner": "alerts"})
    type_annotation_map = {dict[str, Any]: JsonType}


class AlertRecord(AlertsBase):
    """An alert known to the alerts service (from SLO conditions and direct rules), by label fingerprint."""

    __tablename__ = "alerts"

    fingerprint: Mapped[str] = mapped_column(String(16), primary_key=True)
    labels: Mapped[dict[str, Any]]
    annotations: Mapped[dict[str, Any]]
    starts_at_unix_nano: Mapped[int] = mapped_column(BigInteger)
    ends_at_unix_nano: Mapped[int | None] = mapped_column(BigInteger)
    updated_unix_nano: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (Index(None, "ends_at_unix_nano"),)


class NotificationLog(AlertsBase):
    """Alertmanager's notification log: what each receiver was last told about each group."""

    __tablename__ = "notification_log"

    receiver: Mapped[str] = mapped_column(Text, primary_key=True)
    group_key: Mapped[str] = mapped_column(Text, primary_key=True)
    firing: Mapped[dict[str, Any]]        # {"fingerprints": [...]}
    resolved: Mapped[dict[str, Any]]
    sent_unix_nano: Mapped[int] = mapped_column(BigInteger)
    # The last notification itself (the escalation receiver is sent it again after a restart).
    notification: Mapped[dict[str, Any] | None]


class AlertOutbox(AlertsBase):
    """A notification recorded before it is sent; delivered at least once, or dead-lettered.

    ``id`` is the idempotency key every attempt carries, so a receiver can make delivery exactly once.
    """

    __tablename__ = "alert_outbox"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    receiver: Mapped[str] = mapped_column(Text)
    integration: Mapped[str] = mapped_column(Text)          # "webhook" | "pagerduty"
    url: Mapped[str] = mapped_column(Text)
    group_key: Mapped[str] = mapped_column(Text)
    payload: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(Text)                # "pending" | "delivered" | "dead"
    attempts: Mapped[int] = mapped_column(Integer)
    created_unix_nano: Mapped[int] = mapped_column(BigInteger)
    next_attempt_unix_nano: Mapped[int] = mapped_column(BigInteger)
    delivered_unix_nano: Mapped[int | None] = mapped_column(BigInteger)
    last_error: Mapped[str] = mapped_column(Text)
    # A replica delivering the item holds it until the lease ends; an expired lease is anyone's to take.
    lease_owner: Mapped[str | None] = mapped_column(Text)
    lease_until_unix_nano: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index(None, "state", "next_attempt_unix_nano"),
        # Claiming is FIFO per stream: an item waits while an older one of its group is pending. Without this the
        # check scanned every pending item for every candidate (10 s for 500 notifications in bench_alerts.py).
        Index(None, "group_key", "state", "created_unix_nano"),
    )


class SilenceRecord(AlertsBase):
    """An Alertmanager API v2 silence (``matchers`` as the API's list of objects)."""

    __tablename__ = "silences"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    matchers: Mapped[dict[str, Any]]       # {"matchers": [{name, value, isRegex, isEqual}]}
    starts_at_unix_nano: Mapped[int] = mapped_column(BigInteger)
    ends_at_unix_nano: Mapped[int] = mapped_column(BigInteger)
    created_by: Mapped[str] = mapped_column(Text)
    comment: Mapped[str] = mapped_column(Text)
    updated_unix_nano: Mapped[int] = mapped_column(BigInteger)


class Incident(AlertsBase):
    """An alert group that became an incident; its timeline is in ``incident_events``."""

    __tablename__ = "incidents"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    group_key: Mapped[str] = mapped_column(Text)
    receiver: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    severity: Mapped[str] = mapped_column(Text)
    labels: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(Text)                # "open" | "acknowledged" | "resolved"
    opened_unix_nano: Mapped[int] = mapped_column(BigInteger)
    acknowledged_unix_nano: Mapped[int | None] = mapped_column(BigInteger)
    acknowledged_by: Mapped[str | None] = mapped_column(Text)
    escalated_unix_nano: Mapped[int | None] = mapped_column(BigInteger)
    resolved_unix_nano: Mapped[int | None] = mapped_column(BigInteger)
    resolved_by: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (Index(None, "group_key"), Index(None, "opened_unix_nano"))


class IncidentEvent(AlertsBase):
    """One entry of an incident's timeline: fired, notified, acknowledged, escalated, resolved, fault."""

    __tablename__ = "incident_events"

    incident_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    at_unix_nano: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]]


class AlertsLease(AlertsBase):
    """A named lease held by one ``qfleet serve`` replica (e.g. ``evaluate``: the fleet-wide evaluation leader).

    ``cycle_unix_nano`` is the last cycle the holder completed, so a new holder neither repeats nor skips one.
    """

    __tablename__ = "alerts_leases"

    name: Mapped[str] = mapped_column(Text, primary_key=True)
    holder: Mapped[str] = mapped_column(Text)
    expires_unix_nano: Mapped[int] = mapped_column(BigInteger)
    cycle_unix_nano: Mapped[int | None] = mapped_column(BigInteger)


def table(model: type[AlertsBase]) -> Table:
    """The Core ``Table`` of a model (SQLAlchemy types ``__table__`` as the wider ``FromClause``).

    >>> table(Incident).name
    'incidents'
    """
    t = model.__table__
    assert isinstance(t, Table)
    return t
