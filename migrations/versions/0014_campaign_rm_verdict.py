"""a campaign's pairs as the round's reward model reads them, beside people's verdict

Revision ID: 0014_campaign_rm_verdict
Revises: 0013_schedule_judging

A round's campaign records how often the reward model the round trained its policy against
prefers that policy on the very pairs people judge: where the RM and people part ways on
the same answers, the watch flags the round.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014_campaign_rm_verdict"
down_revision: str | Sequence[str] | None = "0013_schedule_judging"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.add_column(sa.Column("rm_verdict", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("evaluations") as batch:
        batch.drop_column("rm_verdict")
