"""Alerts service state: known alerts, the notification log, the delivery outbox, silences, incidents and their timelines.

Revision ID: 20261201_0003
Revises: 20261201_0002
Create Date: 2026-12-01 19:51:51.156181
"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision: str = '20261201_0003'
down_revision: str | None = '20261201_0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('alert_outbox',
    sa.Column('id', sa.String(length=64), nullable=False),
    sa.Column('receiver', sa.Text(), nullable=False),
    sa.Column('integration', sa.Text(), nullable=False),
    sa.Column('url', sa.Text(), nullable=False),
    sa.Column('group_key', sa.Text(), nullable=False),
    sa.Column('payload', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('next_attempt_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('delivered_unix_nano', sa.BigInteger(), nullable=True),
    sa.Column('last_error', sa.Text(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_alert_outbox'))
    )
    with op.batch_alter_table('alert_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_outbox__state_next_attempt_unix_nano'), ['state', 'next_attempt_unix_nano'], unique=False)

    op.create_table('alerts',
    sa.Column('fingerprint', sa.String(length=16), nullable=False),
    sa.Column('labels', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('annotations', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('starts_at_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('ends_at_unix_nano', sa.BigInteger(), nullable=True),
    sa.Column('updated_unix_nano', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('fingerprint', name=op.f('pk_alerts'))
    )
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alerts__ends_at_unix_nano'), ['ends_at_unix_nano'], unique=False)

    op.create_table('incident_events',
    sa.Column('incident_id', sa.String(length=32), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('at_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('kind', sa.Text(), nullable=False),
    sa.Column('detail', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('incident_id', 'seq', name=op.f('pk_incident_events'))
    )
    op.create_table('incidents',
    sa.Column('id', sa.String(length=32), nullable=False),
    sa.Column('group_key', sa.Text(), nullable=False),
    sa.Column('receiver', sa.Text(), nullable=False),
    sa.Column('title', sa.Text(), nullable=False),
    sa.Column('severity', sa.Text(), nullable=False),
    sa.Column('labels', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('state', sa.Text(), nullable=False),
    sa.Column('opened_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('acknowledged_unix_nano', sa.BigInteger(), nullable=True),
    sa.Column('acknowledged_by', sa.Text(), nullable=True),
    sa.Column('escalated_unix_nano', sa.BigInteger(), nullable=True),
    sa.Column('resolved_unix_nano', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_incidents'))
    )
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_incidents__group_key'), ['group_key'], unique=False)
        batch_op.create_index(batch_op.f('ix_incidents__opened_unix_nano'), ['opened_unix_nano'], unique=False)

    op.create_table('notification_log',
    sa.Column('receiver', sa.Text(), nullable=False),
    sa.Column('group_key', sa.Text(), nullable=False),
    sa.Column('firing', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('resolved', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('sent_unix_nano', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('receiver', 'group_key', name=op.f('pk_notification_log'))
    )
    op.create_table('silences',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('matchers', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('starts_at_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('ends_at_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('created_by', sa.Text(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=False),
    sa.Column('updated_unix_nano', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_silences'))
    )


def downgrade() -> None:
    op.drop_table('silences')
    op.drop_table('notification_log')
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_incidents__opened_unix_nano'))
        batch_op.drop_index(batch_op.f('ix_incidents__group_key'))

    op.drop_table('incidents')
    op.drop_table('incident_events')
    with op.batch_alter_table('alerts', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alerts__ends_at_unix_nano'))

    op.drop_table('alerts')
    with op.batch_alter_table('alert_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_outbox__state_next_attempt_unix_nano'))

    op.drop_table('alert_outbox')
