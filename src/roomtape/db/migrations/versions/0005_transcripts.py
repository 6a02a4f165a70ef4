"""transcript items

Revision ID: 0005
Revises: 0002
Create Date: 2026-11-21 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import roomtape.db.models


revision: str = '0005'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('transcript_items',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('session_id', sa.String(length=36), nullable=False),
    sa.Column('item_id', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('role', sa.String(length=16), nullable=False),
    sa.Column('content', sa.JSON(), nullable=False),
    sa.Column('spoken_text', sa.Text(), nullable=True),
    sa.Column('interrupted', sa.Boolean(), nullable=False),
    sa.Column('participant_id', sa.String(length=255), nullable=True),
    sa.Column('speaker_id', sa.String(length=255), nullable=True),
    sa.Column('channel', sa.String(length=8), nullable=True),
    sa.Column('start', sa.Float(), nullable=True),
    sa.Column('end', sa.Float(), nullable=True),
    sa.Column('start_epoch', sa.Float(), nullable=True),
    sa.Column('end_epoch', sa.Float(), nullable=True),
    sa.Column('created_epoch', sa.Float(), nullable=False),
    sa.Column('words', sa.JSON(), nullable=False),
    sa.Column('language', sa.String(length=35), nullable=True),
    sa.Column('is_final', sa.Boolean(), nullable=False),
    sa.Column('utterance_id', sa.String(length=128), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('extra', sa.JSON(), nullable=False),
    sa.Column('created_at', roomtape.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', roomtape.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_transcript_items_app_id_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_transcript_items_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transcript_items')),
    sa.UniqueConstraint('session_id', 'item_id', name='uq_transcript_items_session_item')
    )
    with op.batch_alter_table('transcript_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transcript_items_app_id'), ['app_id'], unique=False)
        batch_op.create_index('ix_transcript_items_session_start', ['session_id', 'start_epoch'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('transcript_items', schema=None) as batch_op:
        batch_op.drop_index('ix_transcript_items_session_start')
        batch_op.drop_index(batch_op.f('ix_transcript_items_app_id'))

    op.drop_table('transcript_items')
