"""Choosing and building the network data plane from the settings (``network_driver``)."""

from __future__ import annotations

import ipaddress
import logging
import socket

from onestack.config import Settings
from onestack.drivers.network.base import NetworkDriver
from onestack.drivers.network.noop import NoopDriver

LOG = logging.getLogger(__name__)

DRIVERS = ("noop", "linux", "auto")


def resolve(settings: Settings) -> str:
    """``noop`` or ``linux``: ``auto`` is ``linux`` when it can run here (root and the tools)
    and the compute driver runs real guests (``qemu``, or ``auto`` where QEMU works; fake
    guests need no data plane)."""
    from onestack.drivers.network.linux.host import missing_requirements

    name = settings.network_driver
    if name not in DRIVERS:
        raise ValueError(f"network_driver must be one of {', '.join(DRIVERS)}, not {name!r}")
    if name == "auto":
        if settings.compute_driver == "fake":
            return "noop"
        if settings.compute_driver == "auto":
            from onestack.drivers.hypervisor import qemu

            if not qemu.available():
                return "noop"
        missing = missing_requirements()
        if missing:
            LOG.info("network driver auto: noop (%s)", ", ".join(missing))
            return "noop"
        return "linux"
    if name == "linux":
        missing = missing_requirements()
        if missing:
            raise ValueError("the linux network driver cannot run here: " + ", ".join(missing))
    return name


def build_network_driver(settings: Settings) -> NetworkDriver:
    """The data plane ``settings`` ask for (see :func:`resolve`)."""
    if resolve(settings) == "noop":
        return NoopDriver()
    from onestack.drivers.network.linux.driver import LinuxDriver, LinuxOptions
    from onestack.metadata.app import load_or_create_secret

    mappings = {}
    for item in settings.network_bridge_mappings.split(","):
        if ":" in item:
            physnet, bridge = item.split(":", 1)
            mappings[physnet.strip()] = bridge.strip()
    gateway = ""
    if settings.network_public_bridge_address and settings.network_public_gateway:
        prefix = ipaddress.ip_network(settings.network_public_subnet_range,
                                      strict=False).prefixlen
        gateway = f"{settings.network_public_gateway}/{prefix}"
    metadata_host = settings.bind if settings.bind not in ("0.0.0.0", "::", "") else "127.0.0.1"
    options = LinuxOptions(
        state_dir=settings.data_dir / "dataplane",
        host=settings.network_host or socket.gethostname(),
        bridge_mappings=mappings,
        public_physical_network=settings.network_public_physical_network,
        public_gateway_cidr=gateway,
        metadata_host=metadata_host,
        metadata_port=settings.metadata_port,
        metadata_secret=load_or_create_secret(settings.data_dir,
                                              settings.metadata_proxy_shared_secret),
        sync_interval=settings.network_sync_interval)
    return LinuxDriver(options)
