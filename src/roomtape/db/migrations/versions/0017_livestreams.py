"""livestreams: RealtimeKit's livestream objects and their sessions

Revision ID: 0017
Revises: 0015
Create Date: 2026-12-04 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import roomtape.db.models


revision: str = '0017'
down_revision: str | None = '0015'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('livestreams',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('meeting_id', sa.String(length=36), nullable=False),
    sa.Column('session_id', sa.String(length=36), nullable=True),
    sa.Column('name', sa.String(length=255), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('rtmp_url', sa.Text(), nullable=True),
    sa.Column('ingest_server', sa.String(length=2048), nullable=True),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('start_reason', sa.String(length=32), nullable=False),
    sa.Column('node_id', sa.String(length=64), nullable=True),
    sa.Column('created_at', roomtape.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', roomtape.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_livestreams_app_id_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['meeting_id'], ['meetings.id'], name=op.f('fk_livestreams_meeting_id_meetings'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_livestreams'))
    )
    with op.batch_alter_table('livestreams', schema=None) as batch_op:
        batch_op.create_index('ix_livestreams_app_created', ['app_id', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_livestreams_meeting_id'), ['meeting_id'], unique=False)
        batch_op.create_index('ix_livestreams_status', ['status'], unique=False)

    op.create_table('livestream_sessions',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('livestream_id', sa.String(length=36), nullable=False),
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('invoked_time', roomtape.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('started_time', roomtape.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('stopped_time', roomtape.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.Column('ingest_seconds', sa.Float(), nullable=False),
    sa.Column('viewer_seconds', sa.Float(), nullable=False),
    sa.Column('err_message', sa.Text(), nullable=True),
    sa.Column('created_at', roomtape.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', roomtape.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_livestream_sessions_app_id_apps'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['livestream_id'], ['livestreams.id'], name=op.f('fk_livestream_sessions_livestream_id_livestreams'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_livestream_sessions'))
    )
    with op.batch_alter_table('livestream_sessions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_livestream_sessions_app_id'), ['app_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_livestream_sessions_livestream_id'), ['livestream_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('livestream_sessions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_livestream_sessions_livestream_id'))
        batch_op.drop_index(batch_op.f('ix_livestream_sessions_app_id'))
    op.drop_table('livestream_sessions')
    with op.batch_alter_table('livestreams', schema=None) as batch_op:
        batch_op.drop_index('ix_livestreams_status')
        batch_op.drop_index(batch_op.f('ix_livestreams_meeting_id'))
        batch_op.drop_index('ix_livestreams_app_created')
    op.drop_table('livestreams')
