"""queue: live-lease counter and partial next-task indexes; prompt prefix index

Revision ID: 0002_queue
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_queue"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

OPEN = "state = 'open'"


def upgrade() -> None:
    with op.batch_alter_table("tasks") as batch:
        batch.add_column(
            sa.Column("leased_labels", sa.Integer(), nullable=False, server_default="0")
        )
    op.create_index(
        "ix_tasks_open_kind", "tasks", ["kind", sa.text("priority DESC"), "id"],
        postgresql_where=sa.text(OPEN), sqlite_where=sa.text(OPEN),
    )
    op.create_index(
        "ix_tasks_open_any", "tasks", [sa.text("priority DESC"), "id"],
        postgresql_where=sa.text(OPEN), sqlite_where=sa.text(OPEN),
    )
    if op.get_bind().dialect.name == "postgresql":
        # Room on each page for HOT updates of the slot counters (docs/queue.md).
        op.execute("ALTER TABLE tasks SET (fillfactor = 80)")
    prefix_type = sa.Text().with_variant(sa.Text(collation="C"), "postgresql")
    with op.batch_alter_table("prompts") as batch:
        batch.add_column(sa.Column("norm_prefix", prefix_type, nullable=True))
        batch.create_index("ix_prompts_norm_prefix", ["norm_prefix"])


def downgrade() -> None:
    with op.batch_alter_table("prompts") as batch:
        batch.drop_index("ix_prompts_norm_prefix")
        batch.drop_column("norm_prefix")
    op.drop_index("ix_tasks_open_any", table_name="tasks")
    op.drop_index("ix_tasks_open_kind", table_name="tasks")
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE tasks RESET (fillfactor)")
    with op.batch_alter_table("tasks") as batch:
        batch.drop_column("leased_labels")
