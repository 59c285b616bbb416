"""states named for what happens in them; approvals name what they approve

The irreversible cleanup state was called "containing"; it is now "cleaning_up", and "containing"
names the reversible hold-and-block that used to run on entering "awaiting_approval". Each approval
request now records its subject (the account, or "reboot of <server>") so a late click can be told
what it was for. A stored diagnosis takes the one JSON form `bot.core.diagnosis.to_json` writes.

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
    # A containment that failed ran in awaiting_approval; its retry must run the containment again.
    op.execute("UPDATE incidents SET failed_state = 'containing' WHERE failed_state = 'awaiting_approval'")
    _convert_diagnoses()


def _schema_form(data: dict) -> dict:
    """Return a diagnosis stored as a dataclass dump in the schema form ("queue", flat "suspect")."""
    suspect = data.get("suspect")
    if suspect is not None:
        account = suspect.pop("account", {})
        suspect = {"address": account.get("address"), "login": account.get("login"), **suspect}
    return {
        "schema": "mailfix.diagnosis/1",
        "queue": data.get("snapshot") or {"total": 0},
        "suspect": suspect,
        "runner_up": data.get("runner_up"),
        "warnings": list(data.get("warnings") or ()),
    }


def _convert_diagnoses() -> None:
    incidents = sa.table("incidents", sa.column("id", sa.Integer), sa.column("diagnosis", sa.JSON))
    connection = op.get_bind()
    rows = connection.execute(sa.select(incidents.c.id, incidents.c.diagnosis)).all()
    for incident_id, data in rows:
        if isinstance(data, dict) and "snapshot" in data:
            update = incidents.update().where(incidents.c.id == incident_id)
            connection.execute(update.values(diagnosis=_schema_form(data)))


def downgrade() -> None:
    # The new, reversible containing is the old awaiting_approval's entry (the old "containing" was the cleanup).
    for column in ("state", "failed_state"):
        op.execute(f"UPDATE incidents SET {column} = 'awaiting_approval' WHERE {column} = 'containing'")  # noqa: S608
        op.execute(f"UPDATE incidents SET {column} = 'containing' WHERE {column} = 'cleaning_up'")  # noqa: S608
    with op.batch_alter_table("approvals", schema=None) as batch_op:
        batch_op.drop_column("subject")
