"""Building the identity service, and extra identity worker processes.

``build_identity`` wires keys, manager, token service and the ASGI app (used by the composition
root and by workers). ``onestack up`` serves identity from the main process and, with
``identity_workers`` > 1, from that many processes in all: the extra ones are spawned after
the main process is up, listen on the same port with ``SO_REUSEPORT`` (the kernel spreads
connections), share the database and keys, and stay coherent through the data dir's change
marker (``identity.coherence``). They exit when told to, and by themselves when the main
process dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from onestack.api.app import add_declared, install_faults, make_app
from onestack.api.http import HttpProtocol
from onestack.config import Settings
from onestack.db.engine import Database
from onestack.faults.api import ControlAPI
from onestack.faults.rules import FaultTable
from onestack.identity.api import IdentityAPI, build_policy
from onestack.identity.api_extensions import ExtensionRoutes
from onestack.identity.api_limits import LimitRoutes
from onestack.identity.api_members import add_members
from onestack.identity.auth import TokenService
from onestack.identity.coherence import ChangeHint
from onestack.identity.manager import IdentityManager
from onestack.identity.tokens import FernetCodec, KeyRepository, TokenFormatter

LOG = logging.getLogger(__name__)


@dataclass
class IdentityParts:
    manager: IdentityManager
    tokens: TokenService
    app: ASGIApp
    #: The cloud's fault rules (``onestack.faults``), shared with every other service.
    faults: FaultTable


def build_identity(settings: Settings, db: Database) -> IdentityParts:
    """Keys (created on first use), manager with the shared change marker, tokens, app
    (with onestack's ``/_onestack/`` control routes: health and fault rules)."""
    fernet_repo = KeyRepository(settings.fernet_key_dir, settings.fernet_max_active_keys)
    fernet_repo.setup()
    cred_repo = KeyRepository(settings.credential_key_dir, settings.fernet_max_active_keys)
    cred_repo.setup()
    manager = IdentityManager(db, settings, FernetCodec(cred_repo))
    manager.hint = ChangeHint(settings.data_dir / "identity-changes")
    tokens = TokenService(manager, TokenFormatter(FernetCodec(fernet_repo)), settings)
    api = IdentityAPI(manager, tokens, build_policy(settings.policy_file or None),
                      settings.url("identity"))
    faults = FaultTable(settings.data_dir)
    # ``/_onestack/`` (health, fault injection) rides on the identity service.
    extensions, limits = ExtensionRoutes(api), LimitRoutes(api)
    add_declared(api.service, extensions, limits,
                 ControlAPI(faults, settings.data_dir, settings.policy_file or None))
    add_members(api.service, extensions, limits)
    app = make_app(api.service, tokens, settings.max_request_body_size)
    install_faults({"identity": app}, faults)
    return IdentityParts(manager, tokens, app, faults)


def worker_count(settings: Settings) -> int:
    """Processes serving identity (0 = one per CPU, at most 4)."""
    if settings.identity_workers > 0:
        return settings.identity_workers
    return max(1, min(4, os.cpu_count() or 1))


def reuse_port_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket that other processes may bind too (``SO_REUSEPORT``)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _die_with_parent() -> None:
    """Ask Linux to SIGTERM this process when its parent dies (even by ``kill -9``)."""
    with contextlib.suppress(Exception):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _worker_main(settings: Settings, parent: int) -> None:
    """Entry point of one extra identity process."""
    _die_with_parent()
    if os.getppid() != parent:
        return
    logging.basicConfig(level=settings.log_level.upper())
    db = Database(settings.db_url, settings.database_pool_size)
    parts = build_identity(settings, db)
    parts.manager.refresh()
    sock = reuse_port_socket(settings.bind, settings.identity_port)
    config = uvicorn.Config(parts.app, lifespan="off", access_log=False,
                            log_level=settings.log_level, timeout_keep_alive=75,
                            server_header=False, http=HttpProtocol)
    server = _Server(config)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, lambda: setattr(server, "should_exit", True))

        async def watch() -> None:
            interval = max(0.2, settings.cache_refresh_interval)
            while not server.should_exit:
                await asyncio.sleep(interval)
                if os.getppid() != parent:  # the main process is gone: so are we
                    server.should_exit = True
                    return
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(parts.manager.refresh)

        watcher = asyncio.create_task(watch())
        await server.serve(sockets=[sock])
        watcher.cancel()

    try:
        import uvloop

        uvloop.run(run())
    except ImportError:  # pragma: no cover
        asyncio.run(run())
    db.dispose()


class IdentityWorkers:
    """The extra identity processes of ``onestack up``."""

    def __init__(self, settings: Settings, count: int) -> None:
        self.settings = settings
        self.count = count
        self.procs: list[Any] = []

    def start(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        for _ in range(self.count):
            proc = ctx.Process(target=_worker_main, args=(self.settings, os.getpid()),
                               name="onestack-identity-worker", daemon=True)
            proc.start()
            self.procs.append(proc)

    def stop(self, timeout: float = 10.0) -> None:
        for proc in self.procs:
            if proc.is_alive():
                proc.terminate()
        for proc in self.procs:
            proc.join(timeout)
            if proc.is_alive():
                proc.kill()
                proc.join(1)
        self.procs.clear()
