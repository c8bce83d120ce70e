"""The Linux data plane: Neutron's linuxbridge, DHCP, L3 and metadata agents in one driver.

Contract calls (from API threads, after each commit) only record what changed (port views go
into :class:`Model` at once; calls with partial views — a router or group id — make the worker
re-read the model from the control plane first). One worker thread converges the host with the
model, component by component, in this order:

* :mod:`.firewall` — security groups and anti-spoofing in onestack's own nft tables (first, so
  a new port's filter is loaded before its tap enters a bridge);
* :mod:`.l2` — a bridge per network, VXLAN devices for tenant segments, flat networks on
  their physical network's bridge, guests' taps enslaved (at once through ``plug`` when the
  port's filter is loaded);
* :mod:`.dhcp` — a dnsmasq per network in ``qdhcp-<net>``, static leases from the model;
* :mod:`.l3` — a ``qrouter-<id>`` namespace per router: interfaces, gateway, SNAT, floating
  IPs, extra routes;
* :mod:`.metadata` — the proxy from ``169.254.169.254`` to the metadata service.

A change after a quiet spell is converged at once; during a burst (changes within
``BURST_GAP`` of the last pass) the worker gathers them for ``COALESCE`` seconds so one pass
serves many, unless someone waits (``plug``: a guest's start). A pass that fails is logged and
retried with the same dirty set (backoff up to 5 s); a full reconcile (on start and every
``sync_interval`` seconds) re-reads the model, converges everything and removes what onestack
made that the model no longer wants. The worker also reports which ports are wired (ACTIVE;
``wait_plugged``) and the agents' heartbeats.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from typing import Any, Protocol

from onestack.drivers.network.base import Binding, ControlPlane, DesiredState, NetworkDriver
from onestack.drivers.network.linux import names
from onestack.drivers.network.linux.host import Host
from onestack.drivers.network.linux.model import Dirty, Model
from onestack.drivers.network.linux.options import LinuxOptions

LOG = logging.getLogger(__name__)

#: A change within this many seconds of the end of the last pass is part of a burst: the
#: worker then waits ``COALESCE`` seconds for more before its next pass.
BURST_GAP = 0.1
COALESCE = 0.25

#: Ports of the data plane's own devices whose status it reports wherever they are bound.
REPORTED = ("network:router_interface", "network:router_gateway", "network:dhcp")


#: How many deleted port ids ``wait_plugged`` remembers.
DELETED_KEPT = 4096


class Component(Protocol):
    """One part of the data plane (L2, firewall, DHCP, L3, metadata)."""

    #: The agent this component is (``agent_type`` in ``/v2.0/agents``), or "".
    agent_type: str

    def apply(self, model: Model, dirty: Dirty) -> None:
        """Converge the host for what ``dirty`` names (everything when ``dirty.all``).
        Idempotent; raises on host trouble (the pass is retried)."""

    def cleanup(self, model: Model) -> None:
        """Remove what this component made on the host that ``model`` no longer wants
        (after a full sync: stale namespaces, devices, rules, processes)."""

    def wired(self, model: Model) -> set[str]:
        """Ids of ports this component has wired on the host now (for port status)."""

    def stop(self) -> None:
        """Stop processes/threads this component runs in-process (not host state)."""


class LinuxDriver(NetworkDriver):
    """The real data plane on one Linux host. See the module documentation."""

    name = "linux"
    #: Contract calls only update the in-memory model and wake the worker.
    nonblocking_updates = True

    def __init__(self, options: LinuxOptions, host: Host | None = None,
                 components: list[Component] | None = None) -> None:
        self.options = options
        self.host = host or Host()
        self.model = Model()
        self.control: ControlPlane | None = None
        self._dirty = Dirty()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._statuses: dict[str, str] = {}
        #: Port views received while the model is re-read (None: not re-reading).
        self._newer_ports: dict[str, dict[str, Any] | None] | None = None
        #: Ports wired on the host as of the last pass (``wait_plugged``).
        self._wired: set[str] = set()
        #: Ids of ports deleted lately (the newest ``DELETED_KEPT``): a wait for one of them
        #: ends at once instead of at its timeout (a server deleted while it builds).
        self._deleted: OrderedDict[str, None] = OrderedDict()
        #: Seconds the last pass spent in each component (debugging, benchmarks).
        self.timings: dict[str, float] = {}
        self._last_sync = 0.0
        self._last_beat = 0.0
        self.components: list[Component] = (components if components is not None
                                            else self._default_components())

    def _default_components(self) -> list[Component]:
        """In the order a pass runs them: the firewall has a new port's rules loaded before
        L2 puts its tap into the bridge."""
        from onestack.drivers.network.linux.dhcp import Dhcp
        from onestack.drivers.network.linux.firewall import Firewall
        from onestack.drivers.network.linux.l2 import L2
        from onestack.drivers.network.linux.l3 import L3
        from onestack.drivers.network.linux.metadata import MetadataProxy
        return [Firewall(self.host, self.options), L2(self.host, self.options),
                Dhcp(self.host, self.options), L3(self.host, self.options),
                MetadataProxy(self.host, self.options)]

    # ------------------------------------------------------------------ lifecycle
    def start(self, control: ControlPlane) -> None:
        self.control = control
        self.options.state_dir.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="onestack-dataplane",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=30)
        for c in self.components:
            c.stop()

    _refresh = False

    _urgent = False

    def _mark(self, refresh: bool = True, urgent: bool = False, **ids: Any) -> None:
        """Mark ids dirty and wake the worker; ``refresh``: re-read the model first;
        ``urgent``: someone waits for it (a guest's start), so no gathering of a burst."""
        with self._cond:
            waiting = not self._dirty or (urgent and not self._urgent)
            self._urgent = self._urgent or urgent
            self._refresh = self._refresh or refresh
            for key, values in ids.items():
                if key == "all":
                    self._dirty.all = True
                else:
                    getattr(self._dirty, key).update(values)
            if waiting:
                self._cond.notify_all()

    def wait_idle(self, timeout: float = 30.0) -> bool:
        """Block until the worker has converged everything marked so far (tests, bench)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._dirty or self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    _busy = False
    _last_pass_end = 0.0

    # ------------------------------------------------------------------ the worker
    def _run(self) -> None:
        backoff = 0.0
        while True:
            with self._cond:
                while not self._dirty and not self._stopping and not self._due():
                    self._cond.wait(self._sleep_for())
                if self._stopping:
                    return
                if time.monotonic() - self._last_pass_end < BURST_GAP:
                    # Changes keep coming (a burst of creates): gather them for a moment so
                    # that one pass serves many; after a quiet spell a change goes at once.
                    until = time.monotonic() + COALESCE
                    while not self._stopping and not self._urgent \
                            and (left := until - time.monotonic()) > 0:
                        self._cond.wait(left)
                    if self._stopping:
                        return
                dirty, self._dirty = self._dirty, Dirty()
                self._urgent = False
                self._busy = True
            try:
                self._pass(dirty)
                backoff = 0.0
            except Exception:  # noqa: BLE001 - host trouble: log, retry the same work
                LOG.exception("data plane pass failed; retrying")
                backoff = min(5.0, backoff * 2 or 0.2)
                with self._cond:
                    self._dirty.merge(dirty)
            finally:
                with self._cond:
                    self._busy = False
                    self._last_pass_end = time.monotonic()
                    self._cond.notify_all()
            if backoff:
                time.sleep(backoff)

    def _due(self) -> bool:
        now = time.monotonic()
        return (now - self._last_sync >= self.options.sync_interval
                or now - self._last_beat >= self.options.heartbeat_interval)

    def _sleep_for(self) -> float:
        now = time.monotonic()
        return max(0.05, min(self._last_sync + self.options.sync_interval,
                             self._last_beat + self.options.heartbeat_interval) - now)

    def _pass(self, dirty: Dirty) -> None:
        now = time.monotonic()
        if now - self._last_beat >= self.options.heartbeat_interval and self.control:
            self.control.agent_heartbeat([c.agent_type for c in self.components
                                          if c.agent_type])
            self._last_beat = now
        full_due = now - self._last_sync >= self.options.sync_interval
        if self.control is not None and (full_due or self._refresh):
            # The contract's calls may carry partial views (an id only): the model is
            # re-read from the control plane once per pass, which coalesces bursts.
            self._refresh = False
            self._reread()
        if full_due:
            dirty = Dirty(all=True)
        full = dirty.all
        if dirty:
            self._ensure_dhcp_ports(dirty)
        model = self.model.snapshot()
        if dirty:
            for c in self.components:
                started = time.perf_counter()
                c.apply(model, dirty)
                self.timings[type(c).__name__] = time.perf_counter() - started
            if full:
                for c in self.components:
                    c.cleanup(model)
                self._last_sync = now
            self._report_ports(model)

    def _reread(self) -> None:
        """Replace the model with the control plane's, keeping the port updates that arrive
        while it is read (the database read may predate them)."""
        assert self.control is not None
        with self.model.lock:
            self._newer_ports = {}
        try:
            state = self.control.desired_state()
        finally:
            with self.model.lock:
                newer, self._newer_ports = self._newer_ports, None
        self.model.replace(state, newer)

    def _ensure_dhcp_ports(self, dirty: Dirty) -> None:
        """Networks with DHCP-enabled subnets get their ``network:dhcp`` port from the
        control plane (as Neutron's DHCP agent asks the server for one)."""
        if self.control is None:
            return
        model = self.model.snapshot()  # (API threads keep changing the live one)
        ids = set(model.networks) if dirty.all else dirty.networks
        for net_id in ids:
            if net_id in model.networks and model.dhcp_subnets(net_id) \
                    and model.dhcp_port(net_id) is None:
                port = self.control.ensure_dhcp_port(net_id)
                if port is not None:
                    with self.model.lock:
                        self.model.ports[port["id"]] = port

    def _report_ports(self, model: Model) -> None:
        """Tell the control plane which ports changed between wired and not."""
        wired: set[str] = set()
        for c in self.components:
            wired |= c.wired(model)
        with self._cond:
            self._wired = wired
            self._cond.notify_all()
        if self.control is None:
            return
        for pid, port in model.ports.items():
            owner = str(port.get("device_owner") or "")
            if (port.get("binding:host_id") != self.options.host and owner not in REPORTED
                    and pid not in wired):
                continue
            status = "ACTIVE" if pid in wired and port.get("admin_state_up", True) else "DOWN"
            # What this process last reported, else (after a start) what the database says.
            known = self._statuses.get(pid, port.get("status"))
            if known != status:
                self.control.set_port_status(pid, status)
            self._statuses[pid] = status
        for pid in set(self._statuses) - set(model.ports):
            del self._statuses[pid]

    # ------------------------------------------------------------------ the contract
    def sync(self, state: DesiredState) -> None:
        self.model.replace(state)
        self._last_sync = 0.0 if self.control is None else self._last_sync
        self._mark(False, all=True)

    # Calls other than the port ones may carry partial views (an id only, a subnet without
    # its network): they only mark what changed; the worker re-reads the model first.
    def network_updated(self, network: dict[str, Any], subnets: list[dict[str, Any]]) -> None:
        self._mark(networks={network["id"]})

    def network_deleted(self, network_id: str) -> None:
        with self.model.lock:
            self.model.networks.pop(network_id, None)
        self._mark(networks={network_id})

    def bind_port(self, port: dict[str, Any], host: str) -> Binding | None:
        net = self.model.networks.get(port["network_id"], {})
        if net.get("provider:network_type") == "vlan":
            # No 8021q on this kernel: binding_failed, never silently.
            LOG.warning("port %s cannot be bound: network %s is a VLAN network, which this "
                        "data plane keeps in the model only (no 8021q)", port["id"],
                        port["network_id"])
            return None
        return Binding("bridge", {"port_filter": True, "connectivity": "l2",
                                  "bridge_name": names.bridge(port["network_id"])},
                       active=False)

    def port_updated(self, port: dict[str, Any]) -> None:
        with self.model.lock:
            self.model.ports[port["id"]] = port
            if self._newer_ports is not None:
                self._newer_ports[port["id"]] = port
        status = port.get("status")
        if status is not None and self._statuses.get(port["id"], status) != status:
            # The control plane set the status itself (a bind or an unbind writes DOWN): what
            # this process last reported no longer holds, so the next pass reports again (a
            # port moved quickly from one guest to another would otherwise stay DOWN).
            self._statuses.pop(port["id"], None)
        # A guest's port just bound here is about to be plugged (its tap comes next): load
        # its filter now, without gathering a burst, so the plug finds it ready.
        urgent = (port.get("binding:host_id") == self.options.host
                  and str(port.get("device_owner") or "").startswith("compute:")
                  and port["id"] not in self._wired)
        self._mark(False, urgent=urgent, ports={port["id"]}, networks={port["network_id"]},
                   security_groups=set(port.get("security_groups") or ()))

    def port_deleted(self, port: dict[str, Any]) -> None:
        with self.model.lock:
            old = self.model.ports.pop(port["id"], None) or port
            if self._newer_ports is not None:
                self._newer_ports[port["id"]] = None
            routers = {str(f["router_id"]) for f in self.model.floating_ips.values()
                       if f.get("port_id") == port["id"] and f.get("router_id")}
        with self._cond:
            self._deleted[port["id"]] = None
            while len(self._deleted) > DELETED_KEPT:
                self._deleted.popitem(last=False)
            self._cond.notify_all()
        self._mark(ports={port["id"]}, networks={old.get("network_id", "")},
                   security_groups=set(old.get("security_groups") or ()), routers=routers)

    def security_group_updated(self, group: dict[str, Any]) -> None:
        self._mark(security_groups={group["id"]})

    def router_updated(self, router: dict[str, Any], interfaces: list[dict[str, Any]],
                       floating_ips: list[dict[str, Any]]) -> None:
        self._mark(routers={router["id"]})

    def router_deleted(self, router_id: str) -> None:
        with self.model.lock:
            self.model.routers.pop(router_id, None)
        self._mark(routers={router_id})

    # ------------------------------------------------------------------ VIF plugging
    def plug(self, port: dict[str, Any], tap: str) -> None:
        """The hypervisor driver's hook: its tap for ``port`` exists; enslave it now (the
        worker retries when this host trouble or a model not yet refreshed prevents it)."""
        from onestack.drivers.network.linux.firewall import Firewall, filtered
        from onestack.drivers.network.linux.l2 import L2
        pid = str(port.get("port_id") or port.get("id"))
        view = self.model.ports.get(pid) or {**port, "id": pid}
        unfiltered_yet = any(isinstance(c, Firewall) and pid not in c.marks
                             and filtered(view, self.model) for c in self.components)
        for c in self.components:
            # A port whose filter is not loaded yet waits for the pass (firewall, then L2).
            if isinstance(c, L2) and not unfiltered_yet:
                try:
                    c.plug(view, self.model.networks.get(str(view.get("network_id"))))
                except Exception:  # noqa: BLE001 - the worker's pass retries it
                    LOG.warning("plugging %s failed; the next pass retries", tap,
                                exc_info=True)
        self._mark(False, urgent=True, ports={pid})

    def wait_plugged(self, port_ids: list[str], timeout: float) -> bool:
        """Block until every port is wired on the host (True) or ``timeout`` passes (False):
        the in-process form of Neutron's ``network-vif-plugged`` event to Nova. False at
        once when one of the ports is deleted (it will never be wired)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not set(port_ids) <= self._wired:
                left = deadline - time.monotonic()
                if left <= 0 or self._stopping or any(p in self._deleted for p in port_ids):
                    return False
                self._cond.wait(min(left, 1.0))
        return True

    def unplug(self, port: dict[str, Any], tap: str) -> None:
        """The guest's tap is going away."""
        self._mark(False, ports={str(port.get("port_id") or port.get("id"))})

    def agents(self) -> list[dict[str, Any]]:
        from onestack.drivers.network.noop import AGENTS
        running = {c.agent_type for c in self.components if c.agent_type}
        return [dict(a) for a in AGENTS if a["agent_type"] in running]
