"""The deployment's id, made once: it names every key the deployment keeps in Redis (its queues among them), so a
second deployment on the same Redis database never takes this one's tasks.

Revision ID: 0003_namespace
Revises: 0003_trust
Created: 2026-12-04
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0003_namespace"
down_revision = "0003_trust"
branch_labels = None
depends_on = None


def upgrade() -> None:
    deployment = op.create_table(
        "deployment",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    # Random, once per database: a copy of the database is the same deployment (a backup restored), a new database
    # another one. 48 bits: deployments sharing one Redis do not draw the same id.
    op.bulk_insert(deployment, [{"id": secrets.token_hex(6), "created_at": datetime.now(UTC)}])


def downgrade() -> None:
    op.drop_table("deployment")
