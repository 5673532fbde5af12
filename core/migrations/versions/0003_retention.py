"""Retention (issue 23): a job remembers when its photo was deleted, a model version when its artifact was, and a
phone event when the server received it (the phone's own clock may say anything).

Revision ID: 0003_retention
Revises: 0002
Created: 2026-12-05
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003_retention"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("photo_deleted_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("artifact_deleted_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("client_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("received_at", sa.DateTime(timezone=True), nullable=True))
    # Events stored before count as received now: kept for the whole retention from the upgrade on, never less.
    events = sa.table("client_events", sa.column("received_at", sa.DateTime(timezone=True)))
    op.execute(events.update().values(received_at=datetime.now(UTC)))
    with op.batch_alter_table("client_events", schema=None) as batch_op:
        batch_op.alter_column("received_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.create_index(batch_op.f("ix_client_events_received_at"), ["received_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("client_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_client_events_received_at"))
        batch_op.drop_column("received_at")
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("artifact_deleted_at")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("photo_deleted_at")
