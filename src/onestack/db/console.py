"""Console (noVNC proxy) tables: the console authorisation tokens (Nova's
``console_auth_tokens``).

Only a SHA-256 hash of each token is stored, never the token itself, so a database dump does
not open consoles. ``expires`` is Unix time in seconds (compared in SQL, index-friendly).
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from onestack.db.base import Base, indexes, serial_key


class ConsoleAuthToken(Base):
    __tablename__ = "compute_console_auth_token"
    __table_args__ = indexes(__tablename__, instance="instance_uuid", expires="expires")
    id: Mapped[int] = serial_key()
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    console_type: Mapped[str] = mapped_column(String(32))
    instance_uuid: Mapped[str] = mapped_column(String(36))
    #: Where the console proxy connects (the guest's VNC server, loopback of the host).
    host: Mapped[str] = mapped_column(String(255))
    port: Mapped[int] = mapped_column(Integer)
    #: Compute host whose agent reported host/port (the proxy re-checks with it).
    compute_host: Mapped[str] = mapped_column(String(255), default="")
    internal_access_path: Mapped[str | None] = mapped_column(String(255), default=None)
    expires: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column()
