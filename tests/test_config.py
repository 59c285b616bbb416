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
    assert f"{path}: flood_threshold: must be at least 1, got 0" in problems
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
    assert sorted(err.value.problems) == [
        f"{path}: dns_servers[0]: expected an IP address ('host' or 'host:port'), got 'resolver.local'",
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
    assert "protected_accounts[1]: expected an account name (user or user@domain), got 'ro ot'" in text
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


# Each bad value, its key and what check-config says (each change is made alone, then all at once).
TOP_LEVEL = [
    ("password_message_minutes = nan", "password_message_minutes: must be a finite number, got nan"),
    ("approval_timeout_minutes = inf", "approval_timeout_minutes: must be a finite number, got inf"),
    ("dns_timeout_seconds = 1e9", "dns_timeout_seconds: must be at most 60, got 1000000000.0"),
    ("watch_interval_seconds = '30'", "watch_interval_seconds: must be a number, got '30'"),
    ("hold_before_approval = 'no'", "hold_before_approval: must be true or false, got 'no'"),
    ("allow_self_approval = 1", "allow_self_approval: must be true or false, got 1"),
    ("dnsbl_zones = ['zen..spamhaus.org']", "dnsbl_zones[0]: expected a domain name like example.org, got"),
    ("dns_servers = [true]", "dns_servers[0]: must be a string, got true"),
    ("readers = 'UREADER1'", "readers: must be a list, got 'UREADER1'"),
    ("path = '/etc/passwd'", "path: unknown key"),
]
SERVER = [
    ('key_file = "key"', "key_file = 42", "key_file: must be a file name (a non-empty string), got 42"),
    ('mail_domain = "example.org"', 'mail_domain = "example..org"', "mail_domain: expected a domain name like"),
    ('host = "127.0.0.1"', 'host = "mail1; reboot"', "host: expected a host name or an IP address, got"),
    ("", 'restart_command = ["postfix", "reload"]', "restart_command: must be a string, got ['postfix', 'reload']"),
    ("", 'reboot_command = ""', "reboot_command: must not be empty, got ''"),
    ("", 'archive_before_purge = "no"', "archive_before_purge: must be true or false, got 'no'"),
    ("", "port = 70000", "port: must be at most 65535, got 70000"),
    ("", "connect_timeout_seconds = nan", "connect_timeout_seconds: must be a finite number, got nan"),
    ("", "command_timeout_seconds = 0", "command_timeout_seconds: must be greater than 0, got 0"),
    ("", "reboot_deadline_seconds = 9.5", "reboot_deadline_seconds: must be a whole number, got 9.5"),
    ("", 'postfix_log = "mail.log"', "postfix_log: must be an absolute path on the server, got 'mail.log'"),
    ("", "archive_dir = 5", "archive_dir: must be a string, got 5"),
    ("", 'password_backend = "command"', "password_command: required when password_backend = 'command'"),
]


def _with_server_change(text: str, old: str, new: str) -> str:
    return text.replace(old, new) if old else text + new + "\n"


@pytest.mark.parametrize(("line", "said"), TOP_LEVEL)
def test_a_bad_top_level_value_is_named_with_its_key(tmp_path, line, said):
    path = write_config(tmp_path, extra=line)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith(f"{path}: {said}")


@pytest.mark.parametrize(("old", "new", "said"), SERVER)
def test_a_bad_server_value_is_named_with_its_key(tmp_path, old, new, said):
    path = write_config(tmp_path)
    path.write_text(_with_server_change(path.read_text(), old, new))
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert len(err.value.problems) == 1
    assert err.value.problems[0].startswith(f"{path}: servers[0] (mail1).{said}")


def test_every_bad_value_of_the_issue_is_reported_at_once_one_line_each(tmp_path):
    path = write_config(tmp_path, extra="\n".join(line for line, _ in TOP_LEVEL))
    text = path.read_text()
    for old, new, _ in SERVER:
        text = _with_server_change(text, old, new)
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    problems = err.value.problems
    assert len(problems) == len(TOP_LEVEL) + len(SERVER)
    for _, said in TOP_LEVEL:
        assert sum(p.startswith(f"{path}: {said}") for p in problems) == 1, said
    for _, _, said in SERVER:
        assert sum(p.startswith(f"{path}: servers[0] (mail1).{said}") for p in problems) == 1, said


def test_values_are_loaded_typed_and_resolved(tmp_path):
    path = write_config(tmp_path, extra="watch_interval_seconds = 0\ndns_timeout_seconds = 1")
    path.write_text(path.read_text() + 'protected_accounts = ["Root", "Abuse@Example.org"]\nport = 2222\n')
    config = load_config(path)
    server = config.server(None)
    assert server.key_file == tmp_path / "key" and server.known_hosts == tmp_path / "known_hosts"
    assert server.protected_accounts == ("root", "abuse@example.org") and server.port == 2222
    assert config.directors == frozenset({"UDIRECTOR1", "UDIRECTOR2"}) and config.path == path
    assert config.dns_timeout_seconds == 1 and config.watch_interval_seconds == 0


def test_a_file_that_is_not_text_is_one_clear_line(tmp_path):
    (tmp_path / "mailfix.toml").write_bytes(b'channel = "\xff\xfe"\n')
    with pytest.raises(ConfigError) as err:
        load_config(tmp_path / "mailfix.toml")
    assert err.value.problems == [f"{tmp_path / 'mailfix.toml'}: not UTF-8 text"]


def test_the_language_is_a_shipped_one_and_the_process_speaks_it(tmp_path):
    from bot import i18n

    path = write_config(tmp_path, extra='language = "fr"')
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.problems == [f"{path}: language: must be one of en, es-MX, got 'fr'"]
    assert i18n.current() == "en"  # a refused config changes nothing
    config = load_config(write_config(tmp_path, extra='language = "es-MX"'))
    assert config.language == "es_MX" and i18n.current() == "es_MX"
    assert i18n._("options") == "opciones"
