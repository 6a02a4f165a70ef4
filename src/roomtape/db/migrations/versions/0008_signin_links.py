"""one-time dashboard sign-in links

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-03 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import roomtape.db.models


revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('signin_links',
    sa.Column('id', sa.String(length=36), nullable=False),
    sa.Column('app_id', sa.String(length=36), nullable=False),
    sa.Column('token_hash', sa.String(length=64), nullable=False),
    sa.Column('api_token_sealed', sa.Text(), nullable=False),
    sa.Column('created_at', roomtape.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('expires_at', roomtape.db.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('used_at', roomtape.db.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_signin_links_app_id_apps'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_signin_links')),
    sa.UniqueConstraint('token_hash', name=op.f('uq_signin_links_token_hash'))
    )
    with op.batch_alter_table('signin_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_signin_links_app_id'), ['app_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('signin_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_signin_links_app_id'))

    op.drop_table('signin_links')
