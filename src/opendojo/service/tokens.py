"""Bearer tokens: ``dojo_<key id>_<secret>``, stored as a salted SHA-256 and compared in constant time.

The key id names the row to check, so verifying costs one lookup and one hash. The secret carries 256
random bits, so a fast hash is enough: a slow password KDF protects guessable passwords, and would only
add its delay to every API call here.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

PREFIX = "dojo_"


def new_token() -> tuple[str, str]:
    """A fresh ``(key_id, token)``; the token is shown once and never stored."""
    key_id = secrets.token_hex(6)
    return key_id, f"{PREFIX}{key_id}_{secrets.token_urlsafe(32)}"


def key_id_of(token: str) -> str | None:
    """The key id a token claims, or None if it is not shaped like one of ours."""
    if not token.startswith(PREFIX):
        return None
    key_id, sep, secret = token[len(PREFIX):].partition("_")
    return key_id if sep and key_id and secret else None


def hash_token(token: str, salt: str | None = None) -> tuple[str, str]:
    """``(salt, hex digest)`` of ``token``; a new random salt unless one is given."""
    salt = salt if salt is not None else secrets.token_hex(16)
    return salt, hashlib.sha256(bytes.fromhex(salt) + token.encode()).hexdigest()


def token_matches(token: str, salt: str, digest: str) -> bool:
    """Whether ``token`` hashes to ``digest`` under ``salt``, in time independent of where they differ."""
    return hmac.compare_digest(hash_token(token, salt)[1], digest)


def admin_token(data_dir: Path) -> str:
    """The admin token of a data folder: read from ``admin.token``, or created there with mode 0600."""
    path = data_dir / "admin.token"
    if path.exists():
        return path.read_text().strip()
    _, token = new_token()
    # O_EXCL + mode at creation: the file is never readable by others, not even for a moment.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
