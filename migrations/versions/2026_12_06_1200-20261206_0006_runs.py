"""Runs are first-class: the ``runs`` table (id, fleet, simulated [start, end), status, created/finished times).

Revision ID: 20261206_0006
Revises: 20261205_0005
Create Date: 2026-12-06 12:00:00
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '20261206_0006'
down_revision: str | None = '20261205_0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('runs',
    sa.Column('id', sa.Text(), nullable=False),
    sa.Column('fleet', sa.Text(), nullable=False),
    sa.Column('start_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('end_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.Text(), nullable=False),
    sa.Column('created_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('finished_unix_nano', sa.BigInteger(), nullable=True),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_runs'))
    )
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_runs__start_unix_nano'), ['start_unix_nano'], unique=False)
    # Data written before this revision has no run: the views treat it as they treat OTLP data (no selection).


def downgrade() -> None:
    with op.batch_alter_table('runs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_runs__start_unix_nano'))
    op.drop_table('runs')
