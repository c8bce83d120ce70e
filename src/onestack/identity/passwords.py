"""Password and secret hashing with bcrypt (Keystone's default algorithm and cost)."""

from __future__ import annotations

import bcrypt

#: bcrypt only looks at the first 72 bytes; longer secrets are truncated like Keystone does.
_BCRYPT_MAX = 72


def _prep(secret: str) -> bytes:
    return secret.encode("utf-8")[:_BCRYPT_MAX]


def hash_password(secret: str, rounds: int = 12) -> str:
    """Hash ``secret`` with a fresh salt at cost ``rounds``."""
    return bcrypt.hashpw(_prep(secret), bcrypt.gensalt(rounds)).decode("ascii")


def check_password(secret: str, hashed: str | None) -> bool:
    """Constant-time check of ``secret`` against a bcrypt hash; ``None`` never matches."""
    if not hashed:
        # Spend the same effort as a real check so unknown users cannot be told apart.
        bcrypt.checkpw(b"x", _DUMMY_HASH)
        return False
    try:
        return bcrypt.checkpw(_prep(secret), hashed.encode("ascii"))
    except ValueError:
        return False


#: A cost-12 hash of a throwaway secret, for equal-effort checks of unknown users (a
#: constant: hashing it at import would add half a second to every start).
_DUMMY_HASH = b"$2b$12$bFNGXO2vI96cAZaR2SFeQ.jwVA76qKzLpbPproiYzDqD8ehq6h1sa"
