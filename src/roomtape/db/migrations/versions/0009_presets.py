"""presets: one row per preset of an app; default presets for every app; names in use kept working

Revision ID: 0009
Revises: 0012
Create Date: 2026-12-03 09:00:00.000000
"""

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

from roomtape.domain.presets import DEFAULT_PRESETS

revision: str = '0009'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    presets = op.create_table(
        'presets',
        sa.Column('id', sa.String(length=36), nullable=False),
        sa.Column('app_id', sa.String(length=36), nullable=False),
        sa.Column('name', sa.String(length=255), nullable=False),
        sa.Column('config', sa.JSON(), nullable=False),
        sa.Column('permissions', sa.JSON(), nullable=False),
        sa.Column('ui', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['app_id'], ['apps.id'], name=op.f('fk_presets_app_id_apps'), ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_presets')),
        sa.UniqueConstraint('app_id', 'name', name='uq_presets_app_name'),
    )
    op.create_index('ix_presets_app_created', 'presets', ['app_id', 'created_at'], unique=False)

    # Every existing app gets the default presets; a preset name its participants already use (presets
    # were free-form names before) becomes a preset with the host's permissions, which is what such a
    # participant could do until now.
    bind = op.get_bind()
    now = datetime.now(UTC)
    used = bind.execute(
        sa.text(
            'SELECT DISTINCT m.app_id, p.preset_name FROM participants p JOIN meetings m ON m.id = p.meeting_id'
        )
    ).all()
    names: dict[str, set[str]] = {app_id: set(DEFAULT_PRESETS) for (app_id,) in bind.execute(sa.text('SELECT id FROM apps'))}
    for app_id, name in used:
        names.setdefault(app_id, set(DEFAULT_PRESETS)).add(name)
    rows = []
    for app_id, app_names in names.items():
        for name in sorted(app_names):
            doc = DEFAULT_PRESETS.get(name, DEFAULT_PRESETS['group_call_host'])
            rows.append(
                {'id': str(uuid.uuid4()), 'app_id': app_id, 'name': name, 'created_at': now, 'updated_at': now, **doc}
            )
    if rows:
        op.bulk_insert(presets, rows)


def downgrade() -> None:
    op.drop_index('ix_presets_app_created', table_name='presets')
    op.drop_table('presets')
