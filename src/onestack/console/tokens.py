"""Console authorisation tokens (Nova's ``console_auth_tokens``).

The compute API creates a token when a user asks for a console URL
(``POST /servers/{id}/remote-consoles`` or the ``os-getVNCConsole`` action) and embeds it in
the URL; the console proxy looks it up when a browser (noVNC) opens the WebSocket.

* Tokens are random (256 bits, URL-safe); only their SHA-256 hash is stored.
* A token expires ``ttl`` seconds after it was made (Nova's ``[consoleauth] token_ttl``,
  default 600). Until then it may be used again (noVNC reconnects with the same URL), as in
  Nova; expired rows are deleted whenever a token is created.
* A token is only valid while its instance exists (not deleted); the compute manager drops
  an instance's tokens when it deletes the instance.
* The store is the database, so a proxy in another process or on another host (same
  database) accepts tokens any API process created.
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import delete, select

from onestack.common.timeutils import utcnow
from onestack.db.compute import Instance
from onestack.db.console import ConsoleAuthToken
from onestack.db.engine import Database

#: Longest token string the store looks up (anything longer cannot be one of ours).
MAX_TOKEN_LENGTH = 255
DEFAULT_TTL = 600


def hash_token(token: str) -> str:
    """The stored form of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class ConsoleConnection:
    """What a valid token grants: a console of one instance, reachable at ``host:port``."""

    instance_uuid: str
    console_type: str
    host: str
    port: int
    compute_host: str
    internal_access_path: str | None
    expires: int

    def as_dict(self) -> dict[str, object]:
        return {"instance_uuid": self.instance_uuid, "console_type": self.console_type,
                "host": self.host, "port": self.port, "compute_host": self.compute_host,
                "internal_access_path": self.internal_access_path, "expires": self.expires}


def _conn(row: ConsoleAuthToken) -> ConsoleConnection:
    return ConsoleConnection(row.instance_uuid, row.console_type, row.host, row.port,
                             row.compute_host, row.internal_access_path, row.expires)


class ConsoleTokenStore:
    """Creates and checks console tokens (blocking: call it from a thread in async code)."""

    def __init__(self, db: Database, ttl: int = DEFAULT_TTL,
                 clock: Callable[[], float] = time.time) -> None:
        if ttl <= 0:
            raise ValueError("console token ttl must be positive")
        self.db = db
        self.ttl = ttl
        self.clock = clock

    def create(self, instance_uuid: str, console_type: str, host: str, port: int,
               compute_host: str = "",
               internal_access_path: str | None = None) -> tuple[str, ConsoleConnection]:
        """A new token for the console at ``host:port``; returns ``(token, connection)``."""
        token = secrets.token_urlsafe(32)
        now = int(self.clock())
        row = ConsoleAuthToken(token_hash=hash_token(token), console_type=console_type,
                               instance_uuid=instance_uuid, host=host, port=int(port),
                               compute_host=compute_host,
                               internal_access_path=internal_access_path,
                               expires=now + self.ttl, created_at=utcnow())
        with self.db.transaction() as s:
            s.execute(delete(ConsoleAuthToken).where(ConsoleAuthToken.expires <= now))
            s.add(row)
        return token, _conn(row)

    def validate(self, token: str) -> ConsoleConnection | None:
        """The connection a token grants, or None when it is unknown, expired, malformed
        or its instance is gone."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        now = int(self.clock())
        with self.db.reader() as s:
            row = s.execute(
                select(ConsoleAuthToken)
                .join(Instance, Instance.uuid == ConsoleAuthToken.instance_uuid)
                .where(ConsoleAuthToken.token_hash == hash_token(token),
                       ConsoleAuthToken.expires > now,
                       Instance.deleted.is_(False))
            ).scalar_one_or_none()
            return _conn(row) if row is not None else None

