"""the loop: rounds, jobs with leases and metrics, model versions with aliases, schedules

Revision ID: 0006_loop
Revises: 0005_exports

`jobs` and `model_versions` existed since 0001 with no code writing them; they are
replaced by the shapes the loop needs (the candidates' foreign key to model_versions is
kept). Self-contained: nothing here imports the app.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_loop"
down_revision: str | Sequence[str] | None = "0005_exports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
CANDIDATE_FK = "fk_candidates_model_version_id_model_versions"
LIVE = "exclusive AND state IN ('queued', 'running')"


def _fk(table: str, col: str, ref: str, ondelete: str) -> sa.ForeignKeyConstraint:
    name = f"fk_{table}_{col}_{ref.split('.')[0]}"
    return sa.ForeignKeyConstraint([col], [ref], name=name, ondelete=ondelete)


def _drop_candidate_fk() -> None:
    if op.get_bind().dialect.name != "sqlite":  # SQLite's FKs follow the table by name
        op.drop_constraint(CANDIDATE_FK, "candidates", type_="foreignkey")


def _add_candidate_fk() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.create_foreign_key(CANDIDATE_FK, "candidates", "model_versions",
                              ["model_version_id"], ["id"], ondelete="SET NULL")


def upgrade() -> None:
    _drop_candidate_fk()
    op.drop_table("model_versions")
    op.drop_table("jobs")
    op.create_table(
        "train_schedules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("every_hours", sa.Float(), nullable=True),
        sa.Column("min_new_comparisons", sa.Integer(), nullable=True),
        sa.Column("min_new_demonstrations", sa.Integer(), nullable=True),
        sa.Column("stages", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("promote", sa.Boolean(), nullable=False),
        sa.Column("generate", sa.JSON(), nullable=True),
        sa.Column("last_fired_at", TS, nullable=True),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        sa.CheckConstraint("every_hours IS NULL OR every_hours > 0",
                           name="ck_train_schedules_every_hours"),
        sa.CheckConstraint("min_new_comparisons IS NULL OR min_new_comparisons > 0",
                           name="ck_train_schedules_min_new_comparisons"),
        sa.CheckConstraint("min_new_demonstrations IS NULL OR min_new_demonstrations > 0",
                           name="ck_train_schedules_min_new_demonstrations"),
        _fk("train_schedules", "updated_by_id", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_train_schedules"),
    )
    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("stages", sa.JSON(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("promote", sa.Boolean(), nullable=False),
        sa.Column("generate", sa.JSON(), nullable=True),
        sa.Column("exclusive", sa.Boolean(), nullable=False),
        sa.Column("trigger", sa.String(20), nullable=False),
        sa.Column("schedule_id", sa.Integer(), nullable=True),
        sa.Column("watermark", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name="ck_rounds_state"),
        _fk("rounds", "created_by_id", "users.id", "SET NULL"),
        _fk("rounds", "schedule_id", "train_schedules.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_rounds"),
    )
    op.create_index("uq_rounds_one_live", "rounds", ["exclusive"], unique=True,
                    postgresql_where=sa.text(LIVE), sqlite_where=sa.text(LIVE))
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("queue", sa.String(20), nullable=False),
        sa.Column("state", sa.String(12), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("retry_of_id", sa.Integer(), nullable=True),
        sa.Column("retryable", sa.Boolean(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("worker", sa.String(200), nullable=True),
        sa.Column("heartbeat_at", TS, nullable=True),
        sa.Column("enqueued_at", TS, nullable=True),
        sa.Column("log_tail", sa.Text(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        sa.CheckConstraint(
            "state IN ('queued', 'running', 'succeeded', 'failed', 'cancelling', 'cancelled')",
            name="ck_jobs_state"),
        sa.CheckConstraint("progress >= 0 AND progress <= 1", name="ck_jobs_progress"),
        sa.CheckConstraint("attempt >= 1", name="ck_jobs_attempt"),
        _fk("jobs", "round_id", "rounds.id", "RESTRICT"),
        _fk("jobs", "retry_of_id", "jobs.id", "RESTRICT"),
        _fk("jobs", "created_by_id", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index("ix_jobs_round_id", "jobs", ["round_id"])
    op.create_table(
        "job_metrics",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _fk("job_metrics", "job_id", "jobs.id", "CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_job_metrics"),
    )
    op.create_index("ix_job_metrics_job_id_step", "job_metrics", ["job_id", "step"])
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.CheckConstraint("kind IN ('base', 'sft', 'rm', 'policy')",
                           name="ck_model_versions_kind"),
        _fk("model_versions", "parent_id", "model_versions.id", "RESTRICT"),
        _fk("model_versions", "job_id", "jobs.id", "RESTRICT"),
        _fk("model_versions", "round_id", "rounds.id", "RESTRICT"),
        _fk("model_versions", "created_by_id", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("job_id", name="uq_model_versions_job_id"),
        sa.UniqueConstraint("path", name="uq_model_versions_path"),
    )
    op.create_index("ix_model_versions_kind", "model_versions", ["kind"])
    _add_candidate_fk()
    op.create_table(
        "model_version_snapshots",
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("snapshot_id", sa.Integer(), nullable=False),
        _fk("model_version_snapshots", "model_version_id", "model_versions.id", "CASCADE"),
        _fk("model_version_snapshots", "snapshot_id", "dataset_snapshots.id", "RESTRICT"),
        sa.PrimaryKeyConstraint("model_version_id", "snapshot_id",
                                name="pk_model_version_snapshots"),
    )
    op.create_table(
        "model_aliases",
        sa.Column("name", sa.String(60), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", TS, nullable=False),
        _fk("model_aliases", "model_version_id", "model_versions.id", "RESTRICT"),
        _fk("model_aliases", "updated_by_id", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("name", name="pk_model_aliases"),
    )
    op.create_table(
        "alias_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("alias", sa.String(60), nullable=False),
        sa.Column("from_version_id", sa.Integer(), nullable=True),
        sa.Column("to_version_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(20), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        _fk("alias_events", "from_version_id", "model_versions.id", "RESTRICT"),
        _fk("alias_events", "to_version_id", "model_versions.id", "RESTRICT"),
        _fk("alias_events", "user_id", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_alias_events"),
    )
    op.create_index("ix_alias_events_alias", "alias_events", ["alias"])


def downgrade() -> None:
    op.drop_table("alias_events")
    op.drop_table("model_aliases")
    op.drop_table("model_version_snapshots")
    _drop_candidate_fk()
    op.drop_table("model_versions")
    op.drop_table("job_metrics")
    op.drop_table("jobs")
    op.drop_index("uq_rounds_one_live", table_name="rounds")
    op.drop_table("rounds")
    op.drop_table("train_schedules")
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(10), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("log", sa.Text(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("celery_id", sa.String(64), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("started_at", TS, nullable=True),
        sa.Column("finished_at", TS, nullable=True),
        _fk("jobs", "created_by_id", "users.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("snapshot_id", sa.Integer(), nullable=True),
        sa.Column("job_id", sa.Integer(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        _fk("model_versions", "job_id", "jobs.id", "SET NULL"),
        _fk("model_versions", "parent_id", "model_versions.id", "SET NULL"),
        _fk("model_versions", "snapshot_id", "dataset_snapshots.id", "SET NULL"),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
    )
    _add_candidate_fk()
