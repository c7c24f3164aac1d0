"""labeling: demonstration drafts, guidelines, prompt flags, written prompts

Revision ID: 0003_labeling
Revises: 0002_queue
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_labeling"
down_revision: str | Sequence[str] | None = "0002_queue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "drafts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("client_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["assignment_id"], ["assignments.id"],
                                name=op.f("fk_drafts_assignment_id_assignments"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_drafts_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drafts")),
        sa.UniqueConstraint("assignment_id", name=op.f("uq_drafts_assignment_id")),
    )
    op.create_index(op.f("ix_drafts_user_id"), "drafts", ["user_id"], unique=False)
    op.create_table(
        "guidelines",
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["updated_by_id"], ["users.id"],
                                name=op.f("fk_guidelines_updated_by_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("kind", name=op.f("pk_guidelines")),
    )
    op.create_table(
        "prompt_flags",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=True),
        sa.Column("reason", sa.String(length=20), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"],
                                name=op.f("fk_prompt_flags_prompt_id_prompts"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"],
                                name=op.f("fk_prompt_flags_task_id_tasks"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_prompt_flags_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prompt_flags")),
        sa.UniqueConstraint("user_id", "prompt_id", "reason", name="uq_prompt_flags_user_prompt"),
    )
    op.create_index("ix_prompt_flags_prompt_id", "prompt_flags", ["prompt_id"], unique=False)
    op.create_table(
        "written_prompts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("prompt_kind", sa.String(length=20), nullable=False),
        sa.Column("seconds_spent", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["assignment_id"], ["assignments.id"],
                                name=op.f("fk_written_prompts_assignment_id_assignments"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["prompt_id"], ["prompts.id"],
                                name=op.f("fk_written_prompts_prompt_id_prompts"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["task_id"], ["tasks.id"],
                                name=op.f("fk_written_prompts_task_id_tasks"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"],
                                name=op.f("fk_written_prompts_user_id_users"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_written_prompts")),
        sa.UniqueConstraint("assignment_id", name=op.f("uq_written_prompts_assignment_id")),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_written_prompts_user_key"),
    )
    op.create_index(op.f("ix_written_prompts_task_id"), "written_prompts", ["task_id"],
                    unique=False)
    op.create_index(op.f("ix_written_prompts_user_id"), "written_prompts", ["user_id"],
                    unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_written_prompts_user_id"), table_name="written_prompts")
    op.drop_index(op.f("ix_written_prompts_task_id"), table_name="written_prompts")
    op.drop_table("written_prompts")
    op.drop_index("ix_prompt_flags_prompt_id", table_name="prompt_flags")
    op.drop_table("prompt_flags")
    op.drop_table("guidelines")
    op.drop_index(op.f("ix_drafts_user_id"), table_name="drafts")
    op.drop_table("drafts")
