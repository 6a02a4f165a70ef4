"""app-wide default storage_config; the recording an outbox event is about

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-21 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('apps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('storage_config', sa.JSON(), nullable=True))

    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('recording_id', sa.String(length=36), nullable=True))
        batch_op.create_index('ix_outbox_events_recording_id', ['recording_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('outbox_events', schema=None) as batch_op:
        batch_op.drop_index('ix_outbox_events_recording_id')
        batch_op.drop_column('recording_id')

    with op.batch_alter_table('apps', schema=None) as batch_op:
        batch_op.drop_column('storage_config')
