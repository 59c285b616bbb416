"""New passwords: generated with `secrets`, and encrypted while they wait to be delivered (MAILFIX_SECRET_KEY)."""

from __future__ import annotations

import base64
import hashlib
import secrets
import string

from cryptography.fernet import Fernet, InvalidToken

from bot.core.mailserver import Password
from bot.errors import SecretUnavailable

MIN_KEY_LENGTH = 16
PASSWORD_LENGTH = 24
# No look-alikes (0/O, 1/l/I), no whitespace or ':' (chpasswd's separator), nothing a shell quotes.
ALPHABET = "".join(c for c in string.ascii_letters + string.digits if c not in "0O1lI") + "-_.+=%"


def generate_password(length: int = PASSWORD_LENGTH) -> Password:
    """Return a new random password of `length` characters with at least one letter, digit and symbol."""
    if length < 20:
        raise ValueError("a password needs at least 20 characters")
    while True:
        value = "".join(secrets.choice(ALPHABET) for _ in range(length))
        if any(c.isdigit() for c in value) and any(c.isalpha() for c in value) and any(not c.isalnum() for c in value):
            return Password(value)


class Vault:
    """Fernet with a key derived from MAILFIX_SECRET_KEY (any long random string)."""

    def __init__(self, secret_key: str) -> None:
        self._fernet: Fernet | None = None
        if len(secret_key) >= MIN_KEY_LENGTH:
            digest = hashlib.sha256(secret_key.encode()).digest()
            self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    @property
    def ready(self) -> bool:
        return self._fernet is not None

    def encrypt(self, password: Password) -> bytes:
        return self._require().encrypt(password.reveal().encode())

    def decrypt(self, token: bytes) -> Password:
        try:
            return Password(self._require().decrypt(token).decode())
        except InvalidToken:
            raise SecretUnavailable("the stored password cannot be decrypted: MAILFIX_SECRET_KEY changed") from None

    def _require(self) -> Fernet:
        if self._fernet is None:
            raise SecretUnavailable(
                f"MAILFIX_SECRET_KEY must be set (at least {MIN_KEY_LENGTH} characters) "
                "to change a password: try `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return self._fernet

    def __repr__(self) -> str:
        return f"Vault(ready={self.ready})"
