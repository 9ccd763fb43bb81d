"""An index for the outbox's FIFO-per-stream claim: an item waits while an older one of its group is pending.

Revision ID: 20261207_0007
Revises: 20261206_0006
Create Date: 2026-12-07 06:00:00
"""
from collections.abc import Sequence

from alembic import op

revision: str = '20261207_0007'
down_revision: str | None = '20261206_0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('alert_outbox', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_alert_outbox__group_key_state_created_unix_nano'),
                              ['group_key', 'state', 'created_unix_nano'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('alert_outbox', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_alert_outbox__group_key_state_created_unix_nano'))
