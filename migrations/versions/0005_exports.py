"""exports: snapshot progress, options and finish time

Revision ID: 0005_exports
Revises: 0003_labeling
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_exports"
down_revision: str | Sequence[str] | None = "0003_labeling"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dataset_snapshots") as batch:
        # Existing rows get neutral values; new rows are written by the app with real ones.
        batch.add_column(sa.Column("options", sa.JSON(), nullable=False, server_default="{}"))
        batch.add_column(sa.Column("progress", sa.Float(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch.create_index("ix_dataset_snapshots_created_at", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("dataset_snapshots") as batch:
        batch.drop_index("ix_dataset_snapshots_created_at")
        batch.drop_column("finished_at")
        batch.drop_column("progress")
        batch.drop_column("options")
