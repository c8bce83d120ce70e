"""Network business logic: the only place network state changes.

Every public method takes the caller's ``RequestContext`` and enforces tenancy itself: a
project sees its own resources plus shared and external networks (and their subnets);
anything else is a 404, as in Neutron. Administrators see everything.

Writes run in ``_tx``, one database transaction retried on a unique-key clash or deadlock
(a concurrent allocator took the same IP, MAC or segment id); the clash can never commit
because ``net_ip_allocation``'s primary key is ``(subnet_id, ip_address)``. Subnet rows are
locked (``SELECT ... FOR UPDATE`` on MariaDB/PostgreSQL; SQLite serialises writers) while
addresses are chosen, so retries are rare.

The compute service uses the device API (``devices.py``): ``create_port_for_device``,
``bind_port``, ``unbind_port``, ``delete_ports_for_device`` and ``device_ports``.

The resources live in one module each (``networks``, ``subnets``, ``address_scopes``,
``security_groups``,
``ports``, ``routers``, ``admin``, ``devices``, ``dataplane``, with ``base``, ``store`` and
``writer`` for the plumbing); ``NetworkManager`` composes them.
"""

from __future__ import annotations

import socket
from collections import defaultdict
from typing import Any

from onestack.api.policy import Policy
from onestack.common.timeutils import utcnow
from onestack.config import Settings
from onestack.db.engine import Database
from onestack.db.sqlite_writer import DriverStatement, InPlaceWriter
from onestack.drivers.network.base import NetworkDriver
from onestack.drivers.network.noop import NoopDriver
from onestack.network.address_scopes import AddressScopesMixin
from onestack.network.admin import AdminMixin
from onestack.network.authz import Authorizer
from onestack.network.base import ManagerBase
from onestack.network.common import TAGGABLE
from onestack.network.dataplane import DataplaneMixin
from onestack.network.devices import DevicesMixin
from onestack.network.networks import NetworksMixin
from onestack.network.ports import PortsMixin
from onestack.network.routers import RoutersMixin
from onestack.network.security_groups import SecurityGroupsMixin
from onestack.network.subnets import SubnetsMixin
from onestack.network.writer import WriterMixin

__all__ = ["TAGGABLE", "NetworkManager"]


def _parse_ranges(text: str, with_physnet: bool) -> dict[str, list[tuple[int, int]]]:
    """``physnet:1:10,physnet2`` (VLAN) or ``1:1000,2000:3000`` (tunnels, key '')."""
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        parts = item.split(":")
        if with_physnet:
            name = parts[0]
            out.setdefault(name, [])
            if len(parts) == 3:
                out[name].append((int(parts[1]), int(parts[2])))
        elif len(parts) == 2:
            out[""].append((int(parts[0]), int(parts[1])))
    return dict(out)


class NetworkManager(DataplaneMixin, DevicesMixin, AdminMixin, RoutersMixin, PortsMixin,
                     SecurityGroupsMixin, SubnetsMixin, AddressScopesMixin, NetworksMixin,
                     WriterMixin, ManagerBase):
    """Networks, subnets, subnet pools, address scopes, ports + IPAM, security groups,
    routers, floating IPs, quotas, tags and agents of the network service."""

    def __init__(self, db: Database, settings: Settings, policy: Policy,
                 driver: NetworkDriver | None = None) -> None:
        self.db = db
        self.settings = settings
        self.policy = policy
        self.authz = Authorizer(policy)
        self.driver = driver or NoopDriver()
        self.host = settings.network_host or socket.gethostname()
        self.flat_networks = {p.strip() for p in settings.network_flat_networks.split(",")
                              if p.strip()}
        self.vlan_ranges = _parse_ranges(settings.network_vlan_ranges, True)
        self.tunnel_ranges = {
            "vxlan": _parse_ranges(settings.network_vxlan_ranges, False).get("", []),
            "geneve": _parse_ranges(settings.network_geneve_ranges, False).get("", []),
        }
        self.tenant_types = [x.strip() for x in settings.network_tenant_network_types.split(",")
                             if x.strip()] or ["vxlan"]
        self.started = utcnow()
        #: Last address handed out per subnet (a hint only; the database decides).
        self._cursors: dict[str, int] = {}
        #: Parsed pools per subnet: (pools, gateway, ranges, size, gateway as int).
        self._pools: dict[str, tuple[Any, Any, list[tuple[int, int]], int, int | None]] = {}
        #: Default security group id per project (cleared on any write race).
        self._default_sgs: dict[str, str] = {}
        #: ``create_ports_nowait``'s own writer connection (SQLite) and the port-creation
        #: statements compiled for its sqlite3 connection (``_PortWrites``).
        self._inplace = InPlaceWriter(db.engine)
        self._driver_statements: dict[Any, DriverStatement] = {}
