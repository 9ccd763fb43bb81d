"""Replicas on one database: outbox leases, the evaluation leader lease, the last notification per group in the
notification log (escalations survive a restart), and who resolved an incident.

Revision ID: 20261204_0004
Revises: 20261201_0003
Create Date: 2026-12-04 21:40:00
"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision: str = '20261204_0004'
down_revision: str | None = '20261201_0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql')


def upgrade() -> None:
    op.create_table('alerts_leases',
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('holder', sa.Text(), nullable=False),
    sa.Column('expires_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('cycle_unix_nano', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_alerts_leases'))
    )
    with op.batch_alter_table('alert_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_owner', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('lease_until_unix_nano', sa.BigInteger(), nullable=True))
    with op.batch_alter_table('notification_log', schema=None) as batch_op:
        batch_op.add_column(sa.Column('notification', _JSON, nullable=True))
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resolved_by', sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('incidents', schema=None) as batch_op:
        batch_op.drop_column('resolved_by')
    with op.batch_alter_table('notification_log', schema=None) as batch_op:
        batch_op.drop_column('notification')
    with op.batch_alter_table('alert_outbox', schema=None) as batch_op:
        batch_op.drop_column('lease_until_unix_nano')
        batch_op.drop_column('lease_owner')
    op.drop_table('alerts_leases')
