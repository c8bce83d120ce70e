"""The running cloud: ``Cloud`` holds what ``bootstrap.build_cloud`` built and serves every
service's HTTP server in one event loop (identity's extra worker processes, the bus, the
scheduler and the compute agents started in order, the guest image job in the background)
until asked to stop; a SIGHUP asks it to stop and be built again in the same process (a
snapshot load, ``onestack.snapshots``).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from onestack.agents.pool import ComputeAgentPool
from onestack.api.http import HttpProtocol
from onestack.bus.base import Bus
from onestack.compute.manager import ComputeManager
from onestack.config import Settings
from onestack.db.engine import Database
from onestack.default_guest import GuestImageJob, real_guests
from onestack.identity.auth import TokenService
from onestack.identity.manager import IdentityManager
from onestack.identity.service import IdentityWorkers, reuse_port_socket, worker_count
from onestack.identity.setup import Credentials
from onestack.image.manager import ImageManager
from onestack.network.manager import NetworkManager
from onestack.placement.manager import PlacementManager
from onestack.scheduler.manager import Scheduler
from onestack.tasks import cancel_and_wait
from onestack.volume.manager import VolumeManager

LOG = logging.getLogger(__name__)

#: Threads of the event loop's default executor (blocking work of every service).
EXECUTOR_THREADS = 32

#: Served when their port is free, else skipped with a warning (no catalog entry).
OPTIONAL_SERVICES = {"console", "dashboard"}


@dataclass
class Cloud:
    """Everything ``onestack up`` runs, wired together."""

    settings: Settings
    db: Database
    identity: IdentityManager
    tokens: TokenService
    apps: dict[str, ASGIApp]
    credentials: Credentials | None = None
    image: ImageManager | None = None
    network: NetworkManager | None = None
    placement: PlacementManager | None = None
    bus: Bus | None = None
    compute: ComputeManager | None = None
    scheduler: Scheduler | None = None
    compute_agents: ComputeAgentPool | None = None
    volume: VolumeManager | None = None
    servers: list[uvicorn.Server] = field(default_factory=list)
    #: service name -> port of every service actually served (set by ``serve``).
    served: dict[str, int] = field(default_factory=dict)
    #: Set when SIGHUP stopped the cloud: ``onestack up`` then starts it again in the same
    #: process (after loading a snapshot, ``onestack.snapshots``).
    restart_requested: bool = False
    #: Builds and registers the guest image in a thread once the APIs answer (None: nothing
    #: to do; ``onestack.default_guest``).
    guest_job: GuestImageJob | None = None
    #: Called (in a thread) once a stop is asked for, while the APIs still answer: the
    #: ``shutdown.d`` hooks.
    before_stop: Callable[[], object] | None = None
    _stop: asyncio.Event | None = None
    _guest_task: asyncio.Task[Any] | None = None

    @property
    def compute_driver(self) -> str:
        """The hypervisor this process's agents really use (``qemu``, ``fake``; ``none``
        without agents), whatever was asked for (``auto``)."""
        if not getattr(self.compute_agents, "agents", None):
            return "none"
        return "qemu" if real_guests(self.compute_agents) else "fake"

    def _restart(self) -> None:
        self.restart_requested = True
        if self._stop is not None:
            self._stop.set()

    async def _background(self) -> None:
        """Periodic work: pick up other processes' identity changes, prune revocations."""
        interval = max(0.2, self.settings.cache_refresh_interval)
        last_prune = 0.0
        while True:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(self.identity.refresh)
                now = time.time()
                if now - last_prune > 3600:
                    horizon = (self.settings.token_expiration
                               + self.settings.token_allow_expired_window)
                    await asyncio.to_thread(self.identity.prune_revocations, now - horizon)
                    last_prune = now
            except Exception:  # noqa: BLE001 - keep the loop alive, log the failure
                LOG.exception("background refresh failed")

    async def serve(self, install_signals: bool = True,
                    started: asyncio.Event | None = None) -> None:
        """Serve every service until SIGINT/SIGTERM (or ``stop()``)."""
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        # Blocking work (database, bcrypt) of every service and agent shares this pool;
        # asyncio's default (CPUs + 4 threads) would let a few bcrypt hashes stall reads.
        loop.set_default_executor(ThreadPoolExecutor(EXECUTOR_THREADS,
                                                     thread_name_prefix="onestack"))
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self._stop.set)
            loop.add_signal_handler(signal.SIGHUP, self._restart)
        extra_identity = worker_count(self.settings) - 1
        sockets: dict[int, list[socket.socket]] = {}
        for name, app in self.apps.items():
            config = uvicorn.Config(app, host=self.settings.bind,
                                    port=self.settings.port(name), lifespan="off",
                                    access_log=False, log_level=self.settings.log_level,
                                    timeout_keep_alive=75, server_header=False,
                                    http=HttpProtocol)
            server = _Server(config)
            if name in OPTIONAL_SERVICES:
                # Bound here so that a taken port costs this service only, not the cloud.
                try:
                    sockets[id(server)] = [_listen(self.settings.bind,
                                                   self.settings.port(name))]
                except OSError as exc:
                    LOG.warning("%s not served: port %s: %s", name, self.settings.port(name),
                                exc)
                    continue
            elif name == "identity" and extra_identity > 0:
                # Shared with the extra identity processes (the kernel spreads connections).
                sockets[id(server)] = [reuse_port_socket(self.settings.bind,
                                                         self.settings.port(name))]
            self.servers.append(server)
            self.served[name] = self.settings.port(name)
        if self.bus is not None:
            await self.bus.start()
            if self.scheduler is not None:
                await self.scheduler.start()
            if self.compute_agents is not None:
                await self.compute_agents.start()
            if self.scheduler is not None:
                # After the agents: rescheduled boots are cast to them.
                await self.scheduler.recover()
        tasks = [asyncio.create_task(s.serve(sockets=sockets.get(id(s))))
                 for s in self.servers]
        workers = IdentityWorkers(self.settings, max(0, extra_identity))
        bg = asyncio.create_task(self._background())
        try:
            while not all(s.started for s in self.servers):
                if any(t.done() for t in tasks):
                    for t in tasks:
                        if t.done() and t.exception():
                            raise t.exception()  # type: ignore[misc]
                    raise RuntimeError("a service failed to start (is its port in use?)")
                await asyncio.sleep(0.01)
            if workers.count:
                await asyncio.to_thread(workers.start)
            freeze_startup_heap()
            if self.guest_job is not None:
                self._guest_task = asyncio.create_task(asyncio.to_thread(self.guest_job.run))
            if started is not None:
                started.set()
            stop_wait = asyncio.create_task(self._stop.wait())
            await asyncio.wait([stop_wait, *tasks], return_when=asyncio.FIRST_COMPLETED)
            if self.before_stop is not None:
                try:
                    await asyncio.to_thread(self.before_stop)
                except Exception:  # noqa: BLE001 - stopping anyway
                    LOG.exception("shutdown hooks failed")
        finally:
            await asyncio.to_thread(workers.stop)
            for s in self.servers:
                s.should_exit = True
            await asyncio.gather(*tasks, return_exceptions=True)
            await cancel_and_wait(bg)
            if install_signals:
                for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                    loop.remove_signal_handler(sig)
            if self.compute_agents is not None:
                await self.compute_agents.stop()
            if self.network is not None:
                await asyncio.to_thread(self.network.stop_dataplane)
            if self.scheduler is not None:
                await self.scheduler.stop()
            if self.bus is not None:
                await self.bus.stop()
            self.db.dispose()

    def stop(self) -> None:
        if self._stop is not None:
            self._stop.set()


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to ``Cloud.serve`` (many share a loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (raises ``OSError`` when taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def freeze_startup_heap() -> None:
    """Take everything built at start-up out of the cycle collector's view (``gc.freeze``).

    The process's long-lived objects (modules, apps, caches, policy tables: a few hundred
    thousand) otherwise get re-scanned by every full collection, which busy list traffic
    triggers every second or so: each one stopped the one event loop of every service for
    100–300 ms (``bench/health_bench.py``). Frozen, a full collection scans only what was
    created since; start-up garbage is collected first so that none is kept for good.
    """
    gc.collect()
    gc.freeze()


def pid_file(settings: Settings) -> str:
    return os.fspath(settings.data_dir / "onestack.pid")
