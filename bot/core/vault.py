"""New passwords: generated with `secrets`, and encrypted while they wait to be delivered (MAILFIX_SECRET_KEY)."""

from __future__ import annotations

import secrets
import string

from cryptography.fernet import Fernet, InvalidToken

from bot.core.mailserver import Password
from bot.errors import SecretUnavailable
from bot.i18n import _

PASSWORD_LENGTH = 24
# No look-alikes (0/O, 1/l/I), no whitespace or ':' (chpasswd's separator), nothing a shell quotes.
ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI") + "-_.+=%"


def generate_password(length: int = PASSWORD_LENGTH) -> Password:
    """Return a new random password of `length` characters with at least one letter, digit and symbol."""
    if length < 20:
        raise ValueError("a password needs at least 20 characters")
    while True:
        value = "".join(secrets.choice(ALPHABET) for _unused in range(length))
        if any(c.isdigit() for c in value) and any(c.isalpha() for c in value) and any(not c.isalnum() for c in value):
            return Password(value)


MAKE_KEY = "python3 -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"


class Vault:
    """Fernet with the key in MAILFIX_SECRET_KEY: a real key, not a passphrase a guess could find offline."""

    def __init__(self, secret_key: str) -> None:
        self._fernet: Fernet | None = None
        self.problem: str | None = None  # why no password can be kept, in one line
        if not secret_key:
            self.problem = _("MAILFIX_SECRET_KEY is not set: make one with {command}").format(command=MAKE_KEY)
            return
        try:
            self._fernet = Fernet(secret_key.encode())
        except ValueError:  # never quote the value: it is a secret, even when malformed
            self.problem = _(
                "MAILFIX_SECRET_KEY is not a Fernet key (32 random bytes, base64): make one with {command}"
            ).format(command=MAKE_KEY)

    @property
    def ready(self) -> bool:
        return self._fernet is not None

    def encrypt(self, password: Password) -> bytes:
        return self._require().encrypt(password.reveal().encode())

    def decrypt(self, token: bytes) -> Password:
        try:
            return Password(self._require().decrypt(token).decode())
        except InvalidToken:
            raise SecretUnavailable(_("the stored password cannot be decrypted: MAILFIX_SECRET_KEY changed")) from None

    def _require(self) -> Fernet:
        if self._fernet is None:
            raise SecretUnavailable(self.problem or _("MAILFIX_SECRET_KEY is missing"))
        return self._fernet

    def __repr__(self) -> str:
        return f"Vault(ready={self.ready})"
