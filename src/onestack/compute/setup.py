"""Wiring of the compute service for ``onestack up``: manager, API app, scheduler, agents."""

from __future__ import annotations

import logging
import socket
from typing import Any

from starlette.types import ASGIApp

from onestack.agents.compute import ComputeAgent
from onestack.agents.pool import ComputeAgentPool
from onestack.api.app import make_app
from onestack.bus.base import Bus
from onestack.compute.api import ComputeAPI, build_policy
from onestack.compute.api_volume_proxy import add_volume_proxy_routes
from onestack.compute.api_volumes import add_volume_attachment_routes
from onestack.compute.image_upload import image_dropper, image_uploader
from onestack.compute.manager import ComputeManager
from onestack.compute.microversions import VersionLayer
from onestack.compute.network import LocalNetwork
from onestack.compute.recovery import BootRecovery
from onestack.config import Settings
from onestack.console.setup import console_tokens
from onestack.db.engine import Database
from onestack.drivers.hypervisor import load_driver
from onestack.identity.limits import UnifiedLimits
from onestack.scheduler.manager import Scheduler

LOG = logging.getLogger(__name__)


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


def build_compute(settings: Settings, db: Database, bus: Bus, tokens: Any, images: Any,
                  image_store: Any, placement: Any, policy_file: str | None,
                  auth_uri: str, network: Any = None, volumes: Any = None
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
    api.volume_routes = add_volume_attachment_routes(api)
    add_volume_proxy_routes(api)
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
                from onestack.drivers.hypervisor.imagefiles import ImageFiles

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
