"""invariants: CHECK constraints on counters, Likert and enums; unique ratings; RESTRICT
deletes of users and prompts that have labels

Revision ID: 0007_invariants
Revises: 0011_evaluation

The queue's hot path keeps the task counters in hand-written SQL; these constraints are
the backstop that refuses a write breaking them. On SQLite each table is rebuilt (batch
mode); on PostgreSQL the constraints are added in place.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_invariants"
down_revision: str | Sequence[str] | None = "0011_evaluation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _in(column: str, *values: str) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


# table -> [(constraint name, condition)]
CHECKS: dict[str, list[tuple[str, str]]] = {
    "users": [("ck_users_role", _in("role", "labeler", "researcher", "admin"))],
    "prompts": [
        ("ck_prompts_prompt_source", _in("source", "imported", "labeler", "api")),
        ("ck_prompts_split", _in("split", "train", "valid", "test")),
    ],
    "tasks": [
        ("ck_tasks_required_positive", "required_labels >= 1"),
        ("ck_tasks_done_nonnegative", "done_labels >= 0"),
        ("ck_tasks_leased_nonnegative", "leased_labels >= 0"),
        ("ck_tasks_slots_fit", "done_labels + leased_labels <= required_labels"),
        ("ck_tasks_task_kind",
         _in("kind", "demonstrate", "rank", "rate", "write_prompt", "compare")),
        ("ck_tasks_task_state", _in("state", "open", "closed")),
    ],
    "assignments": [
        ("ck_assignments_assignment_state",
         _in("state", "leased", "submitted", "skipped", "expired")),
    ],
    "ratings": [("ck_ratings_likert_range", "likert BETWEEN 1 AND 7")],
}

# (table, column, referred table): foreign keys that cascaded a delete into labels and now
# restrict it (users are deactivated, not deleted).
RESTRICTED = [
    ("tasks", "prompt_id", "prompts"),
    ("assignments", "user_id", "users"),
    ("demonstrations", "user_id", "users"),
    ("demonstrations", "prompt_id", "prompts"),
    ("rankings", "user_id", "users"),
    ("rankings", "prompt_id", "prompts"),
    ("ratings", "user_id", "users"),
    ("ratings", "candidate_id", "candidates"),
    ("written_prompts", "user_id", "users"),
    ("written_prompts", "prompt_id", "prompts"),
]
STANDALONE = "ranking_id IS NULL"
OPEN = "state = 'open'"
TABLES = ["users", "prompts", "tasks", "assignments", "demonstrations", "rankings", "ratings",
          "written_prompts"]


def _set_ondelete(batch, table: str, ondelete: str) -> None:  # type: ignore[no-untyped-def]
    for name_table, column, referred in RESTRICTED:
        if name_table != table:
            continue
        name = f"fk_{table}_{column}_{referred}"
        batch.drop_constraint(op.f(name), type_="foreignkey")
        batch.create_foreign_key(op.f(name), referred, [column], ["id"], ondelete=ondelete)


# Rows an older version could have written that the constraints would refuse: the upgrade
# stops and says what to fix rather than fail halfway with a constraint's name.
VIOLATIONS = [
    ("tasks whose counters are out of range",
     "SELECT count(*) FROM tasks WHERE NOT (required_labels >= 1 AND done_labels >= 0"
     " AND leased_labels >= 0 AND done_labels + leased_labels <= required_labels)"),
    ("ratings with a Likert score outside 1..7",
     "SELECT count(*) FROM ratings WHERE likert NOT BETWEEN 1 AND 7"),
    ("rate assignments with more than one rating",
     "SELECT count(*) FROM (SELECT assignment_id FROM ratings WHERE ranking_id IS NULL"
     " GROUP BY assignment_id HAVING count(*) > 1) AS twice"),
    ("rankings that rate an output twice",
     "SELECT count(*) FROM (SELECT ranking_id FROM ratings WHERE ranking_id IS NOT NULL"
     " GROUP BY ranking_id, candidate_id HAVING count(*) > 1) AS twice"),
]


def _refuse_violations() -> None:
    bind = op.get_bind()
    counts = [(bind.execute(sa.text(query)).scalar(), what) for what, query in VIOLATIONS]
    found = [f"{n} {what}" for n, what in counts if n]
    if found:
        raise RuntimeError("0007_invariants cannot add its constraints: the database has "
                           + "; ".join(found) + ". Correct or remove those rows, then upgrade.")


def upgrade() -> None:
    _refuse_violations()
    for table in TABLES:
        with op.batch_alter_table(table) as batch:
            for name, condition in CHECKS.get(table, []):
                batch.create_check_constraint(op.f(name), condition)
            _set_ondelete(batch, table, "RESTRICT")
            if table == "ratings":
                batch.drop_index("ix_ratings_ranking_id")
                batch.create_unique_constraint(op.f("uq_ratings_ranking_candidate"),
                                               ["ranking_id", "candidate_id"])
    op.create_index("uq_ratings_rate_assignment", "ratings", ["assignment_id"], unique=True,
                    postgresql_where=sa.text(STANDALONE), sqlite_where=sa.text(STANDALONE))
    _restore_open_indexes()


def downgrade() -> None:
    op.drop_index("uq_ratings_rate_assignment", table_name="ratings")
    for table in reversed(TABLES):
        with op.batch_alter_table(table) as batch:
            if table == "ratings":
                batch.drop_constraint(op.f("uq_ratings_ranking_candidate"), type_="unique")
                batch.create_index("ix_ratings_ranking_id", ["ranking_id"])
            _set_ondelete(batch, table, "CASCADE")
            for name, _condition in CHECKS.get(table, []):
                batch.drop_constraint(op.f(name), type_="check")
    _restore_open_indexes()


def _restore_open_indexes() -> None:
    """SQLite's table rebuild reflects the next-task indexes without their `DESC`: build
    them again as 0002_queue did (PostgreSQL altered the table in place)."""
    if op.get_bind().dialect.name != "sqlite":
        return
    for name, columns in (("ix_tasks_open_kind", ["kind", sa.text("priority DESC"), "id"]),
                          ("ix_tasks_open_any", [sa.text("priority DESC"), "id"])):
        op.drop_index(name, table_name="tasks")
        op.create_index(name, "tasks", columns, sqlite_where=sa.text(OPEN))
