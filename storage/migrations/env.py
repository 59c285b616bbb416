"""Alembic environment: runs migrations on the URL that storage.db.upgrade passes in."""

from alembic import context

from storage.db import make_engine
from storage.models import Base

MIGRATION_LOCK = 0x6D61696C66  # any constant of our own: "mailf"
config = context.config
engine = make_engine(config.get_main_option("sqlalchemy.url") or "")
with engine.connect() as connection:
    # One transaction for the whole upgrade, SQLite included (its BEGIN IMMEDIATE, storage.db, then holds
    # the write lock throughout): replicas started together wait for one another instead of racing.
    context.configure(
        connection=connection, target_metadata=Base.metadata, render_as_batch=True, transactional_ddl=True
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # Replicas starting together on an empty database: one migrates, the others wait and then
            # find it done.
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
        context.run_migrations()
engine.dispose()
