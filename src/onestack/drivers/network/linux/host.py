"""Running the host's tools (``ip``, ``bridge``, ``nft``, ``dnsmasq``) for the Linux driver.

One small seam between the data plane and the machine: every command the driver runs goes
through :class:`Host`, so tests can see them and errors carry the command and its stderr.
Commands are plain argument lists (never a shell). ``netns`` runs a command inside a network
namespace (``ip -n`` for ``ip``/``bridge``, ``nsenter --net`` for the others).
:attr:`Host.netns` names the namespace that plays "the host"
(the root side: bridges, taps, onestack's nft table); None, the default, is the namespace the
process runs in. Tests set it to a namespace they made, so nothing touches the machine.
Batches go through ``ip -batch -`` and ``nft -f -`` so one change is one process and nft rule
sets are replaced atomically.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

LOG = logging.getLogger(__name__)

#: Tools the Linux data plane needs on ``PATH``.
REQUIRED_TOOLS = ("ip", "bridge", "nft", "dnsmasq", "nsenter")


class HostError(RuntimeError):
    """A host command failed; ``argv``, ``returncode`` and ``stderr`` say which and why."""

    def __init__(self, argv: Sequence[str], returncode: int, stderr: str) -> None:
        super().__init__(f"{' '.join(argv)}: exit {returncode}: {stderr.strip()[:500]}")
        self.argv = list(argv)
        self.returncode = returncode
        self.stderr = stderr


def missing_requirements() -> list[str]:
    """Why the Linux data plane cannot run here (empty when it can): root and the tools."""
    reasons = []
    if os.geteuid() != 0:
        reasons.append("not root")
    reasons += [f"{tool} not found" for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    return reasons


def process_argv(pid: int) -> list[str]:
    """The command line of process ``pid`` (empty when it is gone or unreadable)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a]


def runs(pid: int, program: str, arg: str) -> bool:
    """Whether process ``pid`` runs ``program`` (its base name) with ``arg`` among its
    arguments: how a daemon onestack started is told from a recycled pid."""
    argv = process_argv(pid)
    return bool(argv) and os.path.basename(argv[0]) == program and arg in argv


class Host:
    """Runs commands on this host; keeps a bounded log of them for tests and debugging."""

    def __init__(self, netns: str | None = None, timeout: float = 30.0) -> None:
        #: The namespace of the root side (None: the one this process runs in).
        self.netns = netns
        self.timeout = timeout
        self._lock = threading.Lock()
        self.history: list[list[str]] = []

    def _remember(self, argv: list[str]) -> None:
        with self._lock:
            if len(self.history) > 2000:
                del self.history[:1000]
            self.history.append(argv)

    def run(self, argv: Sequence[str], *, netns: str | None = None, check: bool = True,
            input: str | None = None) -> str:
        """Run ``argv`` in ``netns`` (default: the root side, :attr:`netns`); its stdout.
        Raises :class:`HostError` on a non-zero exit when ``check``."""
        netns = netns or self.netns
        if netns and argv and argv[0] in ("ip", "bridge") and "netns" not in argv[1:2]:
            # ``ip -n``/``bridge -n`` only switch the network namespace: much cheaper than
            # ``ip netns exec``, which also makes a mount namespace and remounts /sys.
            full = [argv[0], "-n", netns, *argv[1:]]
        elif netns:
            # Only the network namespace, as ``ip -n`` does (``ip netns exec`` would also
            # make a mount namespace and remount /sys for every command).
            full = ["nsenter", f"--net=/run/netns/{netns}", *argv]
        else:
            full = list(argv)
        self._remember(full)
        try:
            proc = subprocess.run(full, input=input, capture_output=True, text=True,
                                  timeout=self.timeout, check=False)
        except subprocess.TimeoutExpired as exc:
            raise HostError(full, -1, f"timed out after {self.timeout} s") from exc
        if check and proc.returncode != 0:
            raise HostError(full, proc.returncode, proc.stderr)
        return proc.stdout

    def run_top(self, argv: Sequence[str], *, check: bool = True) -> str:
        """Run ``argv`` in the namespaces this process runs in, never inside the root side:
        ``ip netns add/delete`` must (``ip netns exec`` gives its command a private mount
        namespace, so a namespace made there would exist only for that command)."""
        full = list(argv)
        self._remember(full)
        try:
            proc = subprocess.run(full, capture_output=True, text=True, timeout=self.timeout,
                                  check=False)
        except subprocess.TimeoutExpired as exc:
            raise HostError(full, -1, f"timed out after {self.timeout} s") from exc
        if check and proc.returncode != 0:
            raise HostError(full, proc.returncode, proc.stderr)
        return proc.stdout

    def ip_batch(self, commands: Sequence[str], *, netns: str | None = None,
                 force: bool = False) -> None:
        """Run ``ip`` commands (one per line, without the leading ``ip``) in one process;
        ``force`` goes on past failing lines (``ip -force``)."""
        if not commands:
            return
        argv = ["ip"] + (["-force"] if force else []) + ["-batch", "-"]
        self.run(argv, netns=netns, input="\n".join(commands) + "\n")

    def nft(self, script: str, *, netns: str | None = None) -> None:
        """Load an nft script atomically (``nft -f -``)."""
        self.run(["nft", "-f", "-"], netns=netns, input=script)

    # ------------------------------------------------------------------ reading
    def netns_list(self) -> set[str]:
        """Names of the network namespaces (``/run/netns``)."""
        base = Path("/run/netns")
        try:
            return {p.name for p in base.iterdir()}
        except FileNotFoundError:
            return set()

    def links(self, netns: str | None = None) -> set[str]:
        """Interface names in ``netns`` (default: the root side)."""
        netns = netns or self.netns
        if netns is None and sysfs_is_ours():
            try:
                return {p.name for p in Path("/sys/class/net").iterdir()}
            except FileNotFoundError:
                return set()
        return set(self.link_masters(netns))

    def link_masters(self, netns: str | None = None) -> dict[str, str | None]:
        """Interface name -> the bridge it is enslaved to (None if none), in ``netns``
        (default: the root side); one ``ip`` process."""
        out = self.run(["ip", "-o", "link", "show"], netns=netns or self.netns, check=False)
        table: dict[str, str | None] = {}
        for line in out.splitlines():
            parts = line.split(":", 2)
            if len(parts) < 3:
                continue
            words = parts[2].split()
            table[parts[1].strip().split("@", 1)[0]] = (
                words[words.index("master") + 1] if "master" in words[:-1] else None)
        return table

    def link_exists(self, name: str) -> bool:
        """Whether ``name`` exists on the root side (no process spawned when that is the
        namespace this process runs in and ``/sys`` shows it)."""
        if self.netns is None and sysfs_is_ours():
            return Path("/sys/class/net", name).exists()
        return name in self.links()

    def master_of(self, name: str) -> str | None:
        """The bridge ``name`` is enslaved to, on the root side (None if none)."""
        if self.netns is None and sysfs_is_ours():
            try:
                return os.path.basename(os.readlink(f"/sys/class/net/{name}/master"))
            except OSError:
                return None
        return self.link_masters().get(name)


def sysfs_is_ours() -> bool:
    """Whether ``/sys/class/net`` shows this thread's network namespace.

    sysfs shows the namespace of whoever mounted it, normally the machine's (that of PID 1).
    A process moved into another namespace with ``setns`` (as the data-plane tests run
    onestack) still sees the machine's devices there, so it asks the kernel over netlink
    (``ip``) instead.
    """
    try:
        return os.stat("/proc/thread-self/ns/net").st_ino == os.stat("/proc/1/ns/net").st_ino
    except OSError:
        return False
