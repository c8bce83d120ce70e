"""Wiring of the console proxy for ``onestack up``: token store, agent check, noVNC pages."""

from __future__ import annotations

import logging

from onestack.bus.base import Bus, BusError
from onestack.config import Settings
from onestack.console.proxy import ConsoleCheck, ConsoleProxy
from onestack.console.static import StaticPages, find_novnc
from onestack.console.tokens import ConsoleConnection, ConsoleTokenStore
from onestack.db.engine import Database

LOG = logging.getLogger(__name__)


def agent_check(bus: Bus, timeout: float = 10.0) -> ConsoleCheck:
    """A :data:`ConsoleCheck` that asks the instance's compute agent where its console is
    now and accepts the token only when that is still the token's ``host:port``."""

    async def check(conn: ConsoleConnection) -> bool:
        if not conn.compute_host:
            return True
        try:
            info = await bus.call(f"compute.{conn.compute_host}", "get_vnc_console",
                                  timeout=timeout, instance_uuid=conn.instance_uuid)
        except BusError as exc:
            LOG.info("console: agent %s did not answer: %s", conn.compute_host, exc)
            return False
        if not isinstance(info, dict) or "port" not in info:
            return False
        return str(info.get("host")) == conn.host and int(info["port"]) == conn.port

    return check


def console_tokens(settings: Settings, db: Database) -> ConsoleTokenStore:
    """The token store the compute API writes and the proxy reads."""
    return ConsoleTokenStore(db, settings.console_token_ttl)


def build_console_app(settings: Settings, db: Database, bus: Bus | None) -> ConsoleProxy:
    """The console proxy app (port ``console_port``)."""
    novnc = find_novnc(settings.console_novnc_dir)
    if settings.console_novnc_dir and novnc is None:
        LOG.warning("console_novnc_dir %s has no noVNC (vnc_lite.html); serving the "
                    "fallback page", settings.console_novnc_dir)
    origins = [o for o in settings.console_allowed_origins.split(",") if o.strip()]
    return ConsoleProxy(console_tokens(settings, db), allowed_origins=origins,
                        check=agent_check(bus) if bus is not None else None,
                        pages=StaticPages(novnc))
