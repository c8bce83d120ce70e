"""Shared host wiring of the Linux data plane: veth pairs into namespaces, and the ledger of
what onestack owns.

DHCP servers and routers live in their own namespaces and reach their network's bridge by a
veth pair (root end ``tap<port[:11]>`` enslaved to the bridge, namespace end ``ns-``/``qr-``/
``qg-`` + port[:11]) — Neutron's ``BridgeInterfaceDriver``. The :class:`Ledger` records every
namespace onestack creates *before* creating it, so a cleanup after a crash finds everything
this cloud made and nothing another process made (network namespace names are global).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from onestack.drivers.network.linux.host import Host


def ensure_namespace(host: Host, ledger: Ledger, name: str) -> None:
    """Create namespace ``name`` (recorded in ``ledger`` first) with loopback up."""
    if name in host.netns_list():
        return
    ledger.add(name)
    host.run_top(["ip", "netns", "add", name])
    host.run(["ip", "link", "set", "lo", "up"], netns=name)


def delete_namespace(host: Host, ledger: Ledger, name: str) -> None:
    """Delete namespace ``name`` (its devices go with it) and forget it."""
    if name in host.netns_list():
        host.run_top(["ip", "netns", "delete", name], check=False)
    ledger.discard(name)


def plug_veth(host: Host, *, bridge: str, root_end: str, netns: str, ns_end: str,
              mac: str | None = None, mtu: int | None = None) -> None:
    """Make (or repair) the veth ``root_end`` (in ``bridge``) <-> ``ns_end`` (in ``netns``).

    Idempotent: an existing pair is kept; a half-made one (crash between steps) is redone.
    """
    ns_links = host.links(netns)
    if ns_end in ns_links and host.link_exists(root_end):
        cmds = []
    else:
        if host.link_exists(root_end):
            host.run(["ip", "link", "del", "dev", root_end], check=False)
        if ns_end in ns_links:
            host.run(["ip", "link", "del", "dev", ns_end], netns=netns, check=False)
        cmds = [f"link add {root_end} type veth peer name {ns_end} netns {netns}"]
    cmds.append(f"link set dev {root_end} master {bridge} up")
    if mtu:
        cmds.append(f"link set dev {root_end} mtu {int(mtu)}")
    host.ip_batch(cmds)
    ns_cmds = []
    if mac:
        ns_cmds.append(f"link set dev {ns_end} address {mac}")
    if mtu:
        ns_cmds.append(f"link set dev {ns_end} mtu {int(mtu)}")
    ns_cmds.append(f"link set dev {ns_end} up")
    host.ip_batch(ns_cmds, netns=netns)


_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


class Ledger:
    """Names of host objects this cloud created, persisted in ``path`` (JSON list).

    Several components keep their own ``Ledger`` on the same file: every change re-reads the
    file under a lock shared by all instances of that path, so none overwrites another's.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        with _LOCKS_LOCK:
            self._lock = _LOCKS.setdefault(path.resolve(), threading.Lock())

    def _load(self) -> set[str]:
        try:
            return set(json.loads(self.path.read_text()))
        except (FileNotFoundError, ValueError):
            return set()

    def __contains__(self, name: object) -> bool:
        with self._lock:
            return name in self._load()

    def names(self, prefix: str = "") -> set[str]:
        with self._lock:
            return {n for n in self._load() if n.startswith(prefix)}

    def add(self, name: str) -> None:
        with self._lock:
            names = self._load()
            if name not in names:
                names.add(name)
                self._save(names)

    def discard(self, name: str) -> None:
        with self._lock:
            names = self._load()
            if name in names:
                names.discard(name)
                self._save(names)

    def _save(self, names: set[str]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(sorted(names)))
        os.replace(tmp, self.path)
