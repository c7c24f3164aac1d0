"""evaluation: campaigns, their compare items and the judgments on them

Revision ID: 0011_evaluation
Revises: 0006_loop
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011_evaluation"
down_revision: str | Sequence[str] | None = "0006_loop"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STAMP = sa.DateTime(timezone=True)  # what app.db.UTCDateTime stores


def _fk(table: str, column: str, target: str, ondelete: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"],
                                   name=op.f(f"fk_{table}_{column}_{target}"), ondelete=ondelete)


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("baseline_id", sa.Integer(), nullable=False),
        sa.Column("model_ids", sa.JSON(), nullable=False),
        sa.Column("n_prompts", sa.Integer(), nullable=False),
        sa.Column("overlap", sa.Integer(), nullable=False),
        sa.Column("judges", sa.String(length=10), nullable=False),
        sa.Column("sampling", sa.JSON(), nullable=False),
        sa.Column("prompt_ids", sa.JSON(), nullable=False),
        sa.Column("provenance", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=12), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("identical_pairs", sa.Integer(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", STAMP, nullable=False),
        _fk("evaluations", "baseline_id", "model_versions", "CASCADE"),
        _fk("evaluations", "job_id", "jobs", "SET NULL"),
        _fk("evaluations", "created_by_id", "users", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluations")),
    )
    op.create_table(
        "evaluation_items",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evaluation_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("baseline_candidate_id", sa.Integer(), nullable=False),
        sa.Column("candidate_id", sa.Integer(), nullable=False),
        _fk("evaluation_items", "evaluation_id", "evaluations", "CASCADE"),
        _fk("evaluation_items", "task_id", "tasks", "CASCADE"),
        _fk("evaluation_items", "prompt_id", "prompts", "CASCADE"),
        _fk("evaluation_items", "model_id", "model_versions", "CASCADE"),
        _fk("evaluation_items", "baseline_candidate_id", "candidates", "CASCADE"),
        _fk("evaluation_items", "candidate_id", "candidates", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evaluation_items")),
        sa.UniqueConstraint("evaluation_id", "prompt_id", "model_id",
                            name="uq_evaluation_items_prompt_model"),
        sa.UniqueConstraint("baseline_candidate_id", "candidate_id",
                            name="uq_evaluation_items_pair"),
        sa.UniqueConstraint("task_id", name=op.f("uq_evaluation_items_task_id")),
    )
    op.create_index(op.f("ix_evaluation_items_evaluation_id"), "evaluation_items",
                    ["evaluation_id"], unique=False)
    op.create_table(
        "judgments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("evaluation_id", sa.Integer(), nullable=False),
        sa.Column("item_id", sa.Integer(), nullable=False),
        sa.Column("task_id", sa.Integer(), nullable=False),
        sa.Column("assignment_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=False),
        sa.Column("choice", sa.String(length=10), nullable=False),
        sa.Column("outcome", sa.String(length=10), nullable=False),
        sa.Column("display_order", sa.JSON(), nullable=False),
        sa.Column("ratings", sa.JSON(), nullable=False),
        sa.Column("seconds_spent", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=100), nullable=False),
        sa.Column("created_at", STAMP, nullable=False),
        _fk("judgments", "evaluation_id", "evaluations", "CASCADE"),
        sa.ForeignKeyConstraint(["item_id"], ["evaluation_items.id"],
                                name=op.f("fk_judgments_item_id_evaluation_items"),
                                ondelete="CASCADE"),
        _fk("judgments", "task_id", "tasks", "CASCADE"),
        _fk("judgments", "assignment_id", "assignments", "CASCADE"),
        _fk("judgments", "user_id", "users", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_judgments")),
        sa.UniqueConstraint("assignment_id", name=op.f("uq_judgments_assignment_id")),
        sa.UniqueConstraint("user_id", "idempotency_key", name="uq_judgments_user_key"),
    )
    op.create_index("ix_judgments_evaluation_id", "judgments", ["evaluation_id"], unique=False)
    op.create_index(op.f("ix_judgments_user_id"), "judgments", ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_judgments_user_id"), table_name="judgments")
    op.drop_index("ix_judgments_evaluation_id", table_name="judgments")
    op.drop_table("judgments")
    op.drop_index(op.f("ix_evaluation_items_evaluation_id"), table_name="evaluation_items")
    op.drop_table("evaluation_items")
    op.drop_table("evaluations")
