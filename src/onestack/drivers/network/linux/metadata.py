"""The metadata proxy of the Linux data plane: ``http://169.254.169.254`` for guests, in-process.

Neutron runs a haproxy per router and per isolated network and a metadata agent behind them;
here one thread of onestack does both. Listening sockets are made *inside* the namespaces (a
short-lived helper thread enters the namespace with ``setns``, creates and binds the socket and
ends; the socket stays in that namespace) and served by one asyncio loop in one thread:

* every router: ``0.0.0.0:9697`` in ``qrouter-<id>`` (the L3 component redirects
  ``169.254.169.254:80`` arriving on ``qr-`` devices there). A router whose namespace does not
  exist yet is skipped and retried on the next pass; this component never creates one.
* every isolated network with a DHCP port: ``169.254.169.254:80`` in ``qdhcp-<net>`` (the DHCP
  component puts that address on the ``ns-`` device and a route to it in the leases).

A request's source address names the guest: the port of the model with that fixed IP, owned
by ``compute:*``, on the router's attached networks (or on that network). The request goes on
to the metadata service (``options.metadata_host:metadata_port``) with ``X-Instance-ID``
(the port's device), ``X-Tenant-ID``, ``X-Forwarded-For`` and ``X-Instance-ID-Signature``;
status, content type and body come back. Unknown addresses get 404. Bounds: 64 concurrent
connections, an 8 KiB request head, a 64 KiB request body, 10 s per step, 16 MiB answers.

A namespace deleted and made again (e.g. by the L3 component after a crash) is noticed by its
inode, and the socket is made again in the new one.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from onestack.drivers.network.linux import names
from onestack.drivers.network.linux.host import Host
from onestack.drivers.network.linux.model import Dirty, Model, View
from onestack.drivers.network.linux.options import LinuxOptions
from onestack.metadata.app import sign_instance_id

LOG = logging.getLogger(__name__)

ROUTER_PORT = 9697
METADATA_IP = "169.254.169.254"
MAX_CONNECTIONS = 64
MAX_HEAD = 8192
MAX_BODY = 65536
MAX_ANSWER = 16 << 20
TIMEOUT = 10.0

_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
           413: "Payload Too Large", 431: "Request Header Fields Too Large",
           502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}


def _netns_inode(netns: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{netns}").st_ino
    except OSError:
        return None


def listen_in_netns(netns: str, address: str, port: int, backlog: int = 128) -> socket.socket:
    """A listening TCP socket bound to ``address:port`` inside namespace ``netns``.

    A helper thread enters the namespace (``setns``; only that thread moves), makes the
    socket there and ends; the socket belongs to the namespace it was made in. ``IP_FREEBIND``
    lets it bind an address that is not (yet) on a device."""
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if _libc.setns(fd, _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns {netns}: {os.strerror(err)}")
            finally:
                os.close(fd)
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_FREEBIND", 15), 1)
                sock.bind((address, port))
                sock.listen(backlog)
                sock.setblocking(False)
            except BaseException:
                sock.close()
                raise
            result["sock"] = sock
        except BaseException as exc:  # noqa: BLE001 - handed to the caller
            result["error"] = exc

    helper = threading.Thread(target=work, name=f"netns-{netns}", daemon=True)
    helper.start()
    helper.join()
    if "error" in result:
        raise result["error"]
    sock: socket.socket = result["sock"]
    return sock


@dataclass(frozen=True)
class Where:
    """What a listener serves: a router's networks or one isolated network."""

    kind: str  # "router" | "network"
    id: str

    @property
    def netns(self) -> str:
        return (names.router_namespace(self.id) if self.kind == "router"
                else names.dhcp_namespace(self.id))

    @property
    def address(self) -> tuple[str, int]:
        return ("0.0.0.0", ROUTER_PORT) if self.kind == "router" else (METADATA_IP, 80)


def find_instance(model: Model, where: Where, client_ip: str) -> View | None:
    """The compute port with fixed IP ``client_ip`` on the networks ``where`` serves."""
    if where.kind == "router":
        networks = {p.get("network_id") for p in model.router_interfaces(where.id)}
    else:
        networks = {where.id}
    for port in model.ports.values():
        if port.get("network_id") in networks \
                and str(port.get("device_owner") or "").startswith("compute:") \
                and any(f.get("ip_address") == client_ip for f in port.get("fixed_ips") or ()):
            return port
    return None


def _answer(status: int, body: bytes, ctype: str = "text/plain") -> bytes:
    head = (f"HTTP/1.1 {status} {REASONS.get(status, 'Unknown')}\r\n"
            f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n")
    return head.encode("latin-1") + body


class MetadataProxy:
    """Neutron's metadata proxy and agent in one thread (see the module documentation)."""

    agent_type = "Metadata agent"

    def __init__(self, host: Host, options: LinuxOptions) -> None:
        self.host = host
        self.options = options
        self._model = Model()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        #: listener -> (its asyncio server, the namespace's inode when it was made)
        self._servers: dict[Where, tuple[asyncio.AbstractServer, int | None]] = {}
        self._active = 0

    # -------------------------------------------------------------- the loop thread
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            self._thread = threading.Thread(target=run, name="onestack-metadata-proxy",
                                            daemon=True)
            self._thread.start()
            ready.wait(5)
            self._loop = loop
        return self._loop

    def _call(self, fn: Callable[[], Any]) -> Any:
        """Run coroutine function ``fn`` on the loop and wait for its result."""
        future: Future[Any] = asyncio.run_coroutine_threadsafe(fn(), self._ensure_loop())
        return future.result(timeout=30)

    # -------------------------------------------------------------- contract
    def wanted(self, model: Model) -> set[Where]:
        """Routers and isolated DHCP networks that get a listener (namespaces existing)."""
        present = self.host.netns_list()
        want = {Where("router", r) for r in model.routers}
        want |= {Where("network", n) for n in model.networks
                 if model.dhcp_subnets(n) and model.dhcp_port(n) is not None
                 and model.isolated(n)}
        return {w for w in want if w.netns in present}

    def apply(self, model: Model, dirty: Dirty) -> None:
        """Listen for every router / isolated network of the model; close what it dropped."""
        self._model = model
        want = self.wanted(model)
        errors = []
        for where in sorted(want, key=lambda w: (w.kind, w.id)):
            have = self._servers.get(where)
            inode = _netns_inode(where.netns)
            if have is not None and have[1] == inode:
                continue
            if have is not None:
                self._close(where)
            try:
                sock = listen_in_netns(where.netns, *where.address)
            except OSError as exc:
                LOG.warning("metadata proxy cannot listen in %s: %s", where.netns, exc)
                errors.append(exc)
                continue
            server = self._call(lambda s=sock, w=where: self._serve(s, w))
            self._servers[where] = (server, inode)
        for where in set(self._servers) - want:
            self._close(where)
        if errors:
            raise errors[0]

    def cleanup(self, model: Model) -> None:
        """Close listeners of routers and networks the model no longer has."""
        self._model = model
        want = self.wanted(model)
        for where in set(self._servers) - want:
            self._close(where)

    def wired(self, model: Model) -> set[str]:
        return set()

    def stop(self) -> None:
        """Close every listener and stop the loop thread."""
        for where in list(self._servers):
            self._close(where)
        loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            loop.close()

    def listening(self) -> set[Where]:
        """What has a listener now (tests, status)."""
        return set(self._servers)

    def _close(self, where: Where) -> None:
        server, _ = self._servers.pop(where)
        if self._loop is None:
            return

        async def close() -> None:
            server.close()

        with contextlib.suppress(Exception):
            self._call(close)

    # -------------------------------------------------------------- serving
    async def _serve(self, sock: socket.socket, where: Where) -> asyncio.AbstractServer:
        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._connection(where, reader, writer)

        return await asyncio.start_server(handle, sock=sock, limit=MAX_HEAD)

    async def _connection(self, where: Where, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        if self._active >= MAX_CONNECTIONS:
            writer.write(_answer(503, b"503 Service Unavailable"))
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.drain(), TIMEOUT)
            writer.close()
            return
        self._active += 1
        try:
            answer = await self._request(where, reader, writer)
            if answer:
                writer.write(answer)
                await asyncio.wait_for(writer.drain(), TIMEOUT)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._active -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), 1)

    async def _request(self, where: Where, reader: asyncio.StreamReader,
                       writer: asyncio.StreamWriter) -> bytes:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        except (asyncio.LimitOverrunError, ValueError):
            return _answer(431, b"431 Request Header Fields Too Large")
        except asyncio.IncompleteReadError:
            return b""
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/"):
            return _answer(400, b"400 Bad Request")
        method, target = parts[0], parts[1]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                key, value = line.split(":", 1)
                headers[key.strip().lower()] = value.strip()
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            return _answer(400, b"400 Bad Request")
        if length < 0 or length > MAX_BODY:
            return _answer(413, b"413 Payload Too Large")
        body = await asyncio.wait_for(reader.readexactly(length), TIMEOUT) if length else b""
        peer = writer.get_extra_info("peername")
        client_ip = str(peer[0]) if peer else ""
        port = find_instance(self._model, where, client_ip)
        if port is None:
            LOG.info("metadata request from unknown %s in %s", client_ip, where.netns)
            return _answer(404, b"404 Not Found")
        instance_id = str(port.get("device_id") or "")
        forwarded = {
            "X-Instance-ID": instance_id,
            "X-Tenant-ID": str(port.get("project_id") or port.get("tenant_id") or ""),
            "X-Forwarded-For": client_ip,
            "X-Instance-ID-Signature": sign_instance_id(self.options.metadata_secret,
                                                        instance_id),
            f"X-Neutron-{'Router' if where.kind == 'router' else 'Network'}-ID": where.id,
        }
        for name in ("content-type", "accept", "user-agent"):
            if name in headers:
                forwarded[name.title()] = headers[name]
        try:
            return await asyncio.wait_for(self._forward(method, target, forwarded, body),
                                          TIMEOUT)
        except TimeoutError:
            return _answer(504, b"504 Gateway Timeout")
        except (OSError, ValueError) as exc:
            LOG.warning("metadata service unreachable: %s", exc)
            return _answer(502, b"502 Bad Gateway")

    async def _forward(self, method: str, target: str, headers: dict[str, str],
                       body: bytes) -> bytes:
        """One HTTP/1.0 exchange with the metadata service; its answer re-framed."""
        host, port = self.options.metadata_host, int(self.options.metadata_port)
        reader, writer = await asyncio.open_connection(host, port, limit=MAX_HEAD * 4)
        try:
            head = [f"{method} {target} HTTP/1.0", f"Host: {host}:{port}",
                    f"Content-Length: {len(body)}", "Connection: close"]
            head += [f"{k}: {v}" for k, v in headers.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            await writer.drain()
            raw = await reader.read(MAX_ANSWER + MAX_HEAD)
            while True:
                more = await reader.read(65536)
                if not more:
                    break
                raw += more
                if len(raw) > MAX_ANSWER + MAX_HEAD:
                    raise ValueError("metadata answer too large")
        finally:
            writer.close()
        head_raw, sep, content = raw.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("no HTTP answer from the metadata service")
        lines = head_raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        ctype = "text/plain"
        for line in lines[1:]:
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-type":
                ctype = value.strip()
            elif key.strip().lower() == "content-length":
                content = content[:int(value.strip())]
        return _answer(status, content, ctype)
