"""scheduled rounds judged by people: the schedule's campaign and "if_better"

Revision ID: 0013_schedule_judging
Revises: 0012_round_campaigns

A round the schedule starts may end with a blind campaign (`evaluate`) and promote only
once people prefer its policy (`promote_if_better`), as a round started by hand may.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013_schedule_judging"
down_revision: str | Sequence[str] | None = "0012_round_campaigns"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("train_schedules") as batch:
        batch.add_column(sa.Column("promote_if_better", sa.Boolean(), nullable=False,
                                   server_default=sa.false()))
        batch.add_column(sa.Column("evaluate", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("train_schedules") as batch:
        batch.drop_column("evaluate")
        batch.drop_column("promote_if_better")
