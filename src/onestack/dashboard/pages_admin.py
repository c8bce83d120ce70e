"""Admin pages (the ``admin`` role): every project's instances, projects, users, roles,
flavors, hypervisors and their usage, and the services and agents with their liveness."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from starlette.responses import Response

from onestack.dashboard.cloud import ApiFailure
from onestack.dashboard.pages_compute import PAGE_SIZE, _names, paging, server_rows
from onestack.dashboard.routes import Pages
from onestack.dashboard.ui import Action, Field, Form, Row, Table, cell, status

if TYPE_CHECKING:
    from onestack.dashboard.app import Ctx


PAGES = Pages(admin=True)


@PAGES.get("/admin/")
async def hypervisors(ctx: Ctx) -> Response:
    doc = await ctx.cloud.get("compute", "/os-hypervisors/detail", limit="1000")
    rows = [Row([cell(h["hypervisor_hostname"]), cell(h.get("hypervisor_type")),
                 cell(f"{h.get('vcpus_used', 0)} / {h.get('vcpus', 0)}"),
                 cell(f"{h.get('memory_mb_used', 0)} / {h.get('memory_mb', 0)}"),
                 cell(f"{h.get('local_gb_used', 0)} / {h.get('local_gb', 0)}"),
                 cell(h.get("running_vms")), status(h.get("state"))])
            for h in doc.get("hypervisors", [])]
    return ctx.render("page.html", title="Hypervisors", forms=[], links=[], tables=[
        Table("Hypervisors", ["Host", "Type", "VCPUs used", "RAM used (MB)",
                              "Disk used (GB)", "Instances", "State"], rows)])


@PAGES.get("/admin/instances/")
async def all_instances(ctx: Ctx) -> Response:
    marker = ctx.request.query_params.get("marker")
    doc, (images, _fl) = await asyncio.gather(
        ctx.cloud.get("compute", "/servers/detail", all_tenants="1", limit=str(PAGE_SIZE),
                      marker=marker), _names(ctx))
    servers = doc.get("servers", [])
    nxt, prev = paging(ctx, servers, "/admin/instances/")
    table = Table("All instances", ["Name", "Project", "Host", "Image", "IP addresses",
                                    "Flavor", "Key pair", "Status", "Task",
                                    "Availability zone", "Created"],
                  server_rows(servers, images, admin=True), next_url=nxt, prev_url=prev)
    return ctx.render("page.html", title="All instances", tables=[table], forms=[],
                      links=[], live=True)


@PAGES.get("/admin/projects/")
async def projects(ctx: Ctx) -> Response:
    doc = await ctx.cloud.get("identity", "/projects")
    rows = [Row([cell(p["name"]), cell(p["id"]), cell(p.get("domain_id")),
                 cell(p.get("description")), cell(p.get("enabled"))])
            for p in doc["projects"]]
    return ctx.render("page.html", title="Projects", forms=[], links=[], tables=[
        Table("Projects", ["Name", "ID", "Domain", "Description", "Enabled"], rows)])


@PAGES.get("/admin/users/")
async def users(ctx: Ctx) -> Response:
    users_doc, roles_doc = await asyncio.gather(ctx.cloud.get("identity", "/users"),
                                                ctx.cloud.get("identity", "/roles"))
    rows = [Row([cell(u["name"]), cell(u["id"]), cell(u.get("domain_id")),
                 cell(u.get("email")), cell(u.get("enabled"))]) for u in users_doc["users"]]
    roles = [Row([cell(r["name"]), cell(r["id"])]) for r in roles_doc["roles"]]
    return ctx.render("page.html", title="Users", forms=[], links=[], tables=[
        Table("Users", ["Name", "ID", "Domain", "E-mail", "Enabled"], rows),
        Table("Roles", ["Name", "ID"], roles)])


@PAGES.get("/admin/flavors/")
async def flavors(ctx: Ctx) -> Response:
    doc = await ctx.cloud.get("compute", "/flavors/detail", is_public="None")
    rows = [Row([cell(f["name"]), cell(f["id"]), cell(f["vcpus"]), cell(f["ram"]),
                 cell(f["disk"]), cell(f.get("os-flavor-access:is_public"))],
                actions=[Action("Delete", f"/admin/flavors/{f['id']}/delete",
                                confirm=f"Delete flavor {f['name']}?", danger=True)])
            for f in doc["flavors"]]
    form = Form("Create flavor", "/admin/flavors/create", [
        Field("name", "Name", required=True), Field("vcpus", "VCPUs", "number", value="1"),
        Field("ram", "RAM (MB)", "number", value="512"),
        Field("disk", "Root disk (GB)", "number", value="1")], submit="Create flavor")
    return ctx.render("page.html", title="Flavors", forms=[form], links=[], tables=[
        Table("Flavors", ["Name", "ID", "VCPUs", "RAM (MB)", "Disk (GB)", "Public"], rows)])


@PAGES.post("/admin/flavors/create")
async def flavor_create(ctx: Ctx) -> Response:
    try:
        body = {"name": ctx.field("name"), "vcpus": int(ctx.field("vcpus", "1")),
                "ram": int(ctx.field("ram", "512")), "disk": int(ctx.field("disk", "0"))}
        await ctx.cloud.post("compute", "/flavors", {"flavor": body})
    except ValueError:
        return ctx.fail("/admin/flavors/", "VCPUs, RAM and disk are whole numbers.")
    except ApiFailure as exc:
        return ctx.fail("/admin/flavors/", exc)
    return ctx.redirect("/admin/flavors/", ok="Flavor created.")


PAGES.deletes("/admin/flavors/{id}/delete", "compute", "/flavors/{id}",
              back="/admin/flavors/", ok="Flavor deleted.")


@PAGES.get("/admin/services/")
async def services(ctx: Ctx) -> Response:
    async def optional(service: str, path: str, key: str) -> list[dict[str, Any]]:
        if service not in ctx.session.catalog:
            return []
        try:
            return list((await ctx.cloud.get(service, path))[key])
        except ApiFailure:
            return []

    comp, agents, vol = await asyncio.gather(
        optional("compute", "/os-services", "services"),
        optional("network", "/v2.0/agents", "agents"),
        optional("block-storage", "/os-services", "services"))
    rows = [Row([cell(s["binary"]), cell(s["host"]), cell(s.get("zone")),
                 cell(s.get("status")), status(s.get("state")), cell(s.get("updated_at"))])
            for s in comp + vol]
    arows = [Row([cell(a["agent_type"]), cell(a["host"]),
                  status("up" if a.get("alive") else "down"), cell(a.get("admin_state_up")),
                  cell(a.get("heartbeat_timestamp"))]) for a in agents]
    return ctx.render("page.html", title="System information", forms=[], links=[], tables=[
        Table("Compute and volume services", ["Binary", "Host", "Zone", "Status", "State",
                                              "Updated at"], rows),
        Table("Network agents", ["Type", "Host", "Alive", "Admin state", "Last heartbeat"],
              arows)])
