"""The one composition root: settings -> database, keys, bus, drivers, managers, agents,
service apps and workers.

Nothing is built at import time. ``build_cloud`` wires every component of ``onestack up``
(``cloud.Cloud`` serves them); ``build_compute`` the compute service with its scheduler and
host agents over the other services' seams; ``build_image_worker`` a second image API
process (``onestack image-worker``). Service packages build only themselves
(``identity/service.py``, ``volume/setup.py``, ``console/setup.py``) and never one another.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from pathlib import Path
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from onestack.agents.compute import ComputeAgent
from onestack.agents.pool import ComputeAgentPool
from onestack.api.app import TokenValidator, install_faults, make_app
from onestack.api.http import HttpProtocol
from onestack.bus.base import Bus
from onestack.bus.factory import make_bus
from onestack.cloud import Cloud
from onestack.compute.api import ComputeAPI, build_policy
from onestack.compute.images import ComputeImages, image_dropper, image_uploader
from onestack.compute.manager import ComputeManager
from onestack.compute.microversions import VersionLayer
from onestack.compute.network import LocalNetwork
from onestack.compute.placement import ComputePlacement
from onestack.compute.recovery import BootRecovery
from onestack.compute.volumes import ComputeVolumes
from onestack.config import Settings
from onestack.console.setup import console_tokens
from onestack.db.engine import Database
from onestack.db.migrate import upgrade
from onestack.default_guest import real_guests, setup_default_guest
from onestack.drivers.hypervisor import load_driver
from onestack.drivers.hypervisor.imagefiles import ImageFiles
from onestack.drivers.imagestore.file import FileStore
from onestack.faults.bus import FaultBus
from onestack.identity.limits import UnifiedLimits
from onestack.identity.manager import IdentityManager
from onestack.identity.service import build_identity
from onestack.identity.setup import bootstrap
from onestack.image.api import AcceptCapture, ImageAPI
from onestack.image.api import build_policy as build_image_policy
from onestack.image.manager import ImageManager
from onestack.image.metadefs_api import add_metadef_routes
from onestack.network.api import NetworkAPI
from onestack.network.api import build_policy as build_network_policy
from onestack.network.manager import NetworkManager
from onestack.placement.api import build_app as build_placement_app
from onestack.placement.api import build_policy as build_placement_policy
from onestack.placement.manager import PlacementManager
from onestack.scheduler.manager import Scheduler
from onestack.snapshots import take_resume_marker
from onestack.tasks import cancel_and_wait

LOG = logging.getLogger(__name__)


#: Services served by this version, in start order.
SERVICES = ["identity", "image", "placement", "network", "compute", "volume"]


def build_cloud(settings: Settings, *, run_bootstrap: bool = True) -> Cloud:
    """Create the data dir, migrate the database, load keys and build every service app."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = Database(settings.db_url, settings.database_pool_size)
    upgrade(db.engine)
    parts = build_identity(settings, db)
    identity, tokens = parts.manager, parts.tokens
    creds = None
    if run_bootstrap:
        creds = bootstrap(identity, settings, SERVICES)
    identity.refresh()
    policy_file = settings.policy_file or None
    auth_uri = settings.url("identity")
    apps: dict[str, Any] = {}
    apps["identity"] = parts.app
    image, image_store, apps["image"] = build_image(settings, db, tokens)
    image.recover()
    placement = PlacementManager(db)
    apps["placement"] = build_placement_app(placement, tokens,
                                            build_placement_policy(policy_file), auth_uri,
                                            settings.max_request_body_size)
    from onestack.drivers.network.loader import build_network_driver

    network = NetworkManager(db, settings, build_network_policy(policy_file),
                             driver=build_network_driver(settings))
    network_api = NetworkAPI(network, network.policy, auth_uri)
    apps["network"] = make_app(network_api.service, tokens, settings.max_request_body_size)
    if run_bootstrap:
        _network_defaults(identity, network)
    else:
        network.ensure_agents()
    network.start_dataplane()
    bus = FaultBus(make_bus(settings.bus_url), parts.faults)
    from onestack.image.for_volume import LocalImages
    from onestack.volume.setup import build_volume

    volume, apps["volume"], volume_api = build_volume(settings, db, tokens, policy_file,
                                                      auth_uri, images=LocalImages(image))
    from onestack.volume.for_compute import LocalVolumes

    compute, compute_app, scheduler, agents, compute_api = build_compute(
        settings, db, bus, tokens, image, placement, policy_file, auth_uri,
        network=network, volumes=LocalVolumes(volume, volume_api.attachments))
    volume_api.compute_events = compute_api.volume_routes  # Cinder -> Nova events
    if agents is not None:
        agents.set_faults(parts.faults)
        agents.resume_guests = take_resume_marker(settings.data_dir)
    apps["compute"] = compute_app
    from onestack.console.setup import build_console_app

    apps["console"] = build_console_app(settings, db, bus)
    from onestack.dashboard.server import build_dashboard_app

    apps["dashboard"] = build_dashboard_app(settings)
    install_faults(apps, parts.faults)
    if real_guests(agents):  # the metadata service only serves real guests
        from onestack.compute.network import LocalNetwork
        from onestack.metadata.app import build_metadata_app

        apps["metadata"] = build_metadata_app(
            settings, compute, LocalNetwork(network) if network is not None else None)
    guest_job = None
    if run_bootstrap:
        admin = identity.project_info_by_name("admin", "default")
        guest_job = setup_default_guest(settings, agents, image, compute,
                                        admin.id if admin else None)
    return Cloud(settings, db, identity, tokens, apps, creds, image=image, network=network,
                 placement=placement, bus=bus, compute=compute, scheduler=scheduler,
                 compute_agents=agents, volume=volume, guest_job=guest_job)


def build_image(settings: Settings, db: Database, tokens: TokenValidator,
                cache_dir: Path | None = None) -> tuple[ImageManager, FileStore, ASGIApp]:
    """The image service over the data dir's file store: its manager, store and app
    (``cache_dir``: this process's own image cache, for an image worker)."""
    store = FileStore(settings.data_dir / "images")
    manager = ImageManager(db, store, build_image_policy(settings.policy_file or None),
                           settings.image_quota_bytes, stores=settings.image_stores,
                           url_allow=settings.image_url_allow,
                           show_locations=settings.image_locations,
                           require_format_match=settings.image_require_format_match)
    if settings.image_unified_limits:
        manager.unified_limits = UnifiedLimits("image", settings.region)
    extra = {"cache_dir": cache_dir} if cache_dir is not None else {}
    api = ImageAPI(manager, store, manager.policy, settings.url("identity"),
                   max_json_body=settings.image_max_json_body, **extra)
    add_metadef_routes(api)
    # Upload routes stream gigabytes: no shared body limit (JSON handlers apply their own).
    return manager, store, AcceptCapture(make_app(api.service, tokens, 0))


def _network_defaults(identity: IdentityManager, network: NetworkManager) -> None:
    """First-start networks (public, private, router1) and this host's agents."""
    admin_project = identity.project_info_by_name("admin", "default")
    demo_project = identity.project_info_by_name("demo", "default")
    if admin_project is not None:
        network.ensure_defaults(admin_project.id, demo_project.id if demo_project else None)
    else:
        network.ensure_agents()


# ---------------------------------------------------------------------- compute
def host_names(settings: Settings) -> list[str]:
    """The compute host names this process runs agents for."""
    base = settings.compute_host or socket.gethostname()
    n = max(1, settings.compute_fake_hosts)
    if n == 1:
        return [base]
    return [f"{base}-{i:04d}" for i in range(1, n + 1)]


def _weighers(text: str) -> dict[str, float]:
    out = {}
    for part in text.split(","):
        if part.strip():
            name, _, mult = part.partition(":")
            out[name.strip()] = float(mult or 1.0)
    return out


def build_compute(settings: Settings, db: Database, bus: Bus, tokens: TokenValidator,
                  images: ComputeImages | None, placement: ComputePlacement | None,
                  policy_file: str | None, auth_uri: str,
                  network: NetworkManager | None = None,
                  volumes: ComputeVolumes | None = None
                  ) -> tuple[ComputeManager, ASGIApp, Scheduler, ComputeAgentPool | None,
                             ComputeAPI]:
    """``network``: the in-process network manager (None: servers get no ports); the API
    and the agents reach it through ``compute.network.LocalNetwork``. ``volumes``: the
    block-storage seam (``compute.volumes.ComputeVolumes``; None: no volumes)."""
    use_placement = placement is not None and settings.compute_claims == "placement"
    manager = ComputeManager(db, settings.compute_default_availability_zone,
                             placement if use_placement else None,
                             settings.compute_max_instances_per_request)
    if settings.compute_unified_limits:
        manager.unified_limits = UnifiedLimits("compute", settings.region)
    manager.ensure_default_flavors()
    nets = LocalNetwork(network) if network is not None else None
    api = ComputeAPI(manager, bus, build_policy(policy_file), auth_uri, images=images,
                     console_url=settings.url("console"), network=nets)
    api.console_tokens = console_tokens(settings, db)
    api.volumes = volumes
    api.add_volume_routes()
    app = VersionLayer(make_app(api.service, tokens, settings.max_request_body_size))
    filters = [f.strip() for f in settings.scheduler_filters.split(",") if f.strip()]
    recovery = BootRecovery(manager, bus, nets, settings.compute_recover_after)
    recovery.volumes = volumes
    scheduler = Scheduler(manager, bus, filters or None, _weighers(settings.scheduler_weighers),
                          settings.scheduler_max_attempts, settings.scheduler_host_subset_size,
                          host=settings.compute_host or socket.gethostname(),
                          heartbeat_interval=settings.compute_heartbeat_interval,
                          recovery=recovery,
                          recovery_interval=min(settings.compute_reconcile_interval,
                                                settings.compute_recover_after))
    pool = None
    if settings.compute_run_agents:
        agents = []
        upload = image_uploader(images) if images is not None else None
        for host in host_names(settings):
            driver = load_driver(settings.compute_driver, host,
                                 **_driver_options(settings))
            plugger = getattr(network, "driver", None) if network is not None else None
            if hasattr(driver, "vif_plugger") and hasattr(plugger, "plug"):
                # The data plane enslaves each guest tap as soon as the driver makes it.
                driver.vif_plugger = plugger
            image_files = None
            if images is not None and driver.hypervisor_type != "fake":
                image_files = ImageFiles(images, settings.data_dir / "image-cache")
            agents.append(ComputeAgent(
                host, driver, manager, bus, upload, settings.compute_build_timeout,
                shutdown_timeout=settings.compute_shutdown_timeout, network=nets,
                volumes=volumes,
                drop_image=image_dropper(images) if images is not None else None,
                image_files=image_files))
        pool = ComputeAgentPool(agents, manager, bus, settings.compute_heartbeat_interval,
                                settings.compute_reconcile_interval)
    return manager, app, scheduler, pool, api


def _driver_options(settings: Settings) -> dict[str, Any]:
    if settings.compute_driver != "fake":
        from onestack.drivers.hypervisor import qemu

        if settings.compute_driver == "qemu" or qemu.available():
            return qemu.driver_options(settings)
        return {}
    return {"vcpus": settings.compute_fake_vcpus, "memory_mb": settings.compute_fake_memory_mb,
            "local_gb": settings.compute_fake_disk_gb, "delay": settings.compute_fake_delay}


# ---------------------------------------------------------------------- image workers
# ``onestack image-worker``: one more image API process next to ``onestack up``.
#
# Glance deployments run several API workers (on several nodes) over one database and one
# staging area; Tempest calls the second one ``image_remote``. This process serves the same
# image API on its own port, over the same database and data directory as the cloud it joins:
# an image staged through one process can be imported, deleted or downloaded through the other,
# and an import runs in the process that was asked for it. It keeps its own image cache
# (``DATA/images/cache-<port>/``), as each Glance node does. It validates tokens itself with the
# cloud's Fernet keys and follows revocations like the identity workers do.
#
# It never runs the start-up recovery of ``onestack up`` (that would roll back the main
# process's uploads in progress); start it after the cloud, and stop it before restarting the
# cloud. It does not register itself in the catalog: an operator adds an endpoint of a service
# type of their choosing (``image_remote`` for Tempest's ``alternate_image_endpoint``).

def build_image_worker(settings: Settings,
                 port: int) -> tuple[uvicorn.Server, Database, IdentityManager]:
    """The worker's server (not started), its database and its identity manager."""
    db = Database(settings.db_url, settings.database_pool_size)
    upgrade(db.engine)  # a no-op once the cloud has migrated; fails early on a bad DB
    parts = build_identity(settings, db)
    parts.manager.refresh()
    _, _, app = build_image(settings, db, parts.tokens,
                            settings.data_dir / "images" / f"cache-{port}")
    config = uvicorn.Config(app, host=settings.bind, port=port, lifespan="off",
                            access_log=False, log_level=settings.log_level,
                            timeout_keep_alive=75, server_header=False,
                            http=HttpProtocol)
    return uvicorn.Server(config), db, parts.manager


async def serve_image_worker(settings: Settings, port: int) -> None:
    """Serve until SIGTERM/SIGINT, refreshing identity state (revocations) periodically."""
    server, db, identity = build_image_worker(settings, port)  # uvicorn handles SIGTERM/SIGINT

    async def refresh() -> None:
        interval = max(0.2, settings.cache_refresh_interval)
        while not server.should_exit:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(identity.refresh)
            except Exception:  # noqa: BLE001 - keep refreshing, log the failure
                LOG.exception("identity refresh failed")

    watcher = asyncio.create_task(refresh())
    try:
        await server.serve()
    finally:
        await cancel_and_wait(watcher)
        db.dispose()
