"""Late data reach the SLO counts: the collector's touched minute buckets with the write sequence that numbers
their changes, and per SLO counts key the span of minutes counted and the sequence marker they are exact to.

Revision ID: 20261205_0005
Revises: 20261204_0004
Create Date: 2026-12-05 12:00:00
"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa

revision: str = '20261205_0005'
down_revision: str | None = '20261204_0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('touched_buckets',
    sa.Column('signal', sa.SmallInteger(), nullable=False),
    sa.Column('bucket_start_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('signal', 'bucket_start_unix_nano', name=op.f('pk_touched_buckets'))
    )
    with op.batch_alter_table('touched_buckets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_touched_buckets__seq'), ['seq'], unique=False)

    op.create_table('write_sequence',
    sa.Column('id', sa.SmallInteger(), nullable=False),
    sa.Column('seq', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_write_sequence'))
    )
    op.create_table('slo_count_marks',
    sa.Column('slo', sa.Text(), nullable=False),
    sa.Column('lo_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('hi_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('marker', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('slo', name=op.f('pk_slo_count_marks'))
    )
    # Data written before this revision left no touched buckets: without a mark, each SLO's counts are
    # materialised afresh at its next refresh, so nothing stale is trusted.


def downgrade() -> None:
    op.drop_table('slo_count_marks')
    op.drop_table('write_sequence')
    with op.batch_alter_table('touched_buckets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_touched_buckets__seq'))
    op.drop_table('touched_buckets')
