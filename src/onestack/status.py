"""``onestack status``: what the cloud of a data dir is doing, from any shell.

The services come from the run file the running ``onestack up`` wrote (``runstate``), so the
ports are the ones it really serves, whatever set them; without a live run file the cloud is
reported stopped. Each service is probed on ``/healthcheck``; with the admin credentials of the
data dir the compute services, network agents and servers are read from the APIs as an
operator would (``openstack compute service list`` and so on).
"""

from __future__ import annotations

import collections
import datetime as dt
from dataclasses import asdict
from typing import Any

import httpx

from onestack import runstate
from onestack.config import Settings
from onestack.default_guest import GuestProgress
from onestack.faults.rules import FaultRule, FaultTable

#: Services that are optional: their absence is shown, not a failure.
OPTIONAL = {"console", "metadata", "dashboard"}


def collect(settings: Settings, timeout: float = 3.0) -> dict[str, Any]:
    """The status document (what ``--json`` prints): ``running``, ``services`` (name ->
    url, up), ``faults`` (the fault rules in force, when any), ``guest_image`` (the guest
    image build, ``onestack.default_guest``), and when the APIs answer
    ``compute_services``, ``network_agents``, ``servers``."""
    state = runstate.read(settings.data_dir)
    out: dict[str, Any] = {"data_dir": str(settings.data_dir), "running": False,
                           "services": {}}
    rules = FaultTable(settings.data_dir).list()
    if rules:
        out["faults"] = [r.to_dict() for r in rules]
    guest = GuestProgress.read(settings.data_dir)
    if guest is not None:
        out["guest_image"] = asdict(guest)
    if state is None or not state.alive():
        out["reason"] = ("no run file: onestack is not running with this data dir"
                         if state is None else f"process {state.pid} is gone")
        return out
    out.update(running=True, pid=state.pid, version=state.version,
               started_at=state.started_at, compute_driver=state.compute_driver,
               network_driver=state.network_driver)
    urls = {name: runstate.local_url(url, state.connect_host)
            for name, url in state.services.items()}
    with httpx.Client(timeout=timeout) as client:
        for name, url in state.services.items():
            try:
                up = client.get(urls[name] + "/healthcheck").status_code == 200
            except httpx.HTTPError:
                up = False
            out["services"][name] = {"url": url, "up": up}
        if all(out["services"].get(n, {}).get("up") for n in ("identity", "compute")):
            token = admin_token(settings, client, urls["identity"])
            if token is not None:
                out.update(_operator_view(client, token, urls))
    return out


def admin_token(settings: Settings, client: httpx.Client, identity: str) -> str | None:
    """A token of the data dir's admin (its ``admin-openrc.sh``) on the admin project."""
    from onestack.identity.setup import read_password

    password = read_password(settings.data_dir / "admin-openrc.sh")
    if password is None:
        return None
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    try:
        r = client.post(identity + "/v3/auth/tokens", json=body)
    except httpx.HTTPError:
        return None
    return r.headers.get("X-Subject-Token") if r.status_code == 201 else None


def _operator_view(client: httpx.Client, token: str, urls: dict[str, str]) -> dict[str, Any]:
    h = {"X-Auth-Token": token}
    out: dict[str, Any] = {}

    def get(url: str, **params: Any) -> Any:
        try:
            r = client.get(url, headers=h, params=params)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    doc = get(urls["compute"] + "/v2.1/os-services")
    if doc is not None:
        out["compute_services"] = [
            {"binary": s["binary"], "host": s["host"], "state": s["state"],
             "status": s["status"], "updated_at": s.get("updated_at")}
            for s in doc.get("services", [])]
    if "network" in urls:
        doc = get(urls["network"] + "/v2.0/agents")
        if doc is not None:
            out["network_agents"] = [
                {"agent_type": a["agent_type"], "host": a["host"], "alive": a["alive"],
                 "admin_state_up": a["admin_state_up"]} for a in doc.get("agents", [])]
    doc = get(urls["compute"] + "/v2.1/servers/detail", all_tenants="1", limit="1000")
    if doc is not None:
        servers = doc.get("servers", [])
        out["servers"] = {"count": len(servers), "more": bool(doc.get("servers_links")),
                          "by_status": dict(collections.Counter(s["status"] for s in servers))}
    return out


def render(doc: dict[str, Any]) -> list[str]:
    """The text form of ``collect``'s document, one line each."""
    faults = [f"  fault rule {r['id']}: {FaultRule(**r).describe()}"
              for r in doc.get("faults", [])]
    if not doc["running"]:
        return [f"onestack is not running (data in {doc['data_dir']}): {doc['reason']}",
                *faults]
    lines = [f"onestack {doc['version']}, pid {doc['pid']}, up since {doc['started_at']} "
             f"(compute driver {doc['compute_driver']}, network driver "
             f"{doc['network_driver']}); data in {doc['data_dir']}"]
    for name, svc in doc["services"].items():
        state = "up" if svc["up"] else ("off" if name in OPTIONAL else "DOWN")
        lines.append(f"  {name:<10} {state:<5} {svc['url']}")
    now = dt.datetime.now(dt.UTC)
    for svc in doc.get("compute_services", []):
        age = _age(svc.get("updated_at"), now)
        lines.append(f"  {svc['binary']} on {svc['host']}: {svc['state']}, {svc['status']}"
                     + (f", reported {age} ago" if age else ""))
    for agent in doc.get("network_agents", []):
        lines.append(f"  {agent['agent_type']} on {agent['host']}: "
                     f"{'alive' if agent['alive'] else 'NOT alive'}")
    if "servers" in doc:
        srv = doc["servers"]
        counts = ", ".join(f"{k} {v}" for k, v in sorted(srv["by_status"].items()))
        lines.append(f"  servers: {srv['count']}{'+' if srv['more'] else ''}"
                     + (f" ({counts})" if counts else ""))
    guest = doc.get("guest_image")
    if guest:
        if guest["state"] == "building":
            lines.append(f"  guest image: building ({guest['step']}, step {guest['done']} "
                         f"of about {guest['total']})")
        elif guest["state"] == "failed":
            lines.append(f"  guest image: FAILED ({guest['error']})")
        else:
            lines.append(f"  guest image: ready (since {guest['finished_at']})")
    return lines + faults


def _age(stamp: str | None, now: dt.datetime) -> str | None:
    if not stamp:
        return None
    try:
        when = dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    seconds = max(0, int((now - when).total_seconds()))
    return f"{seconds} s" if seconds < 120 else f"{seconds // 60} min"


def healthy(doc: dict[str, Any]) -> bool:
    """Running, and every service that is not optional answers."""
    return bool(doc["running"]) and all(
        svc["up"] for name, svc in doc["services"].items() if name not in OPTIONAL)
