"""Hostile input is refused before anything happens: account names before a server, odd incident numbers."""

from __future__ import annotations

import shlex

import pytest

from bot.config import ServerConfig
from bot.core.mailserver import Account, Selection, validate_account
from bot.core.requests import BadRequest, parse_id
from bot.errors import InvalidAccount
from bot.mail.executor import SSHExecutor
from bot.mail.postfix import PostfixServer
from bot.mail.postsuper import postsuper_count
from bot.mail.subjects import decode_subject
from tests.clitools import fake_env, spawn

HOSTILE = [
    "bob; reboot",
    "$(id)",
    "`id`",
    "bob|cat /etc/shadow",
    "bob&&true",
    "a b",
    "bob\nreboot",
    "-rf",
    "../etc/passwd",
    "bob'",
    'bob"',
    "bob@lab.test;id",
    "",
    "bob@",
    "@lab.test",
    "bob>x",
    "*",
    "bob\\",
]


class RefusingExecutor(SSHExecutor):
    """An executor that fails the test if anything is ever sent."""

    def start(self, argv, **kwargs):  # type: ignore[override]
        raise AssertionError(f"sent {argv!r} to the server")

    def run(self, argv, **kwargs):  # type: ignore[override]
        raise AssertionError(f"sent {argv!r} to the server")


def server(user: str = "root") -> ServerConfig:
    return ServerConfig(
        name="t",
        host="h",
        user=user,
        key_file="k",
        known_hosts="kh",  # type: ignore[arg-type]
        mail_domain="lab.test",
    )


class Hostile:
    """An Account-like object carrying a name that never went through Account's validation."""

    def __init__(self, name: str) -> None:
        self.login = name
        self.address = name


@pytest.mark.parametrize("name", HOSTILE)
def test_hostile_names_are_invalid_accounts(name: str) -> None:
    """Shell metacharacters, spaces, newlines and empty parts are refused."""
    with pytest.raises(InvalidAccount):
        validate_account(name)
    with pytest.raises(InvalidAccount):
        Account(address=name, login="bob")
    with pytest.raises((InvalidAccount, ValueError)):  # "" is an empty selection
        Selection(sender=name)


@pytest.mark.parametrize("name", ["bob; reboot", "$(id)", "juan`id`"])
@pytest.mark.parametrize(
    "operation",
    ["block_login", "unblock_login", "is_login_blocked", "kick_sessions", "purge_inbox", "inbox_count"],
)
def test_operations_refuse_hostile_names_before_sending_anything(name: str, operation: str) -> None:
    """Every account operation validates the name before the executor is touched."""
    mail = PostfixServer(server(), executor=RefusingExecutor(server()))
    with pytest.raises(InvalidAccount):
        getattr(mail, operation)(Hostile(name))


def test_change_password_refuses_hostile_names_before_sending_anything() -> None:
    """The password backend is never reached with a hostile login."""
    from bot.core.vault import generate_password

    mail = PostfixServer(server(), executor=RefusingExecutor(server()))
    with pytest.raises(InvalidAccount):
        mail.change_password(Hostile("bob; reboot"), generate_password())  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["juan", "juana@lab.test", "j.doe+tag@mail.lab.test", "Bob_1"])
def test_plain_names_are_accepted_lower_cased(name: str) -> None:
    """Plain logins and addresses pass, lower-cased."""
    assert validate_account(name) == name.lower()


def test_every_argument_is_quoted_and_sudo_prefixed_for_non_root() -> None:
    """The command line quotes each argument and adds `sudo -n` unless the user is root."""
    argv = ["/usr/sbin/postcat", "-hq", "x; reboot"]
    assert SSHExecutor(server()).command_line(argv) == "/usr/sbin/postcat -hq 'x; reboot'"
    line = SSHExecutor(server("mailfixop")).command_line(argv)
    assert shlex.split(line) == ["sudo", "-n", "--", *argv]


def test_postsuper_summary_is_parsed() -> None:
    """The last summary line gives the count; no summary means nothing was done."""
    tail = "postsuper: 4ABC: removed\npostsuper: Deleted: 1234 messages\n"
    assert postsuper_count(tail) == 1234
    assert postsuper_count("postsuper: Placed on hold: 1 message\n") == 1
    assert postsuper_count("postsuper: Released from hold: 7 messages") == 7
    assert postsuper_count("") == 0


def test_subjects_are_decoded_and_unfolded() -> None:
    """RFC 2047 words are decoded; folded lines are joined."""
    assert decode_subject("=?utf-8?q?Gan=C3=B3_un_premio?=") == "Ganó un premio"
    assert decode_subject("Final\n notice") == "Final notice"


def test_a_subject_cannot_carry_terminal_escapes_or_bidi_overrides() -> None:
    raw = "=?utf-8?q?Pago_=1B[2J=1B]0;pwned=07_pendiente_=E2=80=AEexe.txt?="
    assert decode_subject(raw) == "Pago [2J]0;pwned pendiente exe.txt"


@pytest.mark.parametrize("text", ["²", "١٢", "1" * 10, "1" * 30, "", "#", "-1", "+1", "0x1f", "1e3", "1 2", "12a"])
def test_odd_incident_numbers_are_refused(text: str) -> None:
    """Only ASCII digits, at most nine of them: no unicode digits, signs, exponents or huge numbers."""
    with pytest.raises(BadRequest, match="is not an incident number, like 12"):
        parse_id(text)


@pytest.mark.parametrize(("text", "number"), [("12", 12), ("#12", 12), (" 7 ", 7), ("9" * 9, 999_999_999)])
def test_plain_incident_numbers_are_read(text: str, number: int) -> None:
    assert parse_id(text) == number


def shown(value: str) -> str:
    return value if len(value) <= 20 else value[:20] + "…"


@pytest.mark.parametrize(
    "argv",
    [
        ["status", "²"],
        ["report", "123456789012345678901234567890"],
        ["retry", "١٢"],
        ["approve", "0x1f", "--account", "victim@example.org"],
        ["reject", "1e3", "--account", "victim@example.org"],
    ],
)
def test_the_mailfix_command_refuses_an_odd_incident_number_in_one_line(tmp_path, argv: list[str]) -> None:
    """The real command: a usage error naming the argument, no traceback, and nothing opened or changed."""
    env = fake_env(tmp_path)
    process = spawn(env, "boss", *argv)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 2 and out == ""
    assert (
        err.splitlines()[-1]
        == f"mailfix {argv[0]}: error: argument id: {shown(argv[1])!r} is not an incident number, like 12"
    )
    assert "Traceback" not in err
    assert not (tmp_path / "mailfix.db").exists()  # refused before the database was even opened
