"""Response shaping for the compute API (Nova's documents, per microversion)."""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from onestack.common.timeutils import isotime
from onestack.compute import states
from onestack.compute.microversions import APIVersion


def nova_time(value: dt.datetime | None) -> str | None:
    """``2024-01-02T03:04:05.000000`` (Nova's launched_at style, no zone)."""
    if value is None:
        return None
    return value.strftime("%Y-%m-%dT%H:%M:%S.%f")


def links(base: str, collection: str, ident: str, project: str | None = None) -> list[dict[
        str, str]]:
    prefix = f"{base}/v2.1" + (f"/{project}" if project else "")
    return [{"rel": "self", "href": f"{prefix}/{collection}/{ident}"},
            {"rel": "bookmark", "href": f"{base}/{collection}/{ident}"}]


def host_id(project_id: str, host: str | None) -> str:
    if not host:
        return ""
    return hashlib.sha224((project_id + host).encode()).hexdigest()


def flavor(f: dict[str, Any], base: str, v: APIVersion, detail: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {"id": f["id"], "name": f["name"],
                           "links": links(base, "flavors", f["id"])}
    if v >= "2.55":
        out["description"] = f.get("description")
    if not detail:
        return out
    out.update({"ram": f["memory_mb"], "disk": f["root_gb"], "vcpus": f["vcpus"],
                "OS-FLV-EXT-DATA:ephemeral": f["ephemeral_gb"],
                "OS-FLV-DISABLED:disabled": f["disabled"],
                "swap": f["swap"] if (f["swap"] or v >= "2.75") else "",
                "rxtx_factor": f["rxtx_factor"],
                "os-flavor-access:is_public": f["is_public"]})
    if v >= "2.61":
        out["extra_specs"] = dict(f.get("extra_specs") or {})
    return out


def server_brief(inst: dict[str, Any], base: str) -> dict[str, Any]:
    return {"id": inst["uuid"], "name": inst["name"],
            "links": links(base, "servers", inst["uuid"])}


def server(inst: dict[str, Any], base: str, v: APIVersion, is_admin: bool,
           host_status: str | None = None, group: str | None = None,
           addresses: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full server document (``GET /servers/{id}``, ``/servers/detail``);
    ``addresses`` come from the network service (``compute/network.py``)."""
    status = states.status(inst["vm_state"], inst["task_state"])
    fl = inst["flavor"]
    if v >= "2.47":
        flv: dict[str, Any] = {"vcpus": fl["vcpus"], "ram": fl["memory_mb"],
                               "disk": fl["root_gb"], "ephemeral": fl.get("ephemeral_gb", 0),
                               "swap": fl.get("swap", 0), "original_name": fl["name"]}
        flv["extra_specs"] = dict(fl.get("extra_specs") or {})
    else:
        flv = {"id": fl["id"], "links": [{"rel": "bookmark",
                                          "href": f"{base}/flavors/{fl['id']}"}]}
    image: Any = ""
    sm = inst["system_metadata"]
    if inst["image_ref"]:
        image = {"id": inst["image_ref"],
                 "links": [{"rel": "bookmark", "href": f"{base}/images/{inst['image_ref']}"}]}
        if v >= "2.98":
            image["properties"] = {k: str(val) for k, val in
                                   (sm.get("image_properties") or {}).items()}
    out: dict[str, Any] = {
        "id": inst["uuid"], "name": inst["name"], "status": status,
        "tenant_id": inst["project_id"], "user_id": inst["user_id"],
        "metadata": inst["metadata"], "hostId": host_id(inst["project_id"], inst["host"]),
        "image": image, "flavor": flv, "created": isotime(inst["created_at"]),
        "updated": isotime(inst["updated_at"]), "addresses": addresses or {},
        "accessIPv4": inst["access_ip_v4"] or "", "accessIPv6": inst["access_ip_v6"] or "",
        "links": links(base, "servers", inst["uuid"]),
        "OS-DCF:diskConfig": sm.get("disk_config", "MANUAL"),
        "OS-EXT-AZ:availability_zone": inst["availability_zone"] or "",
        "config_drive": inst["config_drive"] or "", "key_name": inst["key_name"],
        "OS-SRV-USG:launched_at": nova_time(inst["launched_at"]),
        "OS-SRV-USG:terminated_at": nova_time(inst["terminated_at"]),
        "OS-EXT-STS:task_state": inst["task_state"],
        "OS-EXT-STS:vm_state": inst["vm_state"],
        "OS-EXT-STS:power_state": inst["power_state"],
        "os-extended-volumes:volumes_attached": [
            {"id": b["volume_id"]} for b in sm.get("block_devices") or []
            if b.get("volume_id")],
    }
    sgs = sm.get("security_groups")
    if sgs:
        out["security_groups"] = [{"name": n} for n in sgs]
    if status in ("BUILD", "ACTIVE"):
        out["progress"] = inst["progress"] or 0
    if is_admin:
        out["OS-EXT-SRV-ATTR:host"] = inst["host"]
        out["OS-EXT-SRV-ATTR:hypervisor_hostname"] = inst["node"]
        out["OS-EXT-SRV-ATTR:instance_name"] = "instance-" + inst["uuid"][:8]
        if v >= "2.3":
            out.update({"OS-EXT-SRV-ATTR:hostname": inst["hostname"],
                        "OS-EXT-SRV-ATTR:reservation_id": inst["reservation_id"],
                        "OS-EXT-SRV-ATTR:launch_index": inst["launch_index"],
                        "OS-EXT-SRV-ATTR:kernel_id": "", "OS-EXT-SRV-ATTR:ramdisk_id": "",
                        "OS-EXT-SRV-ATTR:root_device_name": "/dev/vda",
                        "OS-EXT-SRV-ATTR:user_data": inst["user_data"]})
    elif v >= "2.90":
        out["OS-EXT-SRV-ATTR:hostname"] = inst["hostname"]
    if v >= "2.3":
        out["os-extended-volumes:volumes_attached"] = [
            {"id": b["volume_id"],
             "delete_on_termination": bool(b.get("delete_on_termination"))}
            for b in sm.get("block_devices") or [] if b.get("volume_id")]
    if inst["fault"] and inst["vm_state"] in (states.ERROR, states.DELETED):
        fault = {"code": inst["fault"].get("code", 500),
                 "created": isotime(_parse(inst["fault"].get("created"))),
                 "message": inst["fault"].get("message", "")}
        if is_admin:
            fault["details"] = inst["fault"].get("details", "")
        out["fault"] = fault
    if v >= "2.9":
        out["locked"] = bool(inst["locked"])
    if v >= "2.16" and host_status is not None:
        out["host_status"] = host_status
    if v >= "2.19":
        out["description"] = inst["description"]
    if v >= "2.26":
        out["tags"] = list(inst["tags"])
    if v >= "2.63":
        out["trusted_image_certificates"] = None
    if v >= "2.71" and group is not None:
        out["server_groups"] = [group] if group else []
    if v >= "2.73":
        out["locked_reason"] = inst["locked_reason"]
    if v >= "2.96":
        out["pinned_availability_zone"] = sm.get("requested_az")
    if v >= "2.100":
        out["scheduler_hints"] = dict(sm.get("scheduler_hints") or {})
    return out


def _parse(text: str | None) -> dt.datetime | None:
    if not text:
        return None
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return None


def keypair(kp: dict[str, Any], v: APIVersion, full: bool = False,
            created: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"name": kp["name"], "public_key": kp["public_key"],
                           "fingerprint": kp["fingerprint"]}
    if v >= "2.2":
        out["type"] = kp["type"]
    if created:
        out["user_id"] = kp["user_id"]
        if "private_key" in kp:
            out["private_key"] = kp["private_key"]
    if full:
        out.update({"user_id": kp["user_id"], "id": abs(hash(kp["name"])) % (10 ** 6),
                    "created_at": isotime(kp["created_at"]), "deleted": False,
                    "deleted_at": None, "updated_at": None})
    return out


def hypervisor(n: dict[str, Any], v: APIVersion, detail: bool, up: bool,
               servers: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    svc = n.get("service") or {}
    out: dict[str, Any] = {
        "id": n["uuid"] if v >= "2.53" else n["id"],
        "hypervisor_hostname": n["hypervisor_hostname"],
        "state": "up" if up else "down",
        "status": "disabled" if svc.get("disabled") else "enabled",
    }
    if detail:
        out.update({"host_ip": n["host_ip"], "hypervisor_type": n["hypervisor_type"],
                    "hypervisor_version": n["hypervisor_version"],
                    "service": {"host": n["host"],
                                "id": svc.get("uuid") if v >= "2.53" else svc.get("id"),
                                "disabled_reason": svc.get("disabled_reason")}})
        if v < "2.88":
            out.update({"vcpus": n["vcpus"], "memory_mb": n["memory_mb"],
                        "local_gb": n["local_gb"], "vcpus_used": n["vcpus_used"],
                        "memory_mb_used": n["memory_mb_used"],
                        "local_gb_used": n["local_gb_used"],
                        "free_ram_mb": n["memory_mb"] - n["memory_mb_used"],
                        "free_disk_gb": n["local_gb"] - n["local_gb_used"],
                        "current_workload": 0, "running_vms": n["running_vms"],
                        "disk_available_least": n["local_gb"] - n["local_gb_used"],
                        "cpu_info": _json(n["cpu_info"]) if v < "2.28" else n["cpu_info"]})
        else:
            out["uptime"] = None
    if servers is not None:
        out["servers"] = [{"uuid": s["uuid"], "name": s["name"]} for s in servers]
    return out


def _json(data: Any) -> str:
    import json

    return json.dumps(data)


def service(svc: dict[str, Any], v: APIVersion, up: bool) -> dict[str, Any]:
    out = {"id": svc["uuid"] if v >= "2.53" else svc["id"], "binary": svc["binary"],
           "host": svc["host"], "zone": svc["zone"],
           "status": "disabled" if svc["disabled"] else "enabled",
           "state": "up" if up else "down", "updated_at": nova_time(svc["updated_at"]),
           "disabled_reason": svc["disabled_reason"]}
    if v >= "2.11":
        out["forced_down"] = svc["forced_down"]
    return out


def aggregate(a: dict[str, Any], v: APIVersion) -> dict[str, Any]:
    out = {"id": a["id"], "name": a["name"], "availability_zone": a["availability_zone"],
           "hosts": a["hosts"], "metadata": a["metadata"],
           "created_at": nova_time(a["created_at"]), "updated_at": nova_time(a["updated_at"]),
           "deleted": False, "deleted_at": None}
    if v >= "2.41":
        out["uuid"] = a["uuid"]
    return out


def server_group(g: dict[str, Any], v: APIVersion) -> dict[str, Any]:
    out: dict[str, Any] = {"id": g["id"], "name": g["name"], "members": g["members"]}
    if v >= "2.64":
        out["policy"] = g["policy"]
        out["rules"] = g["rules"]
    else:
        out["policies"] = [g["policy"]]
        out["metadata"] = {}
    if v >= "2.13":
        out["project_id"] = g["project_id"]
        out["user_id"] = g["user_id"]
    return out


def instance_action(a: dict[str, Any], v: APIVersion, with_events: bool,
                    is_admin: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"action": a["action"], "instance_uuid": a["instance_uuid"],
                           "request_id": a["request_id"], "user_id": a["user_id"],
                           "project_id": a["project_id"], "message": a["message"],
                           "start_time": nova_time(a["start_time"])}
    if v >= "2.58":
        out["updated_at"] = nova_time(a["updated_at"])
    if with_events:
        evs = []
        for e in a["events"]:
            ev = {"event": e["event"], "start_time": e["start_time"],
                  "finish_time": e["finish_time"], "result": e["result"]}
            if is_admin:
                ev["traceback"] = e.get("traceback")
            if v >= "2.62":
                if is_admin:
                    ev["host"] = e.get("host")
                ev["hostId"] = host_id(a["project_id"] or "", e.get("host"))
            evs.append(ev)
        out["events"] = evs
    return out


def _flavor_int(value: Any) -> int | None:
    """A flavor's internal id as the integer Nova shows (None when unknown)."""
    return int(value) if value is not None and str(value).isdigit() else None


def migration(mg: dict[str, Any], v: APIVersion, base: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": mg["id"], "instance_uuid": mg["instance_uuid"], "status": mg["status"],
        "source_compute": mg["source_compute"], "dest_compute": mg["dest_compute"],
        "source_node": mg["source_node"], "dest_node": mg["dest_node"], "dest_host": None,
        "old_instance_type_id": _flavor_int(mg["old_instance_type_id"]),
        "new_instance_type_id": _flavor_int(mg["new_instance_type_id"]),
        "created_at": nova_time(mg["created_at"]), "updated_at": nova_time(mg["updated_at"])}
    if v >= "2.23":
        out["migration_type"] = "resize" if mg["migration_type"] == "resize" else \
            mg["migration_type"]
    if v >= "2.59":
        out["uuid"] = mg["uuid"]
    if v >= "2.80":
        out["project_id"] = mg["project_id"]
        out["user_id"] = mg["user_id"]
    return out


def basic_addresses(addresses: dict[str, Any]) -> dict[str, Any]:
    """``addresses`` with only ``version`` and ``addr`` per address (Nova's view without
    ``extend_address``: update and rebuild responses before 2.75)."""
    return {net: [{"version": a["version"], "addr": a["addr"]} for a in ips]
            for net, ips in addresses.items()}
