"""The DHCP agent of the Linux data plane: one dnsmasq per network, in ``qdhcp-<net>``.

For every network with DHCP-enabled subnets and a ``network:dhcp`` port (the driver asks the
control plane for that port before this component runs), :class:`Dhcp` makes

* the namespace ``qdhcp-<net>`` (recorded in the shared :class:`~.wiring.Ledger` first);
* a veth ``tap<port[:11]>`` (in the network's bridge) <-> ``ns-<port[:11]>`` (in the
  namespace) with the DHCP port's MAC and fixed IPs, plus ``169.254.169.254/32`` when the
  network is *isolated* (no router on its IPv4 subnets: the metadata proxy listens there);
* a dnsmasq started with ``ip netns exec`` that daemonizes (it outlives onestack) and serves
  static leases only: the hosts file maps every port's MAC to its fixed IPs, the options file
  carries per subnet the router, DNS servers and classless static routes.

State lives in ``<state_dir>/dhcp/<net>/`` (``pid``, ``host``, ``opts``, ``leases``). A model
change rewrites the files atomically and sends SIGHUP (dnsmasq rereads the hosts and options
files); a change of dnsmasq's command line (subnets, MTU, device) restarts it. After a restart
of onestack the running dnsmasq is adopted: found by its pid file (or, failing that, by
scanning ``/proc`` for the command line naming this network's hosts file) and verified by its
command line, so a second one is never started and a foreign process is never signalled.

IPv6 subnets are served as Neutron's agent serves them: ``dhcpv6-stateful`` (or no IPv6 mode)
with a static DHCPv6 range and ``[address]`` host entries, ``dhcpv6-stateless`` with options
only, ``slaac`` not at all (router advertisements come from the router, see ``l3.py``).

Gaps (knowingly): DNS is off (``--port=0``); no ``extra_dhcp_opts``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from onestack.config import PathIn
from onestack.drivers.network.linux import names
from onestack.drivers.network.linux.host import Host, process_argv, runs
from onestack.drivers.network.linux.model import ROUTER_INTERFACE_OWNERS, Dirty, Model, View
from onestack.drivers.network.linux.options import LinuxOptions
from onestack.drivers.network.linux.wiring import (
    Ledger,
    delete_namespace,
    ensure_namespace,
    plug_veth,
)

LOG = logging.getLogger(__name__)

METADATA_IP = "169.254.169.254"
METADATA_CIDR = METADATA_IP + "/32"


# ---------------------------------------------------------------------- rendering (pure)
def host_name(ip: str) -> str:
    """The host name a port's address gets: ``host-10-0-0-5`` (``:`` -> ``-`` for IPv6)."""
    return "host-" + ip.replace(".", "-").replace(":", "-")


def v6_mode(subnet: View) -> str | None:
    """How dnsmasq serves an IPv6 subnet, as Neutron's DHCP agent does: ``stateful``
    (addresses and options: ``dhcpv6-stateful``, or neither IPv6 mode set), ``stateless``
    (options only) or None (``slaac``: the router's advertisements do it all)."""
    address_mode = subnet.get("ipv6_address_mode")
    if address_mode == "dhcpv6-stateless":
        return "stateless"
    if address_mode == "dhcpv6-stateful" or (address_mode is None
                                             and subnet.get("ipv6_ra_mode") is None):
        return "stateful"
    return None


def served_subnets(model: Model, network_id: str) -> list[View]:
    """The network's subnets dnsmasq serves (DHCP enabled; IPv4, or IPv6 with a DHCPv6
    mode), in a stable order."""
    return sorted((s for s in model.dhcp_subnets(network_id)
                   if s.get("ip_version", 4) == 4 or v6_mode(s) is not None),
                  key=lambda s: str(s["id"]))


def render_hosts(model: Model, network_id: str, domain: str) -> str:
    """The ``--dhcp-hostsfile``: ``mac,host-<ip>.<domain>,ip`` for every fixed IP of every
    port of the network in a served subnet (the DHCP port itself excluded)."""
    served = {s["id"]: s for s in served_subnets(model, network_id)}
    lines = []
    for port in sorted(model.ports_of(network_id), key=lambda p: str(p["id"])):
        if port.get("device_owner") == "network:dhcp" or not port.get("mac_address"):
            continue
        mac = str(port["mac_address"]).lower()
        for fixed in port.get("fixed_ips") or ():
            subnet = served.get(fixed.get("subnet_id"))
            if subnet is None or not fixed.get("ip_address"):
                continue
            ip = str(fixed["ip_address"])
            name = host_name(ip) + (f".{domain}" if domain else "")
            if subnet.get("ip_version", 4) == 4:
                lines.append(f"{mac},{name},{ip}")
            elif v6_mode(subnet) == "stateful":
                lines.append(f"{mac},{name},[{ip}]")
            else:  # stateless: options only, the address comes from SLAAC
                lines.append(f"{mac},{name}")
    return "".join(line + "\n" for line in lines)


def _port_ip_in(port: View | None, subnet_id: str) -> str | None:
    for fixed in (port or {}).get("fixed_ips") or ():
        if fixed.get("subnet_id") == subnet_id and fixed.get("ip_address"):
            return str(fixed["ip_address"])
    return None


def render_opts(model: Model, network_id: str, dns_servers: list[str]) -> str:
    """The ``--dhcp-optsfile``: per served subnet (tag ``subnet-<id>``) the router (empty
    when the subnet has no gateway, so dnsmasq sends none), the DNS servers (the subnet's,
    else ``dns_servers``, else none) and classless static routes (options 121 and 249):
    the subnet's host routes, the metadata address via the DHCP port when the network is
    isolated, and then the default route too (clients ignore option 3 when 121 is there)."""
    dhcp_port = model.dhcp_port(network_id)
    isolated = model.isolated(network_id)
    out = []
    for subnet in served_subnets(model, network_id):
        tag = f"tag:subnet-{subnet['id']}"
        if subnet.get("ip_version", 4) == 6:
            # DHCPv6 has no router option (router advertisements give the route).
            servers6 = [d for d in subnet.get("dns_nameservers") or () if ":" in str(d)]
            if servers6:
                out.append(f"{tag},option6:dns-server" + "".join(f",[{d}]" for d in servers6))
            continue
        gateway = subnet.get("gateway_ip")
        out.append(f"{tag},option:router" + (f",{gateway}" if gateway else ""))
        servers = list(subnet.get("dns_nameservers") or ()) or list(dns_servers)
        out.append(f"{tag},option:dns-server" + "".join(f",{s}" for s in servers))
        routes: list[tuple[str, str]] = []
        for route in subnet.get("host_routes") or ():
            dest, hop = str(route.get("destination", "")), str(route.get("nexthop", ""))
            if dest and hop and ipaddress.ip_network(dest, strict=False).version == 4:
                routes.append((dest, hop))
        server_ip = _port_ip_in(dhcp_port, str(subnet["id"]))
        if isolated and server_ip and not any(d == METADATA_CIDR for d, _ in routes):
            routes.append((METADATA_CIDR, server_ip))
        if routes:
            if gateway and not any(d in ("0.0.0.0/0", "0.0.0.0/0.0.0.0") for d, _ in routes):
                routes.append(("0.0.0.0/0", str(gateway)))
            flat = "".join(f",{d},{h}" for d, h in routes)
            out.append(f"{tag},option:classless-static-route{flat}")
            out.append(f"{tag},249{flat}")
    return "".join(line + "\n" for line in out)


@dataclass(frozen=True)
class NetworkFiles:
    """Where one network's dnsmasq state lives."""

    dir: Path

    pid = PathIn("dir", "pid")
    hosts = PathIn("dir", "host")
    opts = PathIn("dir", "opts")
    leases = PathIn("dir", "leases")


def dnsmasq_args(model: Model, network_id: str, files: NetworkFiles, device: str,
                 options: LinuxOptions, run_as_root: bool = False) -> list[str]:
    """dnsmasq's command line for the network (argv, ``dnsmasq`` first)."""
    args = ["dnsmasq", "--no-hosts", "--no-resolv", f"--pid-file={files.pid}",
            f"--dhcp-hostsfile={files.hosts}", f"--dhcp-optsfile={files.opts}",
            f"--dhcp-leasefile={files.leases}", "--bind-dynamic", f"--interface={device}",
            "--except-interface=lo", "--port=0", "--conf-file=/dev/null",
            "--dhcp-authoritative"]
    lease = int(options.dhcp_lease_seconds)
    lease_text = "infinite" if lease < 0 else f"{lease}s"
    hosts = 0
    for subnet in served_subnets(model, network_id):
        net = ipaddress.ip_network(str(subnet["cidr"]), strict=False)
        if net.version == 6:
            args.append(f"--dhcp-range=set:subnet-{subnet['id']},{net.network_address},"
                        f"static,{net.prefixlen},{lease_text}")
            continue
        args.append(f"--dhcp-range=set:subnet-{subnet['id']},{net.network_address},static,"
                    f"{net.netmask},{lease_text}")
        hosts += net.num_addresses
    args.append(f"--dhcp-lease-max={max(16, min(hosts, 1 << 24))}")
    mtu = model.networks.get(network_id, {}).get("mtu")
    if mtu:
        args.append(f"--dhcp-option-force=option:mtu,{int(mtu)}")
    if options.dns_domain:
        args.append(f"--domain={options.dns_domain}")
    if run_as_root:
        args.append("--user=root")
    return args


def wanted_networks(model: Model) -> set[str]:
    """Networks that get a DHCP server: DHCP-enabled subnets and a DHCP port."""
    return {n for n in model.networks
            if model.dhcp_subnets(n) and model.dhcp_port(n) is not None}


# ---------------------------------------------------------------------- processes
def _is_our_dnsmasq(pid: int, files: NetworkFiles) -> bool:
    return runs(pid, "dnsmasq", f"--dhcp-hostsfile={files.hosts}")


def _alive(pid: int) -> bool:
    """Running and not a zombie (a daemon's parent may never reap it in a container)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return False
    return bool(fields) and fields[0] not in ("Z", "X")


def find_dnsmasq(files: NetworkFiles) -> int | None:
    """The pid of the network's running dnsmasq: the pid file, verified by its command line;
    else a scan of ``/proc`` for a dnsmasq naming this network's hosts file."""
    with contextlib.suppress(OSError, ValueError):
        pid = int(files.pid.read_text().strip())
        if _alive(pid) and _is_our_dnsmasq(pid, files):
            return pid
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            pid = int(entry.name)
            if _is_our_dnsmasq(pid, files) and _alive(pid):
                return pid
    return None


def _kill(pid: int, files: NetworkFiles, timeout: float = 5.0) -> None:
    """SIGTERM the (verified) dnsmasq and wait for it to go; SIGKILL after ``timeout``."""
    if not _is_our_dnsmasq(pid, files):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)
    if _alive(pid) and _is_our_dnsmasq(pid, files):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _write_if_changed(path: Path, text: str) -> bool:
    """Atomically replace ``path`` with ``text`` (mode 0644) unless it already says so."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.chmod(tmp, 0o644)
    os.replace(tmp, path)
    return True


def _world_traversable(path: Path) -> bool:
    """Whether an unprivileged process (dnsmasq drops to ``nobody``) can reach ``path``."""
    for part in [path, *path.parents]:
        try:
            if not os.stat(part).st_mode & stat.S_IXOTH:
                return False
        except FileNotFoundError:
            continue
    return True


# ---------------------------------------------------------------------- the component
class Dhcp:
    """Neutron's DHCP agent with dnsmasq (see the module documentation)."""

    agent_type = "DHCP agent"

    def __init__(self, host: Host, options: LinuxOptions) -> None:
        self.host = host
        self.options = options
        self.base = options.state_dir / "dhcp"
        #: network id -> (DHCP port id, dnsmasq pid) of networks converged by this process.
        self._up: dict[str, tuple[str, int]] = {}
        #: network id -> what its namespace, veth and addresses were last made from.
        self._wiring: dict[str, tuple[Any, ...]] = {}
        #: Seconds the last dnsmasq start / reload took (for the bench).
        self.last_start: float | None = None
        self.last_reload: float | None = None

    # -------------------------------------------------------------- helpers
    def ledger(self) -> Ledger:
        """The shared namespace ledger, read afresh (other components write it too)."""
        return Ledger(self.options.state_dir / "namespaces.json")

    def _top(self) -> Host:
        """A runner in this process's own namespaces, for ``ip netns add/delete``: run
        through ``ip netns exec <root side>`` (a private mount namespace) their bind mount
        under ``/run/netns`` would not be seen outside. The namespace names are global."""
        return Host(netns=None, timeout=self.host.timeout)

    def files(self, network_id: str) -> NetworkFiles:
        return NetworkFiles(self.base / network_id)

    def _scope(self, model: Model, dirty: Dirty) -> set[str]:
        """Networks to converge: dirty ones, those of dirty ports, and those a dirty router
        is attached to (isolation may have changed); with ``dirty.all``, all of them."""
        known = set(self._up) | self._state_networks()
        if dirty.all:
            return set(model.networks) | known
        nets = set(dirty.networks)
        for pid in dirty.ports:
            port = model.ports.get(pid)
            if port is not None:
                nets.add(str(port.get("network_id")))
        if dirty.routers:
            nets |= {str(p.get("network_id")) for p in model.ports.values()
                     if p.get("device_id") in dirty.routers
                     and p.get("device_owner") in ROUTER_INTERFACE_OWNERS}
        return nets

    def _state_networks(self) -> set[str]:
        try:
            return {p.name for p in self.base.iterdir() if p.is_dir()}
        except FileNotFoundError:
            return set()

    # -------------------------------------------------------------- contract
    def apply(self, model: Model, dirty: Dirty) -> None:
        """Converge the DHCP servers of the networks ``dirty`` names (see the module doc)."""
        wanted = wanted_networks(model)
        errors: list[Exception] = []
        for net_id in sorted(self._scope(model, dirty)):
            try:
                if net_id in wanted:
                    self._ensure(model, net_id, full=dirty.all)
                elif net_id in self._up or (self.base / net_id).is_dir():
                    self._teardown(net_id)
            except Exception as exc:  # noqa: BLE001 - converge the others, then raise
                LOG.warning("DHCP for network %s failed: %s", net_id, exc)
                errors.append(exc)
        if errors:
            raise errors[0]

    def cleanup(self, model: Model) -> None:
        """Stop dnsmasq, delete the namespace and state of networks no longer served; drop
        ``qdhcp-`` namespaces of the ledger no network wants."""
        wanted = wanted_networks(model)
        for net_id in (self._state_networks() | set(self._up)) - wanted:
            self._teardown(net_id)
        wanted_ns = {names.dhcp_namespace(n) for n in wanted}
        ledger = self.ledger()
        for ns in ledger.names("qdhcp-") - wanted_ns:
            delete_namespace(self._top(), ledger, ns)

    def wired(self, model: Model) -> set[str]:
        """DHCP ports whose veth is plugged and whose dnsmasq runs."""
        return {port_id for net_id, (port_id, pid) in self._up.items()
                if port_id in model.ports and _alive(pid)}

    def stop(self) -> None:
        """Nothing: dnsmasq keeps serving while onestack is down."""

    # -------------------------------------------------------------- one network
    def _ensure(self, model: Model, net_id: str, full: bool = True) -> None:
        network = model.networks[net_id]
        port = model.dhcp_port(net_id)
        assert port is not None
        ns = names.dhcp_namespace(net_id)
        device = names.dhcp_device(str(port["id"]))
        mtu = network.get("mtu")
        bridge = names.network_bridge(network, self.options.bridge_mappings)
        want = self._wanted_addresses(model, net_id, port)
        signature = (str(port["id"]), str(port.get("mac_address") or ""), mtu, bridge, want)
        if full or self._wiring.get(net_id) != signature:
            # The namespace, veth and addresses: checked on a full sync and whenever what
            # they depend on changed; a host-entry change only rewrites the files below.
            self._wiring.pop(net_id, None)
            ensure_namespace(self._top(), self.ledger(), ns)
            for stale in self.host.links(ns) - {"lo", device}:
                if stale.startswith("ns-"):
                    self.host.run(["ip", "link", "del", "dev", stale], netns=ns, check=False)
            plug_veth(self.host, bridge=bridge, root_end=names.tap(str(port["id"])), netns=ns,
                      ns_end=device, mac=str(port.get("mac_address") or "") or None,
                      mtu=int(mtu) if mtu else None)
            self._ensure_addresses(want, ns, device)
            self._wiring[net_id] = signature

        files = self.files(net_id)
        files.dir.mkdir(parents=True, exist_ok=True)
        changed = _write_if_changed(files.hosts,
                                    render_hosts(model, net_id, self.options.dns_domain))
        changed |= _write_if_changed(files.opts, render_opts(model, net_id,
                                                             self.options.dns_servers))
        args = dnsmasq_args(model, net_id, files, device, self.options,
                            run_as_root=not _world_traversable(files.dir))
        pid = find_dnsmasq(files)
        if pid is not None and process_argv(pid) != args:
            LOG.info("restarting dnsmasq of network %s (its command line changed)", net_id)
            _kill(pid, files)
            pid = None
        if pid is None:
            pid = self._start(ns, args, files)
        elif changed:
            began = time.monotonic()
            os.kill(pid, signal.SIGHUP)
            self.last_reload = time.monotonic() - began
        self._up[net_id] = (str(port["id"]), pid)

    @staticmethod
    def _wanted_addresses(model: Model, net_id: str, port: View) -> frozenset[str]:
        """The DHCP port's fixed IPs (prefix from the subnet), and the metadata address when
        the network is isolated."""
        want: set[str] = set()
        for fixed in port.get("fixed_ips") or ():
            subnet = model.subnets.get(str(fixed.get("subnet_id")))
            if subnet is None or not fixed.get("ip_address"):
                continue
            prefix = ipaddress.ip_network(str(subnet["cidr"]), strict=False).prefixlen
            want.add(str(ipaddress.ip_interface(f"{fixed['ip_address']}/{prefix}")))
        if model.isolated(net_id):
            want.add(METADATA_CIDR)
        return frozenset(want)

    def _ensure_addresses(self, want: frozenset[str], ns: str, device: str) -> None:
        """``want`` on ``device``; other global addresses removed."""
        have: set[str] = set()
        out = self.host.run(["ip", "-o", "addr", "show", "dev", device], netns=ns)
        for line in out.splitlines():
            words = line.split()
            if len(words) > 3 and words[2] in ("inet", "inet6") and "link" not in words:
                have.add(str(ipaddress.ip_interface(words[3])))
        cmds = [f"addr del {a} dev {device}" for a in sorted(have - want)]
        for a in sorted(want - have):
            extra = " nodad" if ipaddress.ip_interface(a).version == 6 else ""
            cmds.append(f"addr add {a} dev {device}{extra}")
        self.host.ip_batch(cmds, netns=ns)

    def _start(self, ns: str, args: list[str], files: NetworkFiles) -> int:
        with contextlib.suppress(FileNotFoundError):
            files.pid.unlink()
        began = time.monotonic()
        self.host.run(args, netns=ns)  # dnsmasq daemonizes once it is ready
        pid = find_dnsmasq(files)
        if pid is None:
            raise RuntimeError(f"dnsmasq in {ns} did not stay up")
        self.last_start = time.monotonic() - began
        LOG.info("dnsmasq %d serves %s (started in %.3f s)", pid, ns, self.last_start)
        return pid

    def _teardown(self, net_id: str) -> None:
        self._wiring.pop(net_id, None)
        files = self.files(net_id)
        pid = find_dnsmasq(files)
        if pid is not None:
            _kill(pid, files)
        ledger = self.ledger()
        ns = names.dhcp_namespace(net_id)
        if ns in ledger:
            delete_namespace(self._top(), ledger, ns)
        shutil.rmtree(files.dir, ignore_errors=True)
        self._up.pop(net_id, None)
