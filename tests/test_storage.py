"""The migrations and the models describe the same schema."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from storage.db import make_engine, upgrade
from storage.models import Base


def test_the_migrations_create_exactly_the_models_schema(database_url):
    upgrade(database_url)
    engine = make_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert diff == []


def _schema(url: str) -> dict[str, Any]:
    """What the database at `url` holds: its alembic version, tables, columns, keys and indexes."""
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            version = MigrationContext.configure(conn).get_current_heads()
            db = inspect(conn)
            tables = {}
            for table in sorted(db.get_table_names()):
                tables[table] = {
                    "columns": [
                        (c["name"], str(c["type"]), c["nullable"], str(c.get("default"))) for c in db.get_columns(table)
                    ],
                    "primary_key": db.get_pk_constraint(table)["constrained_columns"],
                    "foreign_keys": sorted(
                        (tuple(fk["constrained_columns"]), fk["referred_table"], tuple(fk["referred_columns"]))
                        for fk in db.get_foreign_keys(table)
                    ),
                    "indexes": sorted(
                        (ix["name"], tuple(ix["column_names"]), bool(ix["unique"])) for ix in db.get_indexes(table)
                    ),
                    "unique": sorted(
                        (uc["name"] or "", tuple(uc["column_names"])) for uc in db.get_unique_constraints(table)
                    ),
                }
    finally:
        engine.dispose()
    return {"version": version, "tables": tables}


def test_upgrading_twice_changes_nothing(database_url):
    upgrade(database_url)
    first = _schema(database_url)
    assert first["version"], "the first upgrade recorded no alembic version"
    assert "alembic_version" in first["tables"]
    assert len(first["tables"]) > 1, "the first upgrade created no tables"

    upgrade(database_url)
    assert _schema(database_url) == first
