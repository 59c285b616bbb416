"""Encrypts a new password while it waits to be delivered (key from MAILFIX_SECRET_KEY)."""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken

from bot.core.mailserver import Password
from bot.errors import SecretUnavailable

MIN_KEY_LENGTH = 16


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
