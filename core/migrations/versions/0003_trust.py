"""Trust comes from the credential: feedback keeps the device that sent it (or the agronomist who gave it), and
feedback's Idempotency-Keys are bound to the feedback they first came with.

Existing rows: every one was sent through the API by a device token, on one of that device's own jobs (the API
never let a device speak about another's), so each gets its job's device. Those that said `agronomist` said it in
the request body, which is what the issue was about: nothing checked it, so they become what their credential made
them, farmers' words, and the per-source counts are counted again from the rows so they agree. (A downgrade keeps
them farmers': the claim was never verified.)

Revision ID: 0003_trust
Revises: 0003_retention
Created: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_trust"
down_revision = "0003_retention"
branch_labels = None
depends_on = None

DEVICE_FK = "fk_feedback_device_id_devices"


def upgrade() -> None:
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.add_column(sa.Column("device_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("agronomist", sa.String(length=200), nullable=True))
        batch_op.create_index(batch_op.f("ix_feedback_device_id"), ["device_id"], unique=False)
        batch_op.create_foreign_key(DEVICE_FK, "devices", ["device_id"], ["id"])
    op.create_table(
        "feedback_keys",
        sa.Column("job_id", sa.String(length=32), nullable=False),
        sa.Column("idempotency_key", sa.String(length=255), nullable=False),
        sa.Column("event_id", sa.String(length=32), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"]),
        sa.PrimaryKeyConstraint("job_id", "idempotency_key"),
    )
    op.execute("UPDATE feedback SET device_id = (SELECT jobs.device_id FROM jobs WHERE jobs.id = feedback.job_id)")
    op.execute("UPDATE feedback SET source = 'farmer' WHERE source = 'agronomist'")
    op.execute("DELETE FROM model_feedback_counts")
    op.execute(
        "INSERT INTO model_feedback_counts (model_version, source, confirmed, corrected) "
        "SELECT model_version, source, SUM(CASE WHEN agrees THEN 1 ELSE 0 END), "
        "SUM(CASE WHEN agrees THEN 0 ELSE 1 END) FROM feedback "
        "WHERE model_version IS NOT NULL AND agrees IS NOT NULL GROUP BY model_version, source"
    )


def downgrade() -> None:
    op.drop_table("feedback_keys")
    with op.batch_alter_table("feedback", schema=None) as batch_op:
        batch_op.drop_constraint(DEVICE_FK, type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_feedback_device_id"))
        batch_op.drop_column("agronomist")
        batch_op.drop_column("device_id")
