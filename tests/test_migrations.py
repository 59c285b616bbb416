"""Migration 0004 carries open incidents over: the cleanup state's new name, and the one diagnosis form."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import text

from bot.core import diagnosis as diagnosis_codec
from bot.core.table import State
from storage.db import MIGRATIONS, make_engine, upgrade
from storage.repository import Repository

OLD_DIAGNOSIS = {
    "snapshot": {
        "total": 420,
        "by_queue": {"active": 20, "deferred": 400},
        "top_senders": [{"name": "victim@example.org", "count": 250}],
        "top_recipients": [{"name": "x@example.net", "count": 3}],
        "top_sasl_logins": [{"name": "victim", "count": 300}],
        "oldest_age_seconds": 60,
        "total_bytes": 1000,
        "malformed_lines": 0,
    },
    "suspect": {
        "account": {"address": "victim@example.org", "login": "victim"},
        "queued_from": 250,
        "queued_to": 10,
        "queued_by_login": 300,
        "sample_subjects": ["Cheap pills"],
    },
    "runner_up": None,
    "warnings": [],
}


def test_an_incident_cleaning_up_under_the_old_schema_reads_back_typed_after_the_upgrade(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    config = AlembicConfig()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url)
    config.attributes["configure_logger"] = False
    command.upgrade(config, "0003")
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(
            text(
                "INSERT INTO incidents (id, server, state, version, phase, opened_by, opened_at, diagnosis,"
                " rejected_accounts, monitor_round) VALUES (1, 'mail1', 'containing', 1, 3, 'U1', :at, :d, '[]', 0)"
            ),
            {"at": datetime(2026, 11, 30, tzinfo=UTC).isoformat(), "d": json.dumps(OLD_DIAGNOSIS)},
        )
    upgrade(url)
    incident = Repository(engine).get(incident_id=1)
    assert incident is not None and incident.state == State.CLEANING_UP
    diagnosis = diagnosis_codec.of(incident)
    assert diagnosis is not None and diagnosis.snapshot.total == 420
    assert diagnosis.suspect is not None and diagnosis.suspect.account.login == "victim"
    assert (diagnosis.suspect.queued_from, diagnosis.suspect.queued_by_login) == (250, 300)


def test_replicas_starting_together_on_an_empty_database_all_end_up_on_the_newest_schema(database_url, tmp_path):
    """Several processes upgrade at once (replicas started together): none fails, the schema is made once."""
    import subprocess
    import sys
    import time

    go = tmp_path / "go"
    code = (
        "import pathlib, time\n"
        "from storage.db import upgrade\n"  # imported before the start line: they then start together
        f"while not pathlib.Path({str(go)!r}).exists(): time.sleep(0.005)\n"
        f"upgrade({database_url!r})\n"
    )
    racers = [subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True) for _ in range(4)]
    time.sleep(3)  # every racer has imported and waits at the line
    go.touch()
    errors = [p.communicate(timeout=120)[1] for p in racers]
    assert [p.returncode for p in racers] == [0, 0, 0, 0], errors
    engine = make_engine(database_url)
    with engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    engine.dispose()
    head = AlembicConfig()
    head.set_main_option("script_location", str(MIGRATIONS))
    from alembic.script import ScriptDirectory

    assert versions == [ScriptDirectory.from_config(head).get_current_head()]
