"""The port-creation fast path's statements and batched row writes (``_PortWrites``)."""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
import sqlite3
from collections import defaultdict
from dataclasses import dataclass, field, fields
from typing import Any

from sqlalchemy import bindparam, case, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from onestack.db import network as t
from onestack.db.sqlite_writer import DriverStatement
from onestack.network import views
from onestack.network.common import _QUOTA_MODELS

# ---------------------------------------------------------------- port creation hot path
# Port creation is the busiest write of the service (every server boot makes one), so it
# skips the ORM unit of work: prebuilt Core statements read what it needs and the rows are
# written with one executemany per table (``_PortWrites``). The statements are built once
# here; SQLAlchemy's compiled cache then makes each execution cheap. On SQLite the API's
# in-place path (``create_ports_nowait``) runs the same statements on the sqlite3 connection
# itself (``DriverStatement``), which leaves out SQLAlchemy's per-execution work.
_NETS = t.Network.__table__
_SUBNETS = t.Subnet.__table__
_PORTS = t.Port.__table__
_IPS = t.IPAllocation.__table__
_PSG = t.PortSecurityGroup.__table__
_TAGS = t.Tag.__table__
_QUOTAS = t.Quota.__table__

#: What port creation needs of a network and of each of its subnets.
_NET_KEYS = ("id", "project_id", "shared", "external", "port_security_enabled")
_SUBNET_KEYS = ("id", "network_id", "project_id", "ip_version", "cidr", "gateway_ip",
                "ipv6_address_mode", "allocation_pools")
#: A network with its subnets (subnet columns prefixed ``s_``; one row per subnet).
_Q_NETWORK_SUBNETS = (
    select(*[_NETS.c[k] for k in _NET_KEYS],
           *[_SUBNETS.c[k].label(f"s_{k}") for k in _SUBNET_KEYS])
    .select_from(_NETS.outerjoin(_SUBNETS, _SUBNETS.c.network_id == _NETS.c.id))
    .where(_NETS.c.id == bindparam("id"))
    .order_by(_SUBNETS.c.created_at, _SUBNETS.c.id))
_Q_MAC_USED = select(_PORTS.c.id).where(_PORTS.c.network_id == bindparam("nid"),
                                        _PORTS.c.mac_address == bindparam("mac")).limit(1)
#: Probe this many addresses after the allocation cursor before reading the whole subnet.
_PROBE = 8
#: Which of ``_PROBE`` addresses are allocated (fixed parameters: no per-call IN expansion).
_Q_TAKEN = select(_IPS.c.ip_address).where(
    _IPS.c.subnet_id == bindparam("sid"),
    _IPS.c.ip_address.in_([bindparam(f"ip{i}") for i in range(_PROBE)]))
#: ``_Q_TAKEN`` for the SQLite driver itself (positional parameters: subnet id, addresses).
_SQLITE_TAKEN = (f"SELECT {_IPS.c.ip_address.name} FROM {_IPS.name} WHERE "
                 f"{_IPS.c.subnet_id.name} = ? AND {_IPS.c.ip_address.name} IN "
                 f"({', '.join('?' * _PROBE)})")
_INS_PORT, _INS_IP, _INS_PSG, _INS_TAG = (tb.insert() for tb in (_PORTS, _IPS, _PSG, _TAGS))
_Q_ALL_TAKEN = select(_IPS.c.ip_address).where(_IPS.c.subnet_id == bindparam("sid"))
_Q_LOCK_SUBNET = select(_SUBNETS.c.id).where(_SUBNETS.c.id == bindparam("sid")
                                             ).with_for_update()
_SGS = t.SecurityGroup.__table__
_Q_GROUP = select(_SGS.c.id, _SGS.c.project_id).where(_SGS.c.id == bindparam("id"))


def _quota_columns(model: Any) -> tuple[Any, Any]:
    """``(limit, usage)`` of a project's resource as two columns (parameters ``pid``,
    ``res`` and ``default``); the usage is not counted (0) when the limit is negative."""
    table = model.__table__
    limit = func.coalesce(
        select(_QUOTAS.c.limit).where(_QUOTAS.c.project_id == bindparam("pid"),
                                      _QUOTAS.c.resource == bindparam("res")
                                      ).scalar_subquery(), bindparam("default"))
    used = select(func.count()).select_from(table).where(
        table.c.project_id == bindparam("pid")).scalar_subquery()
    return limit.label("q_limit"), case((limit < 0, 0), else_=used).label("q_used")


#: One statement per quota check.
_Q_QUOTA = {name: select(*_quota_columns(model)) for name, model in _QUOTA_MODELS.items()}
#: The network and subnets of a new port plus the port quota of its (likely) project.
_Q_NETWORK_SUBNETS_QUOTA = _Q_NETWORK_SUBNETS.add_columns(*_quota_columns(t.Port))


def _ip_text(version: int, n: int) -> str:
    """The canonical text of address ``n`` (as ``str(ipaddress.ip_address(n))``)."""
    if version == 4:
        return socket.inet_ntoa(n.to_bytes(4, "big"))
    return str(ipaddress.IPv6Address(n))


class _NeedsSession(Exception):
    """Raised by ``_PortWrites.orm`` on the driver connection: the request needs the ORM, so
    ``create_ports_nowait`` starts it again through SQLAlchemy."""


@dataclass(slots=True)
class _PortRow:
    """A port being created: every column of ``net_port`` (the view reads it directly)."""

    id: str
    network_id: str
    project_id: str
    name: str = ""
    description: str = ""
    mac_address: str = ""
    admin_state_up: bool = True
    status: str = "DOWN"
    device_id: str = ""
    device_owner: str = ""
    port_security_enabled: bool = True
    allowed_address_pairs: list[dict[str, str]] = field(default_factory=list)
    extra_dhcp_opts: list[dict[str, Any]] = field(default_factory=list)
    binding_host_id: str = ""
    binding_vnic_type: str = "normal"
    binding_vif_type: str = "unbound"
    binding_profile: dict[str, Any] = field(default_factory=dict)
    binding_vif_details: dict[str, Any] = field(default_factory=dict)
    dns_name: str = ""
    revision_number: int = 0
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


_PORT_COLUMNS = tuple(f.name for f in fields(_PortRow))
if set(_PORT_COLUMNS) != {c.key for c in _PORTS.columns}:  # pragma: no cover - schema drift
    raise RuntimeError("_PortRow no longer matches the net_port table")


class _PortWrites:
    """The rows of the ports one transaction creates, written together by ``flush``.

    Also what the transaction already knows, so a bulk request reads each thing once:
    networks with their subnets, quota usage per project, subnets locked for allocation,
    and the addresses/MACs taken by rows not written yet.
    """

    __slots__ = ("conn", "raw", "ports", "ips", "groups", "tags", "taken", "macs", "nets",
                 "quota", "locked", "port_ips", "port_groups", "port_tags", "_session",
                 "_own_session", "_statements")

    def __init__(self, s: Session | None, conn: Connection | None = None,
                 raw: sqlite3.Connection | None = None,
                 statements: dict[Any, DriverStatement] | None = None) -> None:
        """On the transaction of session ``s``, or (``s`` None) of connection ``conn``
        (a session for the rare ORM work is then opened on it when needed), or (``raw``)
        of ``conn``'s sqlite3 connection, where no ORM work can happen (``orm`` raises
        ``_NeedsSession``); ``statements`` caches the driver statements."""
        if s is not None:
            s.flush()  # Core statements below must see the session's pending ORM rows
            conn = s.connection()
        assert conn is not None
        self.conn: Connection = conn
        self.raw = raw
        self._statements = statements if statements is not None else {}
        self._session = s
        self._own_session = False
        self.ports: list[dict[str, Any]] = []
        self.ips: list[dict[str, str]] = []
        self.groups: list[dict[str, str]] = []
        self.tags: list[dict[str, str]] = []
        self.taken: dict[str, set[int]] = defaultdict(set)
        self.macs: set[tuple[str, str]] = set()
        self.nets: dict[str, tuple[Any, list[Any]]] = {}
        self.quota: dict[str, list[int]] = {}
        self.locked: set[str] = set()
        self.port_ips: dict[str, list[dict[str, str]]] = defaultdict(list)
        self.port_groups: dict[str, list[str]] = {}
        self.port_tags: dict[str, list[str]] = {}

    def _driver(self, stmt: Any) -> DriverStatement:
        found = self._statements.get(stmt)
        if found is None:
            found = self._statements[stmt] = DriverStatement(stmt, self.conn.dialect)
        return found

    def rows(self, stmt: Any, params: dict[str, Any]) -> list[Any]:
        """All rows of a prebuilt Core select (attribute and index access)."""
        if self.raw is not None:
            return self._driver(stmt).rows(self.raw, params)
        return list(self.conn.execute(stmt, params).all())

    def orm(self) -> Session:
        """A session on this transaction (for reads and rare writes through the ORM)."""
        if self.raw is not None:
            raise _NeedsSession()
        if self._session is None:
            self._session = Session(bind=self.conn, expire_on_commit=False)
            self._own_session = True
        return self._session

    def close(self) -> None:
        if self._own_session and self._session is not None:
            self._session.close()

    def add_ip(self, port: Any, subnet_id: str, ip: str, n: int) -> None:
        """Buffer fixed IP ``ip`` (``n`` as an integer) of ``port``."""
        self.ips.append({"subnet_id": subnet_id, "ip_address": ip, "port_id": port.id,
                         "network_id": port.network_id})
        self.taken[subnet_id].add(n)
        self.port_ips[port.id].append({"subnet_id": subnet_id, "ip_address": ip})

    def add_port(self, port: _PortRow, groups: list[str], tags: list[str]) -> None:
        self.ports.append({k: getattr(port, k) for k in _PORT_COLUMNS})
        self.groups.extend({"port_id": port.id, "security_group_id": g} for g in groups)
        self.tags.extend({"resource_id": port.id, "tag": tag} for tag in tags)
        self.port_groups[port.id] = sorted(groups)
        self.port_tags[port.id] = tags

    def flush(self) -> None:
        """Insert what is buffered: one (executemany) statement per table, parents first."""
        if self._session is not None:
            self._session.flush()  # e.g. a default security group just created
        for stmt, rows in ((_INS_PORT, self.ports), (_INS_IP, self.ips),
                           (_INS_PSG, self.groups), (_INS_TAG, self.tags)):
            if rows and self.raw is not None:
                self._driver(stmt).insert(self.raw, rows)
            elif rows:
                self.conn.execute(stmt, rows)
        self.ports, self.ips, self.groups, self.tags = [], [], [], []

    def view(self, port: _PortRow, admin: bool) -> dict[str, Any]:
        ips = self.port_ips.get(port.id, [])
        if len(ips) > 1:
            ips = sorted(ips, key=lambda x: (x["subnet_id"],
                                             ipaddress.ip_address(x["ip_address"])))
        return views.port(port, ips, self.port_groups.get(port.id, []),  # type: ignore[arg-type]
                          self.port_tags.get(port.id, []), admin)
