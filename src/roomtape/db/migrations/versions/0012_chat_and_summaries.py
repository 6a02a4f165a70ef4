"""chat messages (persist_chat) and session summaries (summarize_on_end)

Revision ID: 0012
Revises: 0008
Create Date: 2026-12-03 09:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import roomtape.db.models


revision: str = '0012'
down_revision: str | None = '0008'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('chat_messages',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('session_id', sa.String(length=36), nullable=False),
    sa.Column('participant_id', sa.String(length=36), nullable=False),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('sent_at', roomtape.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_chat_messages_app_id_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_chat_messages_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_chat_messages'))
    )
    with op.batch_alter_table('chat_messages', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_chat_messages_app_id'), ['app_id'], unique=False)
        batch_op.create_index('ix_chat_messages_session_sent', ['session_id', 'sent_at'], unique=False)

    op.create_table('session_summaries',
    sa.Column('session_id', sa.String(length=36), nullable=False),
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('backend', sa.String(length=255), nullable=True),
    sa.Column('text', sa.Text(), nullable=True),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('attempts', sa.Integer(), nullable=False),
    sa.Column('created_at', roomtape.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', roomtape.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_session_summaries_app_id_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['session_id'], ['sessions.id'], name=op.f('fk_session_summaries_session_id_sessions'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('session_id', name=op.f('pk_session_summaries'))
    )
    with op.batch_alter_table('session_summaries', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_session_summaries_app_id'), ['app_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('session_summaries', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_session_summaries_app_id'))
    op.drop_table('session_summaries')
    with op.batch_alter_table('chat_messages', schema=None) as batch_op:
        batch_op.drop_index('ix_chat_messages_session_sent')
        batch_op.drop_index(batch_op.f('ix_chat_messages_app_id'))
    op.drop_table('chat_messages')
