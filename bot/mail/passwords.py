"""New passwords set through a configured backend, sent on stdin only.

Backends (`password_backend` in mailfix.toml):
    chpasswd              system accounts: `chpasswd` reads `user:password` on stdin
    doveadm-passwd-file   a Dovecot passwd-file: `doveadm pw -s SHA512-CRYPT` hashes the password
                          read from stdin, then the user's line is rewritten atomically
    command               `password_command` run by `sh -c`, reading `user password` on stdin
A password never appears on a command line (where `ps` would show it), in a log or in an error.
"""

from __future__ import annotations

import logging

from bot.config import ServerConfig
from bot.core.mailserver import Account, Password, validate_account
from bot.errors import CommandFailed
from bot.i18n import _
from bot.mail.commands import command_failed
from bot.mail.executor import SSHExecutor

log = logging.getLogger(__name__)

DOVEADM = "/usr/bin/doveadm"
HASH_SCHEME = "SHA512-CRYPT"
SHELL_PATH = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EX_NOUSER = 67  # sysexits: doveadm's "user doesn't exist"


def set_password(executor: SSHExecutor, server: ServerConfig, account: Account, password: Password) -> None:
    """Set `account`'s password with the server's backend, then flush Dovecot's auth cache."""
    login = validate_account(account.login)
    backend = server.password_backend
    if backend == "chpasswd":
        _set_with_chpasswd(executor, login, password)
    elif backend == "doveadm-passwd-file":
        _set_in_passwd_file(executor, server.passwd_file, account, password)
    elif backend == "command":
        _set_with_command(executor, server.password_command, login, password)
    else:
        raise CommandFailed(executor.host, _("unknown password backend {backend}").format(backend=repr(backend)))
    log.info("%s: password of %s changed with %s", executor.host, login, backend)
    flush_auth_cache(executor)


def flush_auth_cache(executor: SSHExecutor) -> None:
    """Make Dovecot forget cached credentials; a server without Dovecot is fine."""
    result = executor.run([DOVEADM, "auth", "cache", "flush"], check=False)
    if not result.ok:
        log.info("%s: doveadm auth cache flush exited %d (ignored)", executor.host, result.exit_status)


def _set_with_chpasswd(executor: SSHExecutor, login: str, password: Password) -> None:
    if not executor.run(["getent", "passwd", login], check=False).ok:
        raise CommandFailed(executor.host, _("no system account {login}").format(login=repr(login)))
    # chpasswd's error text may quote the input line; never let it reach a message.
    result = executor.run(["chpasswd"], stdin=f"{login}:{password.reveal()}\n".encode(), check=False)
    if not result.ok:
        reason = _("chpasswd failed for {login} (exit {status})").format(login=repr(login), status=result.exit_status)
        raise CommandFailed(executor.host, reason)


def _set_with_command(executor: SSHExecutor, command: str, login: str, password: Password) -> None:
    if not command:
        raise CommandFailed(executor.host, _("password_backend 'command' needs password_command"))
    result = executor.run(
        ["env", SHELL_PATH, "sh", "-c", command], stdin=f"{login} {password.reveal()}\n".encode(), check=False
    )
    if not result.ok:
        reason = _("password_command failed for {login} (exit {status})").format(
            login=repr(login), status=result.exit_status
        )
        raise CommandFailed(executor.host, reason)


def hash_password(executor: SSHExecutor, password: Password) -> str:
    """Return the Dovecot `{SHA512-CRYPT}` hash of `password`, computed on the server from stdin."""
    # Without -p, doveadm pw reads the password and its confirmation from stdin.
    secret = password.reveal()
    result = executor.run([DOVEADM, "pw", "-s", HASH_SCHEME], stdin=f"{secret}\n{secret}\n".encode(), check=False)
    hashed = result.text.strip()
    if not result.ok or not hashed.startswith(f"{{{HASH_SCHEME}}}") or secret in hashed:
        reason = _("doveadm pw could not hash the password (exit {status})").format(status=result.exit_status)
        raise CommandFailed(executor.host, reason)
    return hashed


def replace_hash(passwd_file: str, user_keys: frozenset[str], hashed: str) -> tuple[str, int]:
    """Return `passwd_file` with the password field of the users in `user_keys` replaced, and how many."""
    lines = passwd_file.splitlines(keepends=True)
    changed = 0
    for i, line in enumerate(lines):
        fields = line.rstrip("\r\n").split(":")
        if line.lstrip().startswith("#") or len(fields) < 2 or fields[0].lower() not in user_keys:
            continue
        ending = line[len(line.rstrip("\r\n")) :]
        lines[i] = ":".join([fields[0], hashed, *fields[2:]]) + ending
        changed += 1
    return "".join(lines), changed


def _set_in_passwd_file(executor: SSHExecutor, path: str, account: Account, password: Password) -> None:
    current = executor.run(["cat", "--", path], check=False)
    if not current.ok:
        raise command_failed(executor.host, current)
    keys = frozenset({account.login.lower(), account.address.lower()})
    hashed = hash_password(executor, password)
    updated, changed = replace_hash(current.text, keys, hashed)
    if not changed:
        raise CommandFailed(
            executor.host, _("no entry for {login} in {path}").format(login=repr(account.login), path=path)
        )
    executor.replace_file(path, updated.encode(), new_file_mode="0640")
