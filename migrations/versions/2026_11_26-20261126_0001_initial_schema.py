"""Initial schema: resources, spans (+ events, links), metric series and samples, per-minute rollups.

Revision ID: 20261126_0001
Revises: 
Create Date: 2026-11-26 10:38:41.461380
"""
from collections.abc import Sequence

from alembic import op
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

revision: str = '20261126_0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:

    op.create_table('resources',
    sa.Column('fingerprint', sa.String(length=16), nullable=False),
    sa.Column('service_name', sa.Text(), nullable=False),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('first_seen_unix_nano', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('fingerprint', name=op.f('pk_resources'))
    )
    op.create_table('rollup_pending',
    sa.Column('signal', sa.SmallInteger(), nullable=False),
    sa.Column('bucket_start_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('touched_unix_nano', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('signal', 'bucket_start_unix_nano', name=op.f('pk_rollup_pending'))
    )
    op.create_table('span_events',
    sa.Column('trace_id', sa.String(length=32), nullable=False),
    sa.Column('span_id', sa.String(length=16), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('time_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('dropped_attributes_count', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('trace_id', 'span_id', 'seq', name=op.f('pk_span_events'))
    )
    with op.batch_alter_table('span_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_span_events__name_time_unix_nano'), ['name', 'time_unix_nano'], unique=False)

    op.create_table('span_links',
    sa.Column('trace_id', sa.String(length=32), nullable=False),
    sa.Column('span_id', sa.String(length=16), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('linked_trace_id', sa.String(length=32), nullable=False),
    sa.Column('linked_span_id', sa.String(length=16), nullable=False),
    sa.Column('trace_state', sa.Text(), nullable=False),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.PrimaryKeyConstraint('trace_id', 'span_id', 'seq', name=op.f('pk_span_links'))
    )
    with op.batch_alter_table('span_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_span_links__linked_trace_id'), ['linked_trace_id'], unique=False)

    op.create_table('span_rollups',
    sa.Column('bucket_start_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('status_code', sa.SmallInteger(), nullable=False),
    sa.Column('node_id', sa.Text(), nullable=False),
    sa.Column('link_id', sa.Text(), nullable=False),
    sa.Column('hardware_type', sa.Text(), nullable=False),
    sa.Column('span_count', sa.BigInteger(), nullable=False),
    sa.Column('duration_sum_ns', sa.BigInteger(), nullable=False),
    sa.Column('duration_min_ns', sa.BigInteger(), nullable=False),
    sa.Column('duration_max_ns', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('bucket_start_unix_nano', 'name', 'status_code', 'node_id', 'link_id', 'hardware_type', name=op.f('pk_span_rollups'))
    )
    with op.batch_alter_table('span_rollups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_span_rollups__name_bucket_start_unix_nano'), ['name', 'bucket_start_unix_nano'], unique=False)

    op.create_table('metric_series',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('fingerprint', sa.String(length=16), nullable=False),
    sa.Column('metric_name', sa.Text(), nullable=False),
    sa.Column('metric_type', sa.SmallInteger(), nullable=False),
    sa.Column('temporality', sa.SmallInteger(), nullable=False),
    sa.Column('is_monotonic', sa.Boolean(), nullable=False),
    sa.Column('unit', sa.Text(), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('labels', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('resource_fingerprint', sa.String(length=16), nullable=True),
    sa.Column('node_id', sa.Text(), nullable=True),
    sa.Column('link_id', sa.Text(), nullable=True),
    sa.Column('hardware_type', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['resource_fingerprint'], ['resources.fingerprint'], name=op.f('fk_metric_series__resource_fingerprint__resources')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_metric_series')),
    sa.UniqueConstraint('fingerprint', name=op.f('uq_metric_series__fingerprint'))
    )
    with op.batch_alter_table('metric_series', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_metric_series__metric_name'), ['metric_name'], unique=False)

    op.create_table('spans',
    sa.Column('trace_id', sa.String(length=32), nullable=False),
    sa.Column('span_id', sa.String(length=16), nullable=False),
    sa.Column('parent_span_id', sa.String(length=16), nullable=True),
    sa.Column('resource_fingerprint', sa.String(length=16), nullable=True),
    sa.Column('service_name', sa.Text(), nullable=False),
    sa.Column('scope_name', sa.Text(), nullable=False),
    sa.Column('name', sa.Text(), nullable=False),
    sa.Column('kind', sa.SmallInteger(), nullable=False),
    sa.Column('start_time_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('end_time_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('duration_ns', sa.BigInteger(), nullable=False),
    sa.Column('status_code', sa.SmallInteger(), nullable=False),
    sa.Column('status_message', sa.Text(), nullable=False),
    sa.Column('trace_state', sa.Text(), nullable=False),
    sa.Column('flags', sa.BigInteger(), nullable=False),
    sa.Column('attributes', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('dropped_attributes_count', sa.Integer(), nullable=False),
    sa.Column('dropped_events_count', sa.Integer(), nullable=False),
    sa.Column('dropped_links_count', sa.Integer(), nullable=False),
    sa.Column('node_id', sa.Text(), nullable=True),
    sa.Column('link_id', sa.Text(), nullable=True),
    sa.Column('job_id', sa.Text(), nullable=True),
    sa.Column('run_id', sa.Text(), nullable=True),
    sa.Column('hardware_type', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['resource_fingerprint'], ['resources.fingerprint'], name=op.f('fk_spans__resource_fingerprint__resources')),
    sa.PrimaryKeyConstraint('trace_id', 'span_id', name=op.f('pk_spans'))
    )
    with op.batch_alter_table('spans', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_spans__job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_spans__name_start_time_unix_nano'), ['name', 'start_time_unix_nano'], unique=False)
        batch_op.create_index(batch_op.f('ix_spans__node_id_start_time_unix_nano'), ['node_id', 'start_time_unix_nano'], unique=False)
        batch_op.create_index(batch_op.f('ix_spans__start_time_unix_nano'), ['start_time_unix_nano'], unique=False)

    op.create_table('metric_rollups',
    sa.Column('series_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('bucket_start_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('sample_count', sa.BigInteger(), nullable=False),
    sa.Column('value_sum', sa.Float(), nullable=False),
    sa.Column('value_min', sa.Float(), nullable=False),
    sa.Column('value_max', sa.Float(), nullable=False),
    sa.Column('last_value', sa.Float(), nullable=False),
    sa.Column('last_time_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('increase', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['series_id'], ['metric_series.id'], name=op.f('fk_metric_rollups__series_id__metric_series')),
    sa.PrimaryKeyConstraint('series_id', 'bucket_start_unix_nano', name=op.f('pk_metric_rollups'))
    )
    with op.batch_alter_table('metric_rollups', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_metric_rollups__bucket_start_unix_nano'), ['bucket_start_unix_nano'], unique=False)

    op.create_table('metric_samples',
    sa.Column('series_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('time_unix_nano', sa.BigInteger(), nullable=False),
    sa.Column('value', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['series_id'], ['metric_series.id'], name=op.f('fk_metric_samples__series_id__metric_series')),
    sa.PrimaryKeyConstraint('series_id', 'time_unix_nano', name=op.f('pk_metric_samples'))
    )
    with op.batch_alter_table('metric_samples', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_metric_samples__time_unix_nano'), ['time_unix_nano'], unique=False)




def downgrade() -> None:

    with op.batch_alter_table('metric_samples', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_metric_samples__time_unix_nano'))

    op.drop_table('metric_samples')
    with op.batch_alter_table('metric_rollups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_metric_rollups__bucket_start_unix_nano'))

    op.drop_table('metric_rollups')
    with op.batch_alter_table('spans', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_spans__start_time_unix_nano'))
        batch_op.drop_index(batch_op.f('ix_spans__node_id_start_time_unix_nano'))
        batch_op.drop_index(batch_op.f('ix_spans__name_start_time_unix_nano'))
        batch_op.drop_index(batch_op.f('ix_spans__job_id'))

    op.drop_table('spans')
    with op.batch_alter_table('metric_series', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_metric_series__metric_name'))

    op.drop_table('metric_series')
    with op.batch_alter_table('span_rollups', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_span_rollups__name_bucket_start_unix_nano'))

    op.drop_table('span_rollups')
    with op.batch_alter_table('span_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_span_links__linked_trace_id'))

    op.drop_table('span_links')
    with op.batch_alter_table('span_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_span_events__name_time_unix_nano'))

    op.drop_table('span_events')
    op.drop_table('rollup_pending')
    op.drop_table('resources')

