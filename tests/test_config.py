"""mailfix.toml validation: every problem reported at once, naming the file and the key."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from bot.config import load_config
from bot.errors import ConfigError, UnknownServer
from bot.terminal import cli
from tests.clitools import write_config

ROOT = Path(__file__).resolve().parents[1]


def test_the_shipped_example_is_valid(tmp_path):
    (tmp_path / "keys").mkdir()
    for name in ("mailfix_ed25519", "known_hosts"):
        (tmp_path / "keys" / name).write_text("")
    path = tmp_path / "mailfix.toml"
    path.write_text((ROOT / "mailfix.example.toml").read_text())
    config = load_config(path)
    assert config.server(None).name == "mail1"
    assert config.hold_before_approval is True and config.allow_self_approval is False


def test_every_problem_is_reported_at_once(tmp_path):
    path = write_config(tmp_path)
    text = path.read_text()
    text = text.replace('directors = ["UDIRECTOR1", "UDIRECTOR2"]', 'directors = ["bob", "UDIRECTOR2"]')
    text = text.replace("flood_threshold = 100", "flood_threshold = 0\ncolour = 'blue'")
    text = text.replace('key_file = "key"', 'key_file = "missing_key"')
    text += (
        '\n[[servers]]\nname = "mail1"\nhost = "h"\nuser = "root"\nkey_file = "key"\n'
        'known_hosts = "known_hosts"\nmail_domain = "example.org"\n'
    )
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    problems = "\n".join(err.value.problems)
    assert f"{path}: colour: unknown key" in problems
    assert f"{path}: directors[0]: malformed Slack user ID 'bob'" in problems
    assert f"{path}: flood_threshold: must be a positive number, got 0" in problems
    assert "servers[0] (mail1).key_file: file not found" in problems
    assert "servers[1] (mail1).name: duplicate server name 'mail1'" in problems
    assert len(err.value.problems) == 5


def test_check_config_prints_the_problems_and_fails(tmp_path, monkeypatch, capsys):
    path = write_config(tmp_path)
    path.write_text(path.read_text().replace('host = "127.0.0.1"\n', ""))
    monkeypatch.setenv("MAILFIX_CONFIG", str(path))
    assert cli.main(["check-config"], out=io.StringIO()) == 1
    assert "servers[0] (mail1).host: missing" in capsys.readouterr().err


def test_an_unknown_server_names_the_configured_ones(tmp_path):
    config = load_config(write_config(tmp_path))
    with pytest.raises(UnknownServer, match="unknown server 'mail9'; configured: mail1"):
        config.server("mail9")


def test_missing_file_and_bad_toml_are_clear(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml")
    (tmp_path / "bad.toml").write_text("channel = ")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(tmp_path / "bad.toml")


def test_public_ip_and_dns_servers_must_be_addresses(tmp_path):
    path = write_config(tmp_path)
    text = path.read_text().replace("flood_threshold = 100", 'flood_threshold = 100\ndns_servers = ["resolver.local"]')
    path.write_text(text + 'public_ip = "203.0.113.300"\n')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.problems == [
        f"{path}: dns_servers: expected IP addresses ('host' or 'host:port'), got 'resolver.local'",
        f"{path}: servers[0] (mail1).public_ip: must be an IPv4 address, got '203.0.113.300'",
    ]


def test_protected_accounts_readers_and_the_archive_switch_are_checked(tmp_path):
    path = write_config(tmp_path)
    path.write_text(
        path.read_text()
        .replace('operators = ["UOPERATOR1"]', 'operators = ["UOPERATOR1"]\nreaders = ["not an id"]')
        .replace(
            'mail_domain = "example.org"',
            'mail_domain = "example.org"\narchive_before_purge = "no"\nprotected_accounts = ["root", "ro ot"]',
        )
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    text = "\n".join(err.value.problems)
    assert "readers[0]: malformed Slack user ID" in text
    assert "archive_before_purge: must be true or false, got 'no'" in text
    assert "protected_accounts: expected a list of account names" in text
    config = load_config(write_config(tmp_path))
    server = config.server(None)
    assert server.archive_before_purge is True and "postmaster" in server.protected_accounts and not config.readers


@pytest.mark.parametrize(
    ("written", "loaded"), [(None, "auto"), ('"never"', "never"), ("true", "always"), ("false", "never")]
)
def test_compression_is_auto_by_default_and_takes_the_old_booleans(tmp_path, written, loaded):
    path = write_config(tmp_path)
    if written is not None:
        path.write_text(path.read_text() + f"compression = {written}\n")
    assert load_config(path).server(None).compression == loaded


def test_an_unknown_compression_setting_is_refused(tmp_path):
    path = write_config(tmp_path)
    path.write_text(path.read_text() + 'compression = "fast"\n')
    with pytest.raises(
        ConfigError, match=r"compression: must be one of auto, always, never \(or true/false\), got 'fast'"
    ):
        load_config(path)
