"""track recording: per-app API secret, recorded participant and kind on recordings

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op


revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('apps', schema=None) as batch_op:
        batch_op.add_column(sa.Column('api_secret', sa.Text(), nullable=True))

    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('participant_id', sa.String(length=36), nullable=True))
        batch_op.add_column(sa.Column('track_kind', sa.String(length=16), nullable=True))
        batch_op.create_index('ix_recordings_meeting_kind_status', ['meeting_id', 'kind', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('recordings', schema=None) as batch_op:
        batch_op.drop_index('ix_recordings_meeting_kind_status')
        batch_op.drop_column('track_kind')
        batch_op.drop_column('participant_id')

    with op.batch_alter_table('apps', schema=None) as batch_op:
        batch_op.drop_column('api_secret')
