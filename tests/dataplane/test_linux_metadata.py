"""The Linux data plane's metadata proxy: sockets inside router and DHCP namespaces.

A fake metadata service (``http.server``) listens on 127.0.0.1 in this process's own
namespace, as the real one does. The test makes ``qrouter-<id>`` and ``qdhcp-<net>``
namespaces itself (and deletes them), lets the proxy listen inside them, and asks from a
client socket inside each namespace whose source address is a compute port's fixed IP (an
address on that namespace's loopback). It checks the headers the service received
(instance id, project, signature) and the relayed answer; an unknown address gets 404.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from onestack.drivers.network.linux import names
from onestack.drivers.network.linux.driver import LinuxOptions
from onestack.drivers.network.linux.host import Host
from onestack.drivers.network.linux.metadata import MetadataProxy, Where
from onestack.drivers.network.linux.model import Dirty, Model
from onestack.metadata.app import sign_instance_id
from tests.netns import in_netns, namespace

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="dataplane tests run as root only"),
    pytest.mark.skipif(shutil.which("ip") is None, reason="ip is needed"),
]

SECRET = "s3cret"


class FakeMetadata(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        FakeMetadata.seen.append({"path": self.path, "headers": dict(self.headers)})
        body = json.dumps({"uuid": self.headers.get("X-Instance-ID")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def service() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeMetadata)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def made_netns(name: str) -> Iterator[str]:
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def ask(netns: str, source: str, dest: str, port: int, path: str) -> tuple[int, bytes]:
    """GET ``path`` from inside ``netns`` with source address ``source``."""
    with in_netns(netns):
        conn = http.client.HTTPConnection(dest, port, timeout=10, source_address=(source, 0))
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


def _model() -> tuple[Model, dict[str, str]]:
    ids = {k: str(uuid.uuid4()) for k in ("router", "net", "isonet", "inst", "inst2",
                                          "subnet", "isosubnet")}
    m = Model()
    m.routers[ids["router"]] = {"id": ids["router"], "external_gateway_info": None,
                                "routes": [], "admin_state_up": True}
    for net, sub, cidr in (("net", "subnet", "10.5.0.0/24"),
                           ("isonet", "isosubnet", "10.6.0.0/24")):
        m.networks[ids[net]] = {"id": ids[net], "provider:network_type": "vxlan", "mtu": 1450}
        m.subnets[ids[sub]] = {"id": ids[sub], "network_id": ids[net], "cidr": cidr,
                               "ip_version": 4, "gateway_ip": cidr[:-4] + "1",
                               "enable_dhcp": True}

    def port(net: str, sub: str, ip: str, owner: str, device: str, project: str = "") -> None:
        pid = str(uuid.uuid4())
        m.ports[pid] = {"id": pid, "network_id": ids[net], "device_owner": owner,
                        "device_id": device, "project_id": project,
                        "fixed_ips": [{"subnet_id": ids[sub], "ip_address": ip}]}

    port("net", "subnet", "10.5.0.1", "network:router_interface", ids["router"])
    port("net", "subnet", "10.5.0.7", "compute:nova", ids["inst"], "proj1")
    port("net", "subnet", "10.5.0.8", "network:dhcp", "dhcp")
    port("isonet", "isosubnet", "10.6.0.2", "network:dhcp", "dhcp")
    port("isonet", "isosubnet", "10.6.0.9", "compute:nova", ids["inst2"], "proj2")
    return m, ids


def test_proxy_in_router_and_dhcp_namespaces(service: int, tmp_path: Path) -> None:
    model, ids = _model()
    assert not model.isolated(ids["net"]) and model.isolated(ids["isonet"])
    with namespace("dh") as root:
        options = LinuxOptions(state_dir=tmp_path, metadata_host="127.0.0.1",
                               metadata_port=service, metadata_secret=SECRET)
        proxy = MetadataProxy(Host(netns=root), options)
        try:
            # no namespaces yet: nothing to listen in, nothing made
            proxy.apply(model, Dirty(all=True))
            assert proxy.listening() == set()
            assert names.router_namespace(ids["router"]) not in Host().netns_list()
            rns = names.router_namespace(ids["router"])
            dns = names.dhcp_namespace(ids["isonet"])
            with made_netns(rns), made_netns(dns):
                subprocess.run(["ip", "-n", rns, "addr", "add", "10.5.0.7/32", "dev", "lo"],
                               check=True)
                subprocess.run(["ip", "-n", rns, "addr", "add", "10.5.0.99/32", "dev", "lo"],
                               check=True)
                for a in ("10.6.0.9/32", "169.254.169.254/32"):
                    subprocess.run(["ip", "-n", dns, "addr", "add", a, "dev", "lo"], check=True)
                began = time.monotonic()
                proxy.apply(model, Dirty(all=True))
                listen_time = time.monotonic() - began
                assert proxy.listening() == {Where("router", ids["router"]),
                                             Where("network", ids["isonet"])}

                FakeMetadata.seen.clear()
                began = time.monotonic()
                status, body = ask(rns, "10.5.0.7", "10.5.0.7", 9697,
                                   "/openstack/latest/meta_data.json")
                request_time = time.monotonic() - began
                assert status == 200 and json.loads(body) == {"uuid": ids["inst"]}
                seen = FakeMetadata.seen[-1]
                assert seen["path"] == "/openstack/latest/meta_data.json"
                h = seen["headers"]
                assert h["X-Instance-ID"] == ids["inst"] and h["X-Tenant-ID"] == "proj1"
                assert h["X-Forwarded-For"] == "10.5.0.7"
                assert h["X-Instance-ID-Signature"] == sign_instance_id(SECRET, ids["inst"])

                status, _ = ask(rns, "10.5.0.99", "10.5.0.7", 9697, "/latest/meta-data/")
                assert status == 404 and len(FakeMetadata.seen) == 1

                status, body = ask(dns, "10.6.0.9", "169.254.169.254", 80, "/latest")
                assert status == 200 and json.loads(body) == {"uuid": ids["inst2"]}
                assert FakeMetadata.seen[-1]["headers"]["X-Tenant-ID"] == "proj2"

                # the router namespace made again (L3 after a crash): a new socket in it
                subprocess.run(["ip", "netns", "delete", rns], check=True)
                subprocess.run(["ip", "netns", "add", rns], check=True)
                subprocess.run(["ip", "-n", rns, "link", "set", "lo", "up"], check=True)
                subprocess.run(["ip", "-n", rns, "addr", "add", "10.5.0.7/32", "dev", "lo"],
                               check=True)
                proxy.apply(model, Dirty(routers={ids["router"]}))
                assert ask(rns, "10.5.0.7", "10.5.0.7", 9697, "/")[0] == 200

                # the router goes: its listener closes; the network keeps its own
                del model.routers[ids["router"]]
                proxy.cleanup(model)
                assert proxy.listening() == {Where("network", ids["isonet"])}
                with pytest.raises(ConnectionRefusedError), in_netns(rns):
                    socket.create_connection(("10.5.0.7", 9697), timeout=5)
        finally:
            proxy.stop()
    assert proxy.listening() == set()
    print(f"\ntimings: two listeners {listen_time * 1000:.1f} ms, "
          f"proxied request {request_time * 1000:.1f} ms")
