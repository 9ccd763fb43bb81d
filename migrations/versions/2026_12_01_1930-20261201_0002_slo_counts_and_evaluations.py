"""SLO engine tables: per-minute SLO counts (materialised from the rollups) and the evaluation history.

Revision ID: 20261201_0002
Revises: 20261126_0001
Create Date: 2026-12-01 19:30:49.565574
"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision: str = '20261201_0002'
down_revision: str | None = '20261126_0001'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('slo_counts',
    sa.Column('slo', sa.Text(), nullable=False),
    sa.Column('segment', sa.Text(), nullable=False),
    sa.Column('bucket_start_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('good', sa.BigInteger(), nullable=False),
    sa.Column('total', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('slo', 'segment', 'bucket_start_unix_nano', name=op.f('pk_slo_counts'))
    )
    op.create_table('slo_evaluations',
    sa.Column('slo', sa.Text(), nullable=False),
    sa.Column('segment', sa.Text(), nullable=False),
    sa.Column('at_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('sli', sa.Float(), nullable=True),
    sa.Column('remaining_fraction', sa.Float(), nullable=True),
    sa.Column('burn_1h', sa.Float(), nullable=True),
    sa.Column('burn_6h', sa.Float(), nullable=True),
    sa.Column('page', sa.Boolean(), nullable=False),
    sa.Column('ticket', sa.Boolean(), nullable=False),
    sa.Column('report', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('slo', 'segment', 'at_unix_nano', name=op.f('pk_slo_evaluations'))
    )
    with op.batch_alter_table('slo_evaluations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_slo_evaluations__at_unix_nano'), ['at_unix_nano'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('slo_evaluations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_slo_evaluations__at_unix_nano'))

    op.drop_table('slo_evaluations')
    op.drop_table('slo_counts')
