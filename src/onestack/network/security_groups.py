"""Security groups (with each project's default group) and their rules."""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, Forbidden
from onestack.db import network as t
from onestack.network import schemas as sc
from onestack.network import views
from onestack.network.base import ManagerBase
from onestack.network.common import conflict, not_found


class SecurityGroupsMixin(ManagerBase):
    """Security groups (with each project's default group) and their rules."""

    # ================================================================== security groups
    def _ensure_default_sg(self, s: Session, project_id: str | None) -> str | None:
        """The project's ``default`` group, created (with its standard rules) on first use."""
        if not project_id:
            return None
        cached = self._default_sgs.get(project_id)
        if cached is not None:
            return cached
        row = s.get(t.DefaultSecurityGroup, project_id)
        if row is not None:
            self._default_sgs[project_id] = row.security_group_id
            return row.security_group_id
        sg = self._stamp(t.SecurityGroup(id=str(uuid.uuid4()), project_id=project_id,
                                         name="default",
                                         description="Default security group"))
        s.add(sg)
        s.flush()
        s.add(t.DefaultSecurityGroup(project_id=project_id, security_group_id=sg.id))
        for eth in ("IPv4", "IPv6"):
            self._add_rule_row(s, sg, "egress", eth)
            self._add_rule_row(s, sg, "ingress", eth, remote_group_id=sg.id)
        s.flush()
        return sg.id

    def ensure_default_security_group(self, project_id: str) -> str:
        """Create the project's default group if missing; returns its id (compute uses it)."""
        def run(s: Session) -> str:
            sid = self._ensure_default_sg(s, project_id)
            assert sid is not None
            return sid
        return self._tx(run)

    def _add_rule_row(self, s: Session, sg: t.SecurityGroup, direction: str, ethertype: str,
                      **kw: Any) -> t.SecurityGroupRule:
        rule = self._stamp(t.SecurityGroupRule(
            id=str(uuid.uuid4()), security_group_id=sg.id, project_id=sg.project_id,
            direction=direction, ethertype=ethertype, **kw))
        s.add(rule)
        return rule

    def _sg_visible(self, ctx: RequestContext, sg: t.SecurityGroup) -> bool:
        return ctx.is_admin or sg.project_id == ctx.project_id

    def _get_sg(self, s: Session, ctx: RequestContext, gid: str) -> t.SecurityGroup:
        sg = s.get(t.SecurityGroup, gid)
        if sg is None or not self._sg_visible(ctx, sg):
            raise not_found(t.SecurityGroup, gid)
        return sg

    def _default_sg_first(self, ctx: RequestContext) -> None:
        if ctx.project_id:
            with self.db.reader() as s:
                if s.get(t.DefaultSecurityGroup, ctx.project_id) is not None:
                    return
            self._tx(self._ensure_default_sg, ctx.project_id)

    def list_security_groups(self, ctx: RequestContext) -> list[dict[str, Any]]:
        self._default_sg_first(ctx)
        return self._read(lambda s: self._sg_views(s, self._project_rows(
            s, ctx, t.SecurityGroup, t.SecurityGroup.created_at)))

    def get_security_group(self, ctx: RequestContext, gid: str) -> dict[str, Any]:
        return self._read(lambda s: self._sg_views(
            s, [self._readable(s, ctx, self._get_sg(s, ctx, gid))])[0])

    def create_security_groups(self, ctx: RequestContext, bodies: list[dict[str, Any]]
                               ) -> list[dict[str, Any]]:
        return self._create_all(ctx, bodies, self._create_sg, self._sg_views)

    def _create_sg(self, s: Session, ctx: RequestContext, body: dict[str, Any]
                   ) -> t.SecurityGroup:
        sc.check_keys(body, sc.SECURITY_GROUP_KEYS, "security_group")
        project = self._owner_for_create(ctx, body, "security_group")
        self._ensure_default_sg(s, project)
        name = sc.to_str(body.get("name", ""), "name") or ""
        if name == "default":
            raise conflict("Default security group already exists.",
                           "SecurityGroupDefaultAlreadyExists")
        self._check_quota(s, project, "security_group")
        sg = self._stamp(t.SecurityGroup(id=str(uuid.uuid4()), project_id=project,
                                         name=name))
        sg.description = sc.to_str(body.get("description", ""), "description") or ""
        sg.stateful = sc.to_bool(body.get("stateful", True), "stateful")
        s.add(sg)
        s.flush()
        for eth in ("IPv4", "IPv6"):
            self._add_rule_row(s, sg, "egress", eth)
        return sg

    def update_security_group(self, ctx: RequestContext, gid: str, body: dict[str, Any],
                              revision: int | None = None) -> dict[str, Any]:
        def run(s: Session) -> dict[str, Any]:
            sc.check_keys(body, sc.SECURITY_GROUP_KEYS, "security_group")
            sg = self._get_sg(s, ctx, gid)
            self._change(ctx, "update_security_group", *self._row_target(s, ctx, sg),
                         t.SecurityGroup)
            self._check_revision(sg, revision)
            if "name" in body:
                name = sc.to_str(body["name"], "name") or ""
                if sg.name == "default" and name != "default":
                    raise conflict("Updating default security group not allowed.",
                                   "SecurityGroupCannotUpdateDefault")
                if name == "default" and sg.name != "default":
                    raise conflict("Default security group already exists.",
                                   "SecurityGroupDefaultAlreadyExists")
                sg.name = name
            if "description" in body:
                sg.description = sc.to_str(body["description"], "description") or ""
            if "stateful" in body:
                sg.stateful = sc.to_bool(body["stateful"], "stateful")
            self._updated(s, sg, body)
            return self._sg_views(s, [sg])[0]
        doc = self._tx(run)
        self.driver.security_group_updated(doc)
        return doc

    def delete_security_group(self, ctx: RequestContext, gid: str,
                              revision: int | None = None) -> None:
        def run(s: Session) -> None:
            sg = self._get_sg(s, ctx, gid)
            self._change(ctx, "delete_security_group", *self._row_target(s, ctx, sg),
                         t.SecurityGroup)
            self._check_revision(sg, revision)
            default = s.get(t.DefaultSecurityGroup, sg.project_id)
            if default is not None and default.security_group_id == sg.id:
                if not ctx.is_admin:
                    raise conflict("Insufficient rights for removing default security group.",
                                   "SecurityGroupCannotRemoveDefault")
                s.delete(default)
                self._default_sgs.pop(sg.project_id, None)
            if s.execute(select(t.PortSecurityGroup.port_id).where(
                    t.PortSecurityGroup.security_group_id == gid)).first():
                raise conflict(f"Security Group {gid} in use.", "SecurityGroupInUse")
            s.execute(delete(t.Tag).where(t.Tag.resource_id == gid))
            s.execute(delete(t.SecurityGroupRule).where(
                t.SecurityGroupRule.security_group_id == gid))
            s.delete(sg)
        self._tx(run)

    def list_security_group_rules(self, ctx: RequestContext) -> list[dict[str, Any]]:
        self._default_sg_first(ctx)

        def run(s: Session) -> list[dict[str, Any]]:
            stmt = select(t.SecurityGroupRule).order_by(t.SecurityGroupRule.created_at)
            if not ctx.is_admin:
                own = select(t.SecurityGroup.id).where(
                    t.SecurityGroup.project_id == (ctx.project_id or ""))
                stmt = stmt.where((t.SecurityGroupRule.project_id == (ctx.project_id or ""))
                                  | t.SecurityGroupRule.security_group_id.in_(own))
            return [views.security_group_rule(r) for r in s.execute(stmt).scalars()]
        return self._read(run)

    @staticmethod
    def _visible_rule(s: Session, ctx: RequestContext, rid: str
                      ) -> tuple[t.SecurityGroupRule, t.SecurityGroup | None]:
        """A rule the caller may see (its own, or in its own group) and the rule's group."""
        rule = s.get(t.SecurityGroupRule, rid)
        if rule is None:
            raise not_found(t.SecurityGroupRule, rid)
        sg = s.get(t.SecurityGroup, rule.security_group_id)
        if not ctx.is_admin and rule.project_id != ctx.project_id and (
                sg is None or sg.project_id != ctx.project_id):
            raise not_found(t.SecurityGroupRule, rid)
        return rule, sg

    def get_security_group_rule(self, ctx: RequestContext, rid: str) -> dict[str, Any]:
        return self._read(lambda s: views.security_group_rule(
            self._visible_rule(s, ctx, rid)[0]))

    def create_security_group_rules(self, ctx: RequestContext, bodies: list[dict[str, Any]]
                                    ) -> list[dict[str, Any]]:
        def run(s: Session) -> tuple[list[dict[str, Any]], set[str]]:
            rows = [self._create_rule(s, ctx, b) for b in bodies]
            s.flush()
            return [views.security_group_rule(r) for r in rows], {
                r.security_group_id for r in rows}
        docs, groups = self._tx(run)
        for gid in groups:
            self.driver.security_group_updated({"id": gid})
        return docs

    @staticmethod
    def _norm_protocol(value: Any, ethertype: str) -> str | None:
        if value is None or value == "" or (isinstance(value, str) and value.lower() == "any"):
            return None
        if isinstance(value, bool):
            raise BadRequest(f"Security group rule protocol {value} not supported.",
                             kind="SecurityGroupRuleInvalidProtocol")
        text = str(value).lower()
        if text.isdigit():
            if not 0 <= int(text) <= 255:
                raise BadRequest(f"Security group rule protocol {value} not supported. Only "
                                 "protocol values [...] and integer representations [0 to 255] "
                                 "are supported.", kind="SecurityGroupRuleInvalidProtocol")
            return str(int(text))
        if text not in sc.PROTOCOLS:
            raise BadRequest(f"Security group rule protocol {value} not supported. Only "
                             f"protocol values {sorted(sc.PROTOCOLS)} and integer "
                             "representations [0 to 255] are supported.",
                             kind="SecurityGroupRuleInvalidProtocol")
        return text

    def _create_rule(self, s: Session, ctx: RequestContext, body: dict[str, Any]
                     ) -> t.SecurityGroupRule:
        sc.check_keys(body, sc.SECURITY_GROUP_RULE_KEYS, "security_group_rule")
        if "security_group_id" not in body:
            raise sc.bad("Failed to parse request. Required attribute 'security_group_id' not "
                         "specified")
        gid = str(body["security_group_id"])
        found = s.get(t.SecurityGroup, gid)
        if found is None:
            raise not_found(t.SecurityGroup, gid)
        # Neutron's rule names the group's owner (sg_owner): another project's group is
        # refused (403) before it is looked up as the caller.
        self.authz.create(ctx, "security_group_rule", {
            "project_id": sc.project_of(body, ctx.project_id) or found.project_id,
            "security_group:project_id": found.project_id})
        sg = self._get_sg(s, ctx, gid)
        project = sc.project_of(body, sg.project_id) or sg.project_id
        if project != sg.project_id and not ctx.is_admin:
            raise Forbidden("Not allowed to create a rule for another project.",
                            kind="PolicyNotAuthorized")
        direction = body.get("direction")
        if direction not in ("ingress", "egress"):
            raise sc.invalid("direction", direction,
                             f"'{direction}' is not in ['ingress', 'egress']")
        ethertype = body.get("ethertype", "IPv4")
        if isinstance(ethertype, str) and ethertype.lower() in ("ipv4", "ipv6"):
            ethertype = "IPv4" if ethertype.lower() == "ipv4" else "IPv6"
        else:
            raise BadRequest(f"Invalid input for ethertype. Reason: '{ethertype}' is not in "
                             "['IPv4', 'IPv6']", kind="SecurityGroupRuleInvalidEtherType")
        protocol = self._norm_protocol(body.get("protocol"), ethertype)
        pmin = sc.to_int(body.get("port_range_min"), "port_range_min", nullable=True)
        pmax = sc.to_int(body.get("port_range_max"), "port_range_max", nullable=True)
        if protocol in sc.PORT_PROTOCOLS:
            if pmin is None and pmax is not None:
                raise BadRequest("For TCP/UDP protocols, port_range_min must be <= "
                                 "port_range_max", kind="SecurityGroupInvalidPortRange")
            for val in (pmin, pmax):
                if val is not None and not 1 <= val <= 65535:
                    raise BadRequest(f"Invalid value for port {val}.",
                                     kind="SecurityGroupInvalidPortValue")
            if pmin is not None and pmax is None:
                pmax = pmin
            if pmin is not None and pmax is not None and pmin > pmax:
                raise BadRequest("For TCP/UDP protocols, port_range_min must be <= "
                                 "port_range_max", kind="SecurityGroupInvalidPortRange")
        elif protocol in sc.ICMP_PROTOCOLS:
            for name, val in (("type", pmin), ("code", pmax)):
                if val is not None and not 0 <= val <= 255:
                    raise BadRequest(f"Invalid value for ICMP {name} (port-range-min): {val}",
                                     kind="SecurityGroupInvalidIcmpValue")
            if pmin is None and pmax is not None:
                raise BadRequest(f"ICMP code (port-range-max) {pmax} is provided but ICMP "
                                 "type (port-range-min) is missing.",
                                 kind="SecurityGroupMissingIcmpType")
        elif pmin is not None or pmax is not None:
            raise BadRequest("Port range is only supported for TCP, UDP, SCTP, DCCP and "
                             "UDP-Lite protocols (and ICMP type/code).",
                             kind="SecurityGroupInvalidProtocolForPortRange")
        prefix = body.get("remote_ip_prefix")
        remote_group = body.get("remote_group_id")
        if prefix is not None and remote_group is not None:
            raise BadRequest("Only remote_ip_prefix or remote_group_id may be provided.",
                             kind="SecurityGroupRemoteGroupAndRemoteIpPrefix")
        if prefix is not None:
            if not isinstance(prefix, str):
                raise sc.invalid("remote_ip_prefix", prefix,
                                 f"'{prefix}' is not a valid IP subnet.")
            try:
                net = ipaddress.ip_network(prefix, strict=False)
            except ValueError:
                raise sc.invalid("remote_ip_prefix", prefix,
                                 f"'{prefix}' is not a valid IP subnet.") from None
            if f"IPv{net.version}" != ethertype:
                raise BadRequest(f"Conflicting value ethertype {ethertype} for CIDR {prefix}",
                                 kind="SecurityGroupRuleParameterConflict")
            # Kept as given, host bits included, with the mask added when absent (as Neutron
            # does); duplicates are found on the normalised network.
            prefix = prefix.strip() if "/" in prefix else f"{prefix.strip()}/{net.max_prefixlen}"
        if remote_group is not None:
            rg = s.get(t.SecurityGroup, remote_group)
            if rg is None or not (ctx.is_admin or rg.project_id in (ctx.project_id, project)):
                raise not_found(t.SecurityGroup, str(remote_group))
        for other in s.execute(select(t.SecurityGroupRule).where(
                t.SecurityGroupRule.security_group_id == sg.id)).scalars():
            if (other.direction, other.ethertype, other.protocol, other.port_range_min,
                    other.port_range_max, _normal(other.remote_ip_prefix),
                    other.remote_group_id) == (direction, ethertype, protocol, pmin, pmax,
                                               _normal(prefix), remote_group):
                raise conflict(f"Security group rule already exists. Rule id is {other.id}.",
                               "SecurityGroupRuleExists")
        self._check_quota(s, project, "security_group_rule")
        rule = self._stamp(t.SecurityGroupRule(
            id=str(uuid.uuid4()), security_group_id=sg.id, project_id=project,
            direction=direction, ethertype=ethertype, protocol=protocol, port_range_min=pmin,
            port_range_max=pmax, remote_ip_prefix=prefix, remote_group_id=remote_group,
            description=sc.to_str(body.get("description", ""), "description") or ""))
        s.add(rule)
        self._touch(sg)
        return rule

    def delete_security_group_rule(self, ctx: RequestContext, rid: str,
                                   revision: int | None = None) -> None:
        def run(s: Session) -> str:
            rule, sg = self._visible_rule(s, ctx, rid)
            self._change(ctx, "delete_security_group_rule", "security_group_rule", {
                "id": rule.id, "project_id": rule.project_id,
                "security_group:project_id": sg.project_id if sg is not None else ""},
                t.SecurityGroupRule)
            s.delete(rule)
            if sg is not None:
                self._touch(sg)
            return rule.security_group_id
        gid = self._tx(run)
        self.driver.security_group_updated({"id": gid})


def _normal(prefix: str | None) -> str | None:
    """A remote prefix in canonical form (host bits cleared), for duplicate checks."""
    if prefix is None:
        return None
    try:
        return str(ipaddress.ip_network(prefix, strict=False))
    except ValueError:
        return prefix
