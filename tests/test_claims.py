"""The database claims that make one replica do what a person sees: Slack request keys, monitoring checks and
the telling of a flood alert, on SQLite and on PostgreSQL (the replica test races real processes on them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update

from bot.core.watch import Watcher
from storage.db import make_engine, upgrade
from storage.deliveries import Deliveries
from storage.models import SlackRequest
from storage.repository import Repository
from tests.conftest import OPERATOR, make_config
from tests.test_watch import RecordingAlerts


def fresh(database_url: str) -> Repository:
    upgrade(database_url)
    return Repository(make_engine(database_url))


def test_a_slack_request_key_is_first_once_and_old_keys_are_forgotten(database_url):
    repo = fresh(database_url)
    deliveries, other_replica = Deliveries(repo), Deliveries(Repository(make_engine(database_url)))
    assert deliveries.first(key="1234.5678.abcd") is True
    assert other_replica.first(key="1234.5678.abcd") is False
    assert deliveries.first(key="1234.5678.abcd") is False
    assert other_replica.first(key="Ev0123") is True
    with repo.engine.begin() as conn:  # the first key arrived two days ago
        conn.execute(
            update(SlackRequest)
            .where(SlackRequest.key == "1234.5678.abcd")
            .values(seen_at=datetime.now(UTC) - timedelta(days=2))
        )
    deliveries.forget(older_than=timedelta(days=1))
    with repo.engine.connect() as conn:
        assert conn.execute(select(SlackRequest.key)).scalars().all() == ["Ev0123"]
    assert deliveries.first(key="1234.5678.abcd") is True  # forgotten: known again from now on


def test_each_monitoring_check_is_claimed_by_one_scheduler_and_the_deadline_brings_the_next_forward(database_url):
    repo, other = fresh(database_url), Repository(make_engine(database_url))
    incident = repo.open_incident(server="mail1", opened_by=OPERATOR, state="monitoring", now=datetime.now(UTC))
    minute = timedelta(minutes=1)
    assert repo.claim_check(incident_id=incident.id, hold=minute) is True
    assert other.claim_check(incident_id=incident.id, hold=minute) is False  # not due for a minute
    repo.hasten_check(incident_id=incident.id, within=-timedelta(seconds=1))  # the deadline came first
    assert other.claim_check(incident_id=incident.id, hold=minute) is True
    assert repo.claim_check(incident_id=incident.id, hold=minute) is False
    repo.hasten_check(incident_id=incident.id, within=timedelta(hours=1))  # later than due: no change
    assert repo.claim_check(incident_id=incident.id, hold=minute) is False
    repo.set_fields(incident_id=incident.id, state="resolved")
    repo.hasten_check(incident_id=incident.id, within=-timedelta(seconds=1))
    assert repo.claim_check(incident_id=incident.id, hold=minute) is False  # only a monitored incident


def test_an_alert_is_told_by_one_watcher_and_told_at_the_next_poll_when_slack_failed(tmp_path, database_url, server):
    repo = fresh(database_url)
    config = make_config(tmp_path)
    told, other_told = RecordingAlerts(fail=1), RecordingAlerts()
    watcher = Watcher(config, repo, lambda name: server, told)
    other = Watcher(config, Repository(make_engine(database_url)), lambda name: server, other_told)
    assert watcher.poll_once() != []  # raised, but Slack failed: the claim is let go
    (alert,) = repo.open_alerts()
    assert alert.notified_at is None and alert.telling_until is None and told.raised == []
    assert repo.claim_telling(alert_id=alert.id, lease=timedelta(minutes=2)) is True  # a watcher is telling it
    other.poll_once()
    assert other_told.raised == []  # the other watcher leaves it to the one telling it
    # That watcher died while telling it: once its lease ran out, the next poll anywhere tells it.
    repo.update_alert(alert_id=alert.id, telling_until=datetime.now(UTC) - timedelta(seconds=5))
    other.poll_once()
    watcher.poll_once()
    assert [a.id for a in other_told.raised] == [alert.id] and told.raised == []
    (alert,) = repo.open_alerts()
    assert alert.notified_at is not None and alert.slack_ts is not None and alert.telling_until is None
