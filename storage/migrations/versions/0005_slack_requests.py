"""Slack requests seen by any replica; claims for monitoring checks and alert telling

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # One row per Slack request (its payload's identity): the first replica to insert it handles it;
    # a retry of it reaching any replica finds the row and is acked and dropped.
    op.create_table(
        "slack_requests",
        sa.Column("key", sa.String(length=200), primary_key=True),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_slack_requests_seen_at", "slack_requests", ["seen_at"])
    # The replica whose conditional UPDATE moves next_check_at runs that monitoring check (database clock).
    op.add_column("incidents", sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=True))
    # A watcher telling an alert holds it until then; a watcher that died lets it go when it runs out.
    op.add_column("flood_alerts", sa.Column("telling_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    op.drop_column("flood_alerts", "telling_until")  # SQLite 3.35+ drops columns in place
    op.drop_column("incidents", "next_check_at")
    op.drop_index("ix_slack_requests_seen_at", table_name="slack_requests")
    op.drop_table("slack_requests")
