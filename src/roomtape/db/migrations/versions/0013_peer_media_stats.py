"""peer reports: a stay's media counters at its leave

Revision ID: 0013
Revises: 0010
Create Date: 2026-12-03 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0013'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('session_participants', schema=None) as batch_op:
        batch_op.add_column(sa.Column('media_stats', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('session_participants', schema=None) as batch_op:
        batch_op.drop_column('media_stats')
