"""The control plane's side of the data plane: what a network driver may ask of the manager.

``NetworkManager`` implements :class:`onestack.drivers.network.base.ControlPlane` here, the
in-process equivalent of the RPC calls Neutron's agents make to neutron-server: read the whole
model (``desired_state``), report a port wired or not (``set_port_status``), get the DHCP port
of a network (``ensure_dhcp_port``) and report the agents alive (``agent_heartbeat``). The
driver is started here too (``start_dataplane``), once the database and defaults exist.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.timeutils import utcnow
from onestack.db import network as t
from onestack.drivers.network.base import DesiredState
from onestack.network.base import ManagerBase

LOG = logging.getLogger(__name__)

#: Seconds without a heartbeat after which an agent is listed as not alive (Neutron's
#: ``agent_down_time`` default).
AGENT_DOWN_TIME = 75.0

PORT_STATUSES = ("ACTIVE", "DOWN", "BUILD", "ERROR")


class DataplaneMixin(ManagerBase):
    """``ControlPlane`` for the network driver, and the driver's start and stop."""

    def start_dataplane(self) -> None:
        """Start the driver's background work and hand it the whole model (``sync``)."""
        self.driver.start(self)
        self.driver.sync(self.desired_state())

    def stop_dataplane(self) -> None:
        """Stop the driver's background work (what it made on the host stays)."""
        self.driver.stop()

    # ------------------------------------------------------------------ ControlPlane
    def desired_state(self) -> DesiredState:
        """Every network, subnet, port, router, floating IP and security group (admin views)."""
        admin = RequestContext.admin()

        def run(s: Session) -> DesiredState:
            def rows(model: Any) -> list[Any]:
                return list(s.execute(select(model).order_by(model.id)).scalars())
            return DesiredState(
                networks=self._network_views(s, admin, rows(t.Network)),
                subnets=self._subnet_views(s, rows(t.Subnet)),
                ports=self._port_views(s, admin, rows(t.Port)),
                routers=self._router_views(s, admin, rows(t.Router)),
                floating_ips=self._fip_views(s, rows(t.FloatingIP)),
                security_groups=self._sg_views(s, rows(t.SecurityGroup)))
        return self._read(run)

    def set_port_status(self, port_id: str, status: str) -> None:
        """Record what the data plane reports for a port (no driver call back)."""
        if status not in PORT_STATUSES:
            raise ValueError(f"unknown port status {status!r}")

        def run(s: Session) -> None:
            port = s.get(t.Port, port_id)
            if port is None or port.status == status:
                return
            if status == "ACTIVE" and not port.admin_state_up:
                return
            port.status = status
            self._touch(port)
        self._tx(run)

    def ensure_dhcp_port(self, network_id: str) -> dict[str, Any] | None:
        """The network's DHCP port on this host, created (bound here) when missing."""
        device_id = f"dhcp{uuid.uuid5(uuid.NAMESPACE_DNS, self.host)}-{network_id}"

        def find(s: Session) -> tuple[list[dict[str, Any]], t.Network | None, list[str]]:
            net = s.get(t.Network, network_id)
            ports = list(s.execute(select(t.Port).where(
                t.Port.network_id == network_id, t.Port.device_owner == "network:dhcp")
            ).scalars())
            subnets = [sid for (sid,) in s.execute(select(t.Subnet.id).where(
                t.Subnet.network_id == network_id, t.Subnet.enable_dhcp.is_(True))
                .order_by(t.Subnet.created_at, t.Subnet.id))]
            return self._port_views(s, RequestContext.admin(), ports), net, subnets
        existing, net, subnets = self._read(find)
        if net is None or not subnets:
            return None
        for port in existing:
            if port["device_id"] == device_id or len(existing) == 1:
                return port
        admin = RequestContext.admin()
        admin.project_id = net.project_id
        body = {"network_id": network_id, "device_owner": "network:dhcp",
                "device_id": device_id, "binding:host_id": self.host,
                "fixed_ips": [{"subnet_id": sid} for sid in subnets]}
        try:
            return self.create_ports(admin, [body])[0]  # type: ignore[attr-defined,no-any-return]
        except Exception:  # noqa: BLE001 - the network is full or went away: no DHCP port
            LOG.warning("no DHCP port for network %s", network_id, exc_info=True)
            return None

    def agent_heartbeat(self, agent_types: list[str]) -> None:
        """The named agents of this host are alive now."""
        if not agent_types:
            return
        now = utcnow()
        self._tx(lambda s: s.execute(update(t.Agent).where(
            t.Agent.host == self.host, t.Agent.agent_type.in_(agent_types)
        ).values(heartbeat_at=now)))

    @staticmethod
    def agent_alive(row: t.Agent, now: dt.datetime | None = None) -> bool:
        """Whether ``row`` reported itself within ``AGENT_DOWN_TIME`` seconds."""
        if row.heartbeat_at is None:
            return False
        now = now or utcnow()
        return (now - row.heartbeat_at).total_seconds() <= AGENT_DOWN_TIME
