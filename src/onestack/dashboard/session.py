"""Dashboard sessions: server-side state behind a signed, HTTP-only cookie, and CSRF tokens.

The browser holds one cookie, ``onestack_session``: a random session id and its HMAC
(SHA-256, key in ``DATA/dashboard-secret``). Tokens, the user's name and the current project
stay in this process (``SessionStore``: bounded, expiring with the Keystone token), so no
token or password ever reaches the browser's storage or a URL. Every form carries the
session's CSRF token (``csrfmiddlewaretoken``, as Horizon names it); the login form, shown
before a session exists, uses a signed pre-session token in the ``onestack_csrf`` cookie
(double submit). A form without the right token is refused (403).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SESSION_COOKIE = "onestack_session"
CSRF_COOKIE = "onestack_csrf"
CSRF_FIELD = "csrfmiddlewaretoken"
#: Sessions one dashboard process keeps at most (the oldest go first).
MAX_SESSIONS = 10000


def load_secret(data_dir: Path) -> bytes:
    """The signing key of this data dir (made on first use, readable by its owner only)."""
    path = Path(data_dir) / "dashboard-secret"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        key = secrets.token_bytes(32)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(key.hex())
        os.replace(tmp, path)
        return key


@dataclass
class Session:
    """What the dashboard knows about one logged-in user."""

    id: str
    user_id: str
    user_name: str
    domain_name: str
    region: str
    unscoped_token: str
    token: str = ""
    expires_at: float = 0.0
    project_id: str = ""
    project_name: str = ""
    projects: list[dict[str, str]] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    catalog: dict[str, str] = field(default_factory=dict)
    csrf: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    #: One-time messages shown on the next page (level, text).
    flashes: list[tuple[str, str]] = field(default_factory=list)
    #: A private key made by "create key pair", offered for download once.
    pending_key: tuple[str, str] | None = None

    @property
    def is_admin(self) -> bool:
        return "admin" in {r.lower() for r in self.roles}

    def flash(self, level: str, text: str) -> None:
        self.flashes.append((level, text))
        del self.flashes[:-5]

    def take_flashes(self) -> list[tuple[str, str]]:
        out, self.flashes = self.flashes, []
        return out


class SessionStore:
    """Sessions by id (in memory, bounded, expiring), and the cookie signatures."""

    def __init__(self, secret: bytes, max_sessions: int = MAX_SESSIONS) -> None:
        self.secret = secret
        self.max_sessions = max_sessions
        self._items: OrderedDict[str, Session] = OrderedDict()
        self._lock = threading.Lock()

    def _sign(self, value: str) -> str:
        return hmac.new(self.secret, value.encode(), hashlib.sha256).hexdigest()

    def cookie_value(self, session: Session) -> str:
        return f"{session.id}.{self._sign(session.id)}"

    def add(self, session: Session) -> None:
        with self._lock:
            self._items[session.id] = session
            while len(self._items) > self.max_sessions:
                self._items.popitem(last=False)

    def get(self, cookie: str | None) -> Session | None:
        """The session a cookie names (None: missing, forged or expired)."""
        if not cookie or "." not in cookie or len(cookie) > 256:
            return None
        sid, _, sig = cookie.partition(".")
        if not hmac.compare_digest(sig, self._sign(sid)):
            return None
        with self._lock:
            session = self._items.get(sid)
            if session is None:
                return None
            if session.expires_at and session.expires_at < time.time():
                del self._items[sid]
                return None
            self._items.move_to_end(sid)
            return session

    def drop(self, session: Session) -> None:
        with self._lock:
            self._items.pop(session.id, None)

    # ------------------------------------------------------------------ CSRF
    def login_csrf(self) -> str:
        """A pre-session CSRF token: random, signed (cookie and form carry the same)."""
        raw = secrets.token_urlsafe(24)
        return f"{raw}.{self._sign('csrf:' + raw)[:32]}"

    def login_csrf_valid(self, cookie: str | None, submitted: str | None) -> bool:
        if not cookie or not submitted or len(cookie) > 128:
            return False
        raw, _, sig = cookie.partition(".")
        return (hmac.compare_digest(cookie, submitted)
                and hmac.compare_digest(sig, self._sign("csrf:" + raw)[:32]))


def new_session_id() -> str:
    return secrets.token_urlsafe(32)


def csrf_ok(session: Session, submitted: Any) -> bool:
    return isinstance(submitted, str) and hmac.compare_digest(session.csrf, submitted)
