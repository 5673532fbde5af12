"""Resumable uploads keep their bytes in the blob store: each chunk row names its part file (`key`) and says how
many bytes it holds (`size_bytes`), instead of holding them in `data`.

Existing rows: an upload in progress during the upgrade keeps what it received. Its chunks keep their bytes in
`data` (now nullable, written by no new row) and get their size from them; the upload completes from both kinds of
chunk. A downgrade is refused while a chunk lives only in a file: its bytes would be lost to the release before.

Revision ID: 0004_upload_parts
Revises: 0003_namespace
Created: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_upload_parts"
down_revision = "0003_namespace"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("upload_chunks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("size_bytes", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("key", sa.String(length=200), nullable=True))
        batch_op.alter_column("data", existing_type=sa.LargeBinary(), nullable=True)
        batch_op.create_index(batch_op.f("ix_upload_chunks_key"), ["key"], unique=True)
    op.execute("UPDATE upload_chunks SET size_bytes = length(data)")
    with op.batch_alter_table("upload_chunks", schema=None) as batch_op:
        batch_op.alter_column("size_bytes", existing_type=sa.Integer(), nullable=False)


def downgrade() -> None:
    in_files = op.get_bind().execute(sa.text("SELECT count(*) FROM upload_chunks WHERE data IS NULL")).scalar()
    if in_files:
        raise RuntimeError(f"{in_files} chunks of resumable uploads are in part files, which the release before "
                           "cannot read: let those uploads finish or expire first")  # fmt: skip
    with op.batch_alter_table("upload_chunks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_upload_chunks_key"))
        batch_op.alter_column("data", existing_type=sa.LargeBinary(), nullable=False)
        batch_op.drop_column("key")
        batch_op.drop_column("size_bytes")
