"""VideoSDK rooms: a meeting's customRoomId

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-03 09:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('meetings', schema=None) as batch_op:
        batch_op.add_column(sa.Column('custom_room_id', sa.String(length=255), nullable=True))
        batch_op.create_unique_constraint('uq_meetings_app_custom_room', ['app_id', 'custom_room_id'])


def downgrade() -> None:
    with op.batch_alter_table('meetings', schema=None) as batch_op:
        batch_op.drop_constraint('uq_meetings_app_custom_room', type_='unique')
        batch_op.drop_column('custom_room_id')
