"""The farmer's app: one-time pairing codes (`mhogo devices add NAME --link`), the token hash a revocation took away
(so that a revoked phone is told so, not that its token is unknown), and a device's jobs by time (GET /v1/jobs pages
through them newest first; the index on (device_id, created_at, id) also serves every lookup by device alone, so it
replaces the index on device_id).

Existing rows: revocations made before keep no token hash (that token's hash was overwritten then): their phones
keep hearing "unknown token".

Revision ID: 0006_pairing
Revises: 0005_photo_keys
Created: 2026-12-08
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_pairing"
down_revision = "0005_photo_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pairing_codes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("device_id", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["device_id"], ["devices.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("pairing_codes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_pairing_codes_code_hash"), ["code_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_pairing_codes_device_id"), ["device_id"], unique=False)
    with op.batch_alter_table("device_revocations", schema=None) as batch_op:
        batch_op.add_column(sa.Column("token_hash", sa.String(length=64), nullable=True))
        batch_op.create_index(batch_op.f("ix_device_revocations_token_hash"), ["token_hash"], unique=True)
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index("ix_jobs_device_created", ["device_id", "created_at", "id"], unique=False)
        batch_op.drop_index(batch_op.f("ix_jobs_device_id"))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_device_id"), ["device_id"], unique=False)
        batch_op.drop_index("ix_jobs_device_created")
    with op.batch_alter_table("device_revocations", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_device_revocations_token_hash"))
        batch_op.drop_column("token_hash")
    op.drop_table("pairing_codes")
