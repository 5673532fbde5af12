"""Jobs are found by their photo's blob key: the orphan sweep (core.orphans) asks, a folder of the blob store at a
time, which photo files some job still refers to, and retention which files a kept job shares. Without an index
each question read the whole jobs table.

Revision ID: 0005_photo_keys
Revises: 0004_upload_parts
Created: 2026-12-06
"""

from __future__ import annotations

from alembic import op

revision = "0005_photo_keys"
down_revision = "0004_upload_parts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_blob_key"), ["blob_key"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_blob_key"))
