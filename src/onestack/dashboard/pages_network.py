"""Project pages of networking: networks and subnets, routers, security groups and rules,
floating IPs, and the network topology (an SVG drawn on the server: networks as columns,
routers and instances as boxes linked to them, every box a link)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from onestack.dashboard.routes import Pages
from onestack.dashboard.ui import Action, Field, Form, Row, Table, cell, status

if TYPE_CHECKING:
    from onestack.dashboard.app import Ctx


PAGES = Pages()


async def _net(ctx: Ctx, path: str, key: str, **params: Any) -> list[dict[str, Any]]:
    return list((await ctx.cloud.get("network", path, **params))[key])


# ---------------------------------------------------------------------- networks
@PAGES.get("/project/networks/")
async def networks(ctx: Ctx) -> Response:
    nets, subnets = await asyncio.gather(_net(ctx, "/v2.0/networks", "networks"),
                                         _net(ctx, "/v2.0/subnets", "subnets"))
    by_net: dict[str, list[str]] = {}
    for s in subnets:
        by_net.setdefault(s["network_id"], []).append(f"{s.get('name') or s['id']} "
                                                      f"{s['cidr']}")
    mine = ctx.session.project_id
    rows = [Row([cell(n.get("name") or n["id"]), cell("; ".join(by_net.get(n["id"], []))),
                 cell(n.get("shared")), cell(n.get("router:external")), status(n.get("status")),
                 cell(n.get("admin_state_up"))],
                actions=[Action("Delete", f"/project/networks/{n['id']}/delete",
                                confirm=f"Delete network {n.get('name')}?", danger=True)]
                if n.get("project_id") == mine else [], id=n["id"])
            for n in nets]
    form = Form("Create network", "/project/networks/create", [
        Field("name", "Network name", required=True),
        Field("subnet_name", "Subnet name"),
        Field("cidr", "Subnet address (CIDR)", help="e.g. 192.168.10.0/24; empty: no subnet"),
        Field("gateway_ip", "Gateway IP", help="empty: the first address"),
        Field("dns", "DNS name servers", help="comma-separated")],
        submit="Create network", id="network-create")
    return ctx.render("page.html", title="Networks", forms=[form], links=[],
                      tables=[Table("Networks", ["Name", "Subnets", "Shared", "External",
                                                 "Status", "Admin state"], rows)])


@PAGES.post("/project/networks/create")
async def network_create(ctx: Ctx) -> Response:
    name = ctx.field("name")

    async def create() -> None:
        net = (await ctx.cloud.post("network", "/v2.0/networks",
                                    {"network": {"name": name}}))["network"]
        if ctx.field("cidr"):
            subnet: dict[str, Any] = {"network_id": net["id"], "cidr": ctx.field("cidr"),
                                      "ip_version": 6 if ":" in ctx.field("cidr") else 4,
                                      "name": ctx.field("subnet_name") or f"{name}-subnet"}
            if ctx.field("gateway_ip"):
                subnet["gateway_ip"] = ctx.field("gateway_ip")
            if ctx.field("dns"):
                subnet["dns_nameservers"] = [d.strip() for d in ctx.field("dns").split(",")
                                             if d.strip()]
            await ctx.cloud.post("network", "/v2.0/subnets", {"subnet": subnet})
    return await ctx.act("/project/networks/", f"Network {name} created.", create())


PAGES.deletes("/project/networks/{id}/delete", "network", "/v2.0/networks/{id}",
              back="/project/networks/", ok="Network deleted.")


# ---------------------------------------------------------------------- routers
@PAGES.get("/project/routers/")
async def routers(ctx: Ctx) -> Response:
    rts, nets, subnets = await asyncio.gather(
        _net(ctx, "/v2.0/routers", "routers"), _net(ctx, "/v2.0/networks", "networks"),
        _net(ctx, "/v2.0/subnets", "subnets"))
    names = {n["id"]: n.get("name") or n["id"] for n in nets}
    rows = []
    for r in rts:
        gw = (r.get("external_gateway_info") or {}).get("network_id")
        rows.append(Row([cell(r.get("name") or r["id"]), status(r.get("status")),
                         cell(names.get(gw or "", "-")), cell(r.get("admin_state_up"))],
                        actions=[Action("Delete", f"/project/routers/{r['id']}/delete",
                                        confirm=f"Delete router {r.get('name')}?",
                                        danger=True)], id=r["id"]))
    external = [(n["id"], n.get("name") or n["id"]) for n in nets if n.get("router:external")]
    forms = [
        Form("Create router", "/project/routers/create", [
            Field("name", "Router name", required=True),
            Field("external_network", "External network", "select",
                  options=[("", "(none)")] + external)], submit="Create router",
             id="router-create"),
        Form("Add interface", "/project/routers/_/interface", [
            Field("router", "Router", "select",
                  options=[(r["id"], r.get("name") or r["id"]) for r in rts]),
            Field("subnet", "Subnet", "select",
                  options=[(s["id"], f"{s.get('name') or s['id']} ({s['cidr']})")
                           for s in subnets if s["network_id"] not in
                           {e for e, _ in external}])],
             submit="Add interface", id="router-interface"),
    ]
    return ctx.render("page.html", title="Routers", forms=forms, links=[],
                      tables=[Table("Routers", ["Name", "Status", "External network",
                                                "Admin state"], rows)])


@PAGES.post("/project/routers/create")
async def router_create(ctx: Ctx) -> Response:
    body: dict[str, Any] = {"name": ctx.field("name")}
    if ctx.field("external_network"):
        body["external_gateway_info"] = {"network_id": ctx.field("external_network")}
    return await ctx.act("/project/routers/", f"Router {body['name']} created.",
                         ctx.cloud.post("network", "/v2.0/routers", {"router": body}))


@PAGES.post("/project/routers/{id}/interface")
async def router_interface(ctx: Ctx) -> Response:
    router = ctx.field("router") if ctx.param("id") == "_" else ctx.param("id")
    return await ctx.act("/project/routers/", "Interface added.", ctx.cloud.put(
        "network", f"/v2.0/routers/{router}/add_router_interface",
        {"subnet_id": ctx.field("subnet")}))


@PAGES.post("/project/routers/{id}/delete")
async def router_delete(ctx: Ctx) -> Response:
    rid = ctx.param("id")

    async def delete() -> None:
        for port in await _net(ctx, "/v2.0/ports", "ports", device_id=rid,
                               device_owner="network:router_interface"):
            await ctx.cloud.put("network", f"/v2.0/routers/{rid}/remove_router_interface",
                                {"port_id": port["id"]})
        await ctx.cloud.delete("network", f"/v2.0/routers/{rid}")
    return await ctx.act("/project/routers/", "Router deleted.", delete())


# ---------------------------------------------------------------------- security groups
@PAGES.get("/project/security_groups/")
async def security_groups(ctx: Ctx) -> Response:
    groups = await _net(ctx, "/v2.0/security-groups", "security_groups",
                        project_id=ctx.session.project_id)
    tables = []
    for g in groups:
        rows = [Row([cell(r["direction"]), cell(r.get("ethertype")),
                     cell(r.get("protocol") or "any"),
                     cell(_ports(r)), cell(r.get("remote_ip_prefix") or
                                           (r.get("remote_group_id") and "group") or "-")],
                    actions=[Action("Delete", f"/project/security_groups/rule/{r['id']}/delete",
                                    danger=True)])
                for r in g.get("security_group_rules", [])]
        tables.append(Table(f"Security group {g['name']}", ["Direction", "Ether type",
                                                           "Protocol", "Ports", "Remote"],
                            rows))
    forms = [Form("Create security group", "/project/security_groups/create",
                  [Field("name", "Name", required=True), Field("description", "Description")],
                  submit="Create group", id="sg-create"),
             Form("Add rule", "/project/security_groups/rule", [
                 Field("group", "Security group", "select",
                       options=[(g["id"], g["name"]) for g in groups]),
                 Field("direction", "Direction", "select",
                       options=[("ingress", "ingress"), ("egress", "egress")]),
                 Field("protocol", "Protocol", "select",
                       options=[("tcp", "tcp"), ("udp", "udp"), ("icmp", "icmp"),
                                ("", "any")]),
                 Field("port", "Port or range", help="22 or 8000-8080"),
                 Field("remote_ip_prefix", "Remote CIDR", value="0.0.0.0/0")],
                  submit="Add rule", id="sg-rule")]
    return ctx.render("page.html", title="Security groups", forms=forms, links=[],
                      tables=tables)


def _ports(rule: dict[str, Any]) -> str:
    lo, hi = rule.get("port_range_min"), rule.get("port_range_max")
    if lo is None:
        return "any"
    return str(lo) if lo == hi else f"{lo}-{hi}"


@PAGES.post("/project/security_groups/create")
async def group_create(ctx: Ctx) -> Response:
    return await ctx.act("/project/security_groups/", "Security group created.",
                         ctx.cloud.post("network", "/v2.0/security-groups", {"security_group": {
                             "name": ctx.field("name"),
                             "description": ctx.field("description")}}))


@PAGES.post("/project/security_groups/rule")
async def rule_create(ctx: Ctx) -> Response:
    rule: dict[str, Any] = {"security_group_id": ctx.field("group"),
                            "direction": ctx.field("direction", "ingress")}
    if ctx.field("protocol"):
        rule["protocol"] = ctx.field("protocol")
    port = ctx.field("port")
    if port:
        lo, _, hi = port.partition("-")
        try:
            rule["port_range_min"], rule["port_range_max"] = int(lo), int(hi or lo)
        except ValueError:
            return ctx.fail("/project/security_groups/", "Ports are numbers, as 22 or 80-90.")
    if ctx.field("remote_ip_prefix"):
        rule["remote_ip_prefix"] = ctx.field("remote_ip_prefix")
    return await ctx.act("/project/security_groups/", "Rule added.", ctx.cloud.post(
        "network", "/v2.0/security-group-rules", {"security_group_rule": rule}))


PAGES.deletes("/project/security_groups/rule/{id}/delete", "network",
              "/v2.0/security-group-rules/{id}", back="/project/security_groups/",
              ok="Rule deleted.")


PAGES.deletes("/project/security_groups/{id}/delete", "network", "/v2.0/security-groups/{id}",
              back="/project/security_groups/", ok="Security group deleted.")


# ---------------------------------------------------------------------- floating IPs
@PAGES.get("/project/floating_ips/")
async def floating_ips(ctx: Ctx) -> Response:
    fips, nets = await asyncio.gather(_net(ctx, "/v2.0/floatingips", "floatingips"),
                                      _net(ctx, "/v2.0/networks", "networks"))
    rows = []
    for f in fips:
        actions = [Action("Release", f"/project/floating_ips/{f['id']}/release",
                          confirm="Release this floating IP?", danger=True)]
        if f.get("port_id"):
            actions.insert(0, Action("Disassociate",
                                     f"/project/floating_ips/{f['id']}/disassociate"))
        rows.append(Row([cell(f["floating_ip_address"]), cell(f.get("fixed_ip_address")),
                         status(f.get("status"))], actions=actions, id=f["id"]))
    pools = [(n["id"], n.get("name") or n["id"]) for n in nets if n.get("router:external")]
    form = Form("Allocate floating IP", "/project/floating_ips/allocate",
                [Field("pool", "Pool", "select", options=pools)], submit="Allocate",
                id="fip-allocate")
    return ctx.render("page.html", title="Floating IPs", forms=[form], links=[],
                      tables=[Table("Floating IPs", ["IP address", "Mapped fixed IP",
                                                     "Status"], rows)])


@PAGES.post("/project/floating_ips/allocate")
async def fip_allocate(ctx: Ctx) -> Response:
    return await ctx.act("/project/floating_ips/", "Floating IP allocated.", ctx.cloud.post(
        "network", "/v2.0/floatingips",
        {"floatingip": {"floating_network_id": ctx.field("pool")}}))


PAGES.deletes("/project/floating_ips/{id}/release", "network", "/v2.0/floatingips/{id}",
              back="/project/floating_ips/", ok="Floating IP released.")


@PAGES.post("/project/floating_ips/{id}/disassociate")
async def fip_disassociate(ctx: Ctx) -> Response:
    return await ctx.act("/project/floating_ips/", "Floating IP disassociated.",
                         ctx.cloud.put("network", f"/v2.0/floatingips/{ctx.param('id')}",
                                       {"floatingip": {"port_id": None}}))


# ---------------------------------------------------------------------- topology
COL_W, TOP, BOX_W, BOX_H, GAP = 150, 60, 120, 40, 16


@PAGES.get("/project/network_topology/")
async def topology(ctx: Ctx) -> Response:
    """Networks, routers and instances with their links, as an SVG of positioned shapes."""
    nets, rts, ports, servers = await asyncio.gather(
        _net(ctx, "/v2.0/networks", "networks"), _net(ctx, "/v2.0/routers", "routers"),
        _net(ctx, "/v2.0/ports", "ports"),
        ctx.cloud.get("compute", "/servers", limit="200"))
    column = {n["id"]: i for i, n in enumerate(
        sorted(nets, key=lambda n: (not n.get("router:external"), n.get("name") or "")))}
    devices: list[dict[str, Any]] = []
    links_of: dict[str, set[str]] = {}
    for p in ports:
        dev = p.get("device_id")
        if dev and p["network_id"] in column:
            links_of.setdefault(dev, set()).add(p["network_id"])
    for r in rts:
        gw = (r.get("external_gateway_info") or {}).get("network_id")
        if gw in column:
            links_of.setdefault(r["id"], set()).add(gw)
        devices.append({"id": r["id"], "kind": "router", "name": r.get("name") or r["id"],
                        "href": "/project/routers/"})
    for s in servers.get("servers", []):
        devices.append({"id": s["id"], "kind": "instance", "name": s.get("name") or s["id"],
                        "href": f"/project/instances/{s['id']}/"})
    height = TOP + 40 + (len(devices) + 1) * (BOX_H + GAP)
    width = max(1, len(column)) * COL_W + BOX_W + 2 * GAP
    net_shapes = [{"id": n["id"], "name": n.get("name") or n["id"], "x": GAP + column[n["id"]]
                   * COL_W, "external": bool(n.get("router:external")),
                   "cidrs": ""} for n in nets]
    boxes, lines = [], []
    box_x = GAP + len(column) * COL_W + GAP
    for i, dev in enumerate(devices):
        y = TOP + 20 + i * (BOX_H + GAP)
        boxes.append({**dev, "x": box_x, "y": y})
        for net_id in sorted(links_of.get(dev["id"], ())):
            x = GAP + column[net_id] * COL_W + 12
            lines.append({"x1": x, "y1": y + BOX_H // 2, "x2": box_x, "y2": y + BOX_H // 2})
    return ctx.render("topology.html", title="Network topology", networks=net_shapes,
                      boxes=boxes, lines=lines, width=width, height=height, box_w=BOX_W,
                      box_h=BOX_H, net_h=height - TOP, top=TOP)

