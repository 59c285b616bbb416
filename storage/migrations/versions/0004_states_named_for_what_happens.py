"""states named for what happens in them; approvals name what they approve

The irreversible cleanup state was called "containing"; it is now "cleaning_up", and "containing"
names the reversible hold-and-block that used to run on entering "awaiting_approval". Each approval
request now records its subject (the account, or "reboot of <server>") so a late click can be told
what it was for.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.add_column(sa.Column("subject", sa.String(length=320), nullable=True))
    for column in ("state", "failed_state"):
        op.execute(f"UPDATE incidents SET {column} = 'cleaning_up' WHERE {column} = 'containing'")  # noqa: S608


def downgrade() -> None:
    for column in ("state", "failed_state"):
        op.execute(f"UPDATE incidents SET {column} = 'containing' WHERE {column} = 'cleaning_up'")  # noqa: S608
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_column("subject")
