"""Unit tests for password generation and the backends (through a recording fake executor)."""

from __future__ import annotations

import string
from dataclasses import dataclass, field

import pytest

from bot.config import ServerConfig
from bot.core.mailserver import Account, Password
from bot.core.vault import generate_password
from bot.errors import CommandFailed
from bot.mail.commands import CommandResult
from bot.mail.passwords import replace_hash, set_password


@dataclass
class RecordingExecutor:
    """Plays a server: answers commands from a table and records argv and stdin of each."""

    answers: dict[str, tuple[int, bytes]] = field(default_factory=dict)
    calls: list[tuple[tuple[str, ...], bytes]] = field(default_factory=list)
    host: str = "fake"
    files: dict[str, bytes] = field(default_factory=dict)

    def run(self, argv, *, stdin=None, timeout=None, check=True):
        data = stdin if isinstance(stdin, bytes) else b"".join(stdin or [])
        self.calls.append((tuple(argv), data))
        status, out = self.answers.get(argv[0].rsplit("/", 1)[-1], (0, b""))
        if argv[0] == "cat" and argv[-1] in self.files:
            status, out = 0, self.files[argv[-1]]
        return CommandResult(tuple(argv), status, out, "", 0.0)

    def replace_file(self, path, content, *, new_file_mode="0644"):
        self.files[path] = content


def server(backend: str = "chpasswd", **extra: object) -> ServerConfig:
    return ServerConfig(
        name="t",
        host="fake",
        user="root",
        key_file="k",
        known_hosts="kh",  # type: ignore[arg-type]
        mail_domain="lab.test",
        password_backend=backend,
        **extra,
    )  # type: ignore[arg-type]


ACCOUNT = Account(address="victim@lab.test", login="victim")
SECRET = "Zq3-very-secret-Passw0rd"


def test_generated_passwords_are_long_random_and_safe_for_chpasswd() -> None:
    """At least 20 characters, no whitespace or ':', and never twice the same."""
    values = {generate_password().reveal() for _ in range(200)}
    assert len(values) == 200
    for value in values:
        assert len(value) >= 20
        assert not any(c.isspace() or c == ":" for c in value)
        assert any(c in string.digits for c in value) and any(c.isalpha() for c in value)


def test_a_password_never_shows_in_repr_or_str() -> None:
    """repr and str hide the value."""
    password = generate_password()
    assert password.reveal() not in repr(password) and password.reveal() not in str(password)
    assert password.reveal() not in repr([password])


def test_too_short_lengths_are_refused() -> None:
    """Fewer than 20 characters is not a password mailfix hands out."""
    with pytest.raises(ValueError):
        generate_password(12)


def test_chpasswd_gets_the_password_on_stdin_only() -> None:
    """chpasswd reads user:password on stdin; no command line carries the password."""
    fake = RecordingExecutor()
    set_password(fake, server(), ACCOUNT, Password(SECRET))  # type: ignore[arg-type]
    assert all(SECRET not in " ".join(argv) for argv, _ in fake.calls)
    assert (("chpasswd",), f"victim:{SECRET}\n".encode()) in fake.calls
    assert fake.calls[-1][0][-3:] == ("auth", "cache", "flush")


def test_chpasswd_for_an_unknown_account_is_a_clear_error() -> None:
    """A missing system account is named in the error, and chpasswd is never run."""
    fake = RecordingExecutor(answers={"getent": (2, b"")})
    with pytest.raises(CommandFailed, match="no system account 'victim'"):
        set_password(fake, server(), ACCOUNT, Password(SECRET))  # type: ignore[arg-type]
    assert not any(argv == ("chpasswd",) for argv, _ in fake.calls)


def test_a_failing_backend_does_not_put_the_password_in_the_error() -> None:
    """The error names the account and the exit status, not the password."""
    fake = RecordingExecutor(answers={"chpasswd": (1, b"")})
    with pytest.raises(CommandFailed) as caught:
        set_password(fake, server(), ACCOUNT, Password(SECRET))  # type: ignore[arg-type]
    assert SECRET not in str(caught.value)


def test_command_backend_reads_user_and_password_on_stdin() -> None:
    """The configured command runs through sh -c and reads `user password` on stdin."""
    fake = RecordingExecutor()
    config = server("command", password_command="/usr/local/bin/setpw")
    set_password(fake, config, ACCOUNT, Password(SECRET))  # type: ignore[arg-type]
    argv, stdin = fake.calls[0]
    assert argv[-3:] == ("sh", "-c", "/usr/local/bin/setpw") and stdin == f"victim {SECRET}\n".encode()


def test_passwd_file_backend_rewrites_only_the_users_line() -> None:
    """doveadm pw hashes from stdin; only victim's hash changes, other fields stay."""
    hashed = b"{SHA512-CRYPT}$6$salt$newhash"
    fake = RecordingExecutor(answers={"doveadm": (0, hashed + b"\n")})
    fake.files["/etc/dovecot/users"] = (
        b"victim:{PLAIN}old:1001:1001::/home/victim::\njuana:{PLAIN}x:1002:1002::/home/juana::\n"
    )
    set_password(fake, server("doveadm-passwd-file"), ACCOUNT, Password(SECRET))  # type: ignore[arg-type]
    assert fake.files["/etc/dovecot/users"] == (
        b"victim:" + hashed + b":1001:1001::/home/victim::\njuana:{PLAIN}x:1002:1002::/home/juana::\n"
    )
    pw_call = next((argv, stdin) for argv, stdin in fake.calls if argv[1:2] == ("pw",))
    assert SECRET not in " ".join(pw_call[0]) and pw_call[1] == f"{SECRET}\n{SECRET}\n".encode()


def test_passwd_file_without_the_user_is_an_error() -> None:
    """An account missing from the passwd-file is reported, and the file is not rewritten."""
    fake = RecordingExecutor(answers={"doveadm": (0, b"{SHA512-CRYPT}$6$s$h\n")})
    fake.files["/etc/dovecot/users"] = b"juana:{PLAIN}x::::\n"
    with pytest.raises(CommandFailed, match="no entry for 'victim'"):
        set_password(fake, server("doveadm-passwd-file"), ACCOUNT, Password(SECRET))  # type: ignore[arg-type]
    assert fake.files["/etc/dovecot/users"] == b"juana:{PLAIN}x::::\n"


def test_replace_hash_matches_whole_user_names_only() -> None:
    """juan's line changes; juana's does not; comments are kept."""
    text = "# users\njuana:{PLAIN}a:1::\njuan:{PLAIN}b:2::\n"
    updated, changed = replace_hash(text, frozenset({"juan"}), "{X}new")
    assert changed == 1
    assert updated == "# users\njuana:{PLAIN}a:1::\njuan:{X}new:2::\n"
