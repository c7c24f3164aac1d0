"""drafts of every task kind; review of demonstrations and labeler-written prompts

Revision ID: 0009_drafts
Revises: 0010_sessions
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_drafts"
down_revision: str | Sequence[str] | None = "0010_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_REVIEWED = ("demonstrations", "written_prompts")


def upgrade() -> None:
    with op.batch_alter_table("drafts") as batch:
        # The structured half of a draft (Likert scores, flags, placements, examples).
        batch.add_column(sa.Column("data", sa.JSON(), nullable=True))
    for table in _REVIEWED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("review", sa.String(length=10), nullable=True))
            batch.add_column(sa.Column("review_reason", sa.Text(), nullable=True))
            batch.add_column(sa.Column("reviewed_by_id", sa.Integer(), nullable=True))
            batch.add_column(sa.Column("reviewed_at", sa.DateTime(timezone=True), nullable=True))
            batch.create_foreign_key(f"fk_{table}_reviewed_by_id_users", "users",
                                     ["reviewed_by_id"], ["id"], ondelete="SET NULL")


def downgrade() -> None:
    for table in _REVIEWED:
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_reviewed_by_id_users", type_="foreignkey")
            batch.drop_column("reviewed_at")
            batch.drop_column("reviewed_by_id")
            batch.drop_column("review_reason")
            batch.drop_column("review")
    with op.batch_alter_table("drafts") as batch:
        batch.drop_column("data")
