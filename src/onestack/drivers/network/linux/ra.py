"""IPv6 router advertisements of the Linux data plane: one radvd per router namespace.

Neutron's L3 agent runs radvd in ``qrouter-<id>`` for the router's internal ports on IPv6
subnets whose ``ipv6_ra_mode`` is set; onestack does the same (``L3`` calls
:meth:`Radvd.ensure` after converging a router and :meth:`Radvd.stop` when it goes):

* ``slaac``: the prefix with the autonomous flag (guests make their EUI-64 address, the one
  the network service assigned);
* ``dhcpv6-stateless``: autonomous prefix plus the other-configuration flag (options by
  DHCPv6, see ``dhcp.py``);
* ``dhcpv6-stateful``: the managed flag, prefix on-link but not autonomous (addresses by
  DHCPv6).

The subnet's IPv6 DNS servers go out as RDNSS, the network's MTU as the link MTU. State lives
in ``<state_dir>/ra/<router>/`` (``radvd.conf``, ``pid``, ``log``); a changed configuration is
rewritten and radvd reloads it on SIGHUP. radvd daemonizes and outlives onestack; after a
restart it is adopted by its pid file and command line (never a foreign process). Without
the ``radvd`` program routers send no advertisements (logged once).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import shutil
import signal
import time
from pathlib import Path

from onestack.drivers.network.linux import names
from onestack.drivers.network.linux.host import Host, HostError, runs
from onestack.drivers.network.linux.model import Model

LOG = logging.getLogger(__name__)

RA_MODES = ("slaac", "dhcpv6-stateful", "dhcpv6-stateless")
#: Neutron's defaults (``min_rtr_adv_interval``/``max_rtr_adv_interval``).
MIN_INTERVAL = 30
MAX_INTERVAL = 100


def render_radvd(model: Model, router_id: str) -> str:
    """radvd's configuration for the router (empty: nothing to advertise)."""
    blocks = []
    for port in sorted(model.router_interfaces(router_id), key=lambda p: str(p["id"])):
        prefixes: list[tuple[str, str]] = []
        dns: list[str] = []
        for fixed in port.get("fixed_ips") or ():
            subnet = model.subnets.get(str(fixed.get("subnet_id"))) or {}
            mode = subnet.get("ipv6_ra_mode")
            if subnet.get("ip_version") != 6 or mode not in RA_MODES:
                continue
            try:
                net = ipaddress.ip_network(str(subnet["cidr"]), strict=False)
            except (KeyError, ValueError):
                continue
            prefixes.append((str(net), str(mode)))
            dns += [str(d) for d in subnet.get("dns_nameservers") or () if ":" in str(d)]
        if not prefixes:
            continue
        modes = {m for _, m in prefixes}
        network = model.networks.get(str(port.get("network_id"))) or {}
        lines = [f"interface {names.router_interface(str(port['id']))}", "{",
                 "    AdvSendAdvert on;",
                 f"    MinRtrAdvInterval {MIN_INTERVAL};",
                 f"    MaxRtrAdvInterval {MAX_INTERVAL};"]
        if network.get("mtu"):
            lines.append(f"    AdvLinkMTU {int(network['mtu'])};")
        if "dhcpv6-stateful" in modes:
            lines.append("    AdvManagedFlag on;")
        if "dhcpv6-stateless" in modes:
            lines.append("    AdvOtherConfigFlag on;")
        for cidr, mode in prefixes:
            auto = "off" if mode == "dhcpv6-stateful" else "on"
            lines += [f"    prefix {cidr}", "    {", "        AdvOnLink on;",
                      f"        AdvAutonomous {auto};", "    };"]
        if dns:
            lines += [f"    RDNSS {' '.join(dict.fromkeys(dns))}", "    {", "    };"]
        lines.append("};")
        blocks.append("\n".join(lines) + "\n")
    return "".join(blocks)


class Radvd:
    """radvd processes of router namespaces (see the module documentation)."""

    def __init__(self, host: Host, state_dir: Path) -> None:
        self.host = host
        self.base = state_dir / "ra"
        self.binary = shutil.which("radvd")
        self._warned = False

    def _dir(self, router_id: str) -> Path:
        return self.base / router_id

    def _ours(self, pid: int, router_id: str) -> bool:
        return runs(pid, "radvd", str(self._dir(router_id) / "radvd.conf"))

    def pid(self, router_id: str) -> int | None:
        """The router's running radvd (its pid file, verified by the command line)."""
        with contextlib.suppress(OSError, ValueError):
            pid = int((self._dir(router_id) / "pid").read_text().strip())
            if self._ours(pid, router_id):
                return pid
        return None

    def ensure(self, model: Model, router_id: str, namespace: str) -> None:
        """radvd runs in ``namespace`` with the router's current configuration (or none runs
        when there is nothing to advertise)."""
        conf_text = render_radvd(model, router_id)
        if not conf_text:
            self.stop(router_id)
            return
        if self.binary is None:
            if not self._warned:
                LOG.warning("radvd is not installed: routers send no IPv6 router "
                            "advertisements")
                self._warned = True
            return
        d = self._dir(router_id)
        d.mkdir(parents=True, exist_ok=True)
        conf = d / "radvd.conf"
        changed = not conf.exists() or conf.read_text() != conf_text
        if changed:
            tmp = conf.with_suffix(".tmp")
            tmp.write_text(conf_text)
            os.replace(tmp, conf)
        pid = self.pid(router_id)
        if pid is not None:
            if changed:
                os.kill(pid, signal.SIGHUP)
            return
        with contextlib.suppress(FileNotFoundError):
            (d / "pid").unlink()
        try:
            self.host.run([self.binary, "-C", str(conf), "-p", str(d / "pid"), "-m", "logfile",
                           "-l", str(d / "log")], netns=namespace)
        except HostError as exc:
            LOG.warning("radvd of router %s did not start: %s", router_id, exc)
            return
        deadline = time.monotonic() + 5.0
        while self.pid(router_id) is None and time.monotonic() < deadline:
            time.sleep(0.02)

    def stop(self, router_id: str) -> None:
        """Stop the router's radvd (if this data plane started one) and forget its state."""
        pid = self.pid(router_id)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 5.0
            while self._ours(pid, router_id) and time.monotonic() < deadline:
                time.sleep(0.02)
            if self._ours(pid, router_id):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self._dir(router_id), ignore_errors=True)

    def routers(self) -> set[str]:
        """Routers with radvd state here (for cleanup)."""
        try:
            return {p.name for p in self.base.iterdir() if p.is_dir()}
        except FileNotFoundError:
            return set()
