"""rounds judged by people: a round's campaign settings, its wait for judgment and the
decision; campaigns that complete

Revision ID: 0012_round_campaigns
Revises: 0009_drafts

A round may end its training with a blind campaign and promote only if people prefer the
new policy ("if_better"); until they have judged, it waits in state awaiting_judgment,
which holds the one-live-round slot as queued and running do. A campaign completes when
its last judgment is in, when it is closed by hand, or at once when it has nothing to
judge; `closed_reason` says which.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012_round_campaigns"
down_revision: str | Sequence[str] | None = "0009_drafts"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)
OLD_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
NEW_STATES = (*OLD_STATES, "awaiting_judgment")
OLD_LIVE = "exclusive AND state IN ('queued', 'running')"
NEW_LIVE = "exclusive AND state IN ('queued', 'running', 'awaiting_judgment')"


def _in(states: tuple[str, ...]) -> str:
    return f"state IN ({', '.join(repr(s) for s in states)})"


def _live_index(where: str) -> None:
    op.drop_index("uq_rounds_one_live", table_name="rounds")
    op.create_index("uq_rounds_one_live", "rounds", ["exclusive"], unique=True,
                    postgresql_where=sa.text(where), sqlite_where=sa.text(where))


def upgrade() -> None:
    with op.batch_alter_table("rounds") as batch:
        batch.drop_constraint("ck_rounds_state", type_="check")
        batch.alter_column("state", type_=sa.String(20), existing_type=sa.String(12),
                           existing_nullable=False)
        batch.create_check_constraint("ck_rounds_state", _in(NEW_STATES))
        batch.add_column(sa.Column("evaluate", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("promote_if_better", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("evaluations", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("decision", sa.JSON(), nullable=True))
    _live_index(NEW_LIVE)
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("closed_reason", sa.Text(), nullable=True))
        batch.add_column(sa.Column("completed_at", TS, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_column("completed_at")
        batch.drop_column("closed_reason")
    # A round waiting on people has no state before this revision: it ends as it stands.
    op.execute("UPDATE rounds SET state = 'succeeded' WHERE state = 'awaiting_judgment'")
    _live_index(OLD_LIVE)
    with op.batch_alter_table("rounds") as batch:
        batch.drop_column("decision")
        batch.drop_column("evaluations")
        batch.drop_column("promote_if_better")
        batch.drop_column("evaluate")
        batch.drop_constraint("ck_rounds_state", type_="check")
        batch.alter_column("state", type_=sa.String(12), existing_type=sa.String(20),
                           existing_nullable=False)
        batch.create_check_constraint("ck_rounds_state", _in(OLD_STATES))
