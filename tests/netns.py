"""Network namespaces for tests: make one, run code inside it, delete it.

Data-plane tests never touch the machine's own network: they run onestack, its clients and
any "external host" inside namespaces made here (loopback only, no uplink) and delete them
afterwards. :func:`in_netns` moves the *calling thread* into a namespace (``setns``), so
sockets it opens and processes it starts live there; it moves back on exit.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import subprocess
import uuid
from collections.abc import Iterator

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Run the block with this thread in namespace ``name`` (``/run/netns/<name>``)."""
    back = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(back)
    finally:
        os.close(target)
        os.close(back)


def netns_pids(name: str) -> list[int]:
    """Pids of processes living in namespace ``name``."""
    res = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True,
                         check=False)
    return [int(p) for p in res.stdout.split() if p.isdigit()]


@contextlib.contextmanager
def namespace(prefix: str) -> Iterator[str]:
    """A new namespace ``<prefix>-<random>`` with loopback up, deleted afterwards (with a
    SIGKILL to any process still inside, all of which this test started)."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        for pid in netns_pids(name):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, 9)
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)
