from __future__ import annotations

import pytest

from onestack.api.policy import Policy, PolicyError, compile_rule
from onestack.common.errors import Forbidden

RULES = {
    "admin_required": "role:admin or is_admin:1",
    "owner": "user_id:%(target.user.id)s",
    "get_user": "rule:admin_required or rule:owner",
    "domain_reader": "role:reader and domain_id:%(target.domain_id)s",
    "sys": "role:reader and system_scope:all",
    "never": "!",
    "always": "",
    "neg": "not role:admin",
    "literal": "'member':%(kind)s",
}


@pytest.fixture
def policy() -> Policy:
    return Policy(RULES)


def test_rules(policy: Policy) -> None:
    admin = {"roles": ["admin"], "user_id": "a"}
    user = {"roles": ["member"], "user_id": "u"}
    assert policy.check("get_user", admin, {"target": {"user": {"id": "x"}}})
    assert policy.check("get_user", user, {"target": {"user": {"id": "u"}}})
    assert not policy.check("get_user", user, {"target": {"user": {"id": "x"}}})
    reader = {"roles": ["reader"], "domain_id": "d1", "system_scope": None}
    assert policy.check("domain_reader", reader, {"target": {"domain_id": "d1"}})
    assert not policy.check("domain_reader", reader, {"target": {"domain_id": "d2"}})
    assert not policy.check("domain_reader", reader, {})  # missing target never matches
    assert not policy.check("sys", reader, {})
    assert policy.check("sys", {"roles": ["reader"], "system_scope": "all"}, {})
    assert not policy.check("never", admin, {})
    assert policy.check("always", {}, {})
    assert policy.check("neg", user, {}) and not policy.check("neg", admin, {})
    assert policy.check("literal", {}, {"kind": "member"})
    # Unknown actions fall back to "default", which is missing here: deny.
    assert not policy.check("unknown:action", admin, {})


def test_enforce_raises_forbidden(policy: Policy) -> None:
    with pytest.raises(Forbidden):
        policy.enforce("never", {"roles": ["admin"]})


def test_override_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    f = tmp_path / "policy.yaml"
    f.write_text('"never": "@"\n')
    assert Policy(RULES, f).check("never", {}, {})


@pytest.mark.parametrize("bad", ["(role:a", "role:a or", "role:a )", "nocolon"])
def test_parse_errors(bad: str) -> None:
    with pytest.raises(PolicyError):
        compile_rule(bad)


def test_field_checks_read_the_target() -> None:
    """Neutron's ``field:`` checks: shared networks, network-owned ports."""
    p = Policy({"shared": "field:networks:shared=True",
                "external": "field:networks:router:external=True",
                "device": "field:port:device_owner=~^network:",
                "get": "(role:reader and project_id:%(project_id)s) or rule:shared"})
    assert p.check("shared", {}, {"shared": True})
    assert not p.check("shared", {}, {"shared": False}) and not p.check("shared", {}, {})
    assert p.check("external", {}, {"router:external": True})
    assert p.check("device", {}, {"device_owner": "network:dhcp"})
    assert not p.check("device", {}, {"device_owner": "compute:nova"})
    other = {"roles": ["reader"], "project_id": "a"}
    assert p.check("get", other, {"project_id": "b", "shared": True})
    assert not p.check("get", other, {"project_id": "b", "shared": False})


def test_service_defaults_follow_openstack() -> None:
    """A few anchors of the compute/network/placement defaults (the whole table is in
    tests/functional/test_tenancy_matrix.py): a reader reads, only a member writes."""
    from onestack.compute.policies import ACTION_RULES
    from onestack.compute.policies import RULES as NOVA
    from onestack.network.policies import RULES as NEUTRON
    from onestack.placement.policies import RULES as PLACEMENT

    nova, neutron, placement = Policy(NOVA), Policy(NEUTRON), Policy(PLACEMENT)
    reader = {"roles": ["reader"], "roles_lower": frozenset({"reader"}), "project_id": "p",
              "user_id": "u"}
    member = {"roles": ["member", "reader"], "project_id": "p", "user_id": "u"}
    manager = {"roles": ["manager", "member", "reader"], "project_id": "p", "user_id": "u"}
    admin = {"roles": ["admin"], "project_id": "x", "user_id": "a"}
    own = {"project_id": "p", "user_id": "u"}
    assert nova.check("os_compute_api:servers:show", reader, own)
    assert not nova.check("os_compute_api:servers:create", reader, own)
    assert nova.check("os_compute_api:servers:create", member, own)
    assert not nova.check("os_compute_api:servers:create", member, {"project_id": "q"})
    assert nova.check("os_compute_api:servers:create", admin, own)
    migrate = ACTION_RULES["migrate"]
    assert not nova.check(migrate, member, own) and nova.check(migrate, manager, own)
    assert nova.check("os_compute_api:os-keypairs:create", reader, own)  # user-owned
    assert all(rule in NOVA for rule in ACTION_RULES.values())
    assert not neutron.check("create_network", reader, own)
    assert neutron.check("create_network", member, own)
    assert neutron.check("get_network", reader, own)
    assert neutron.check("create_port", reader, {"project_id": "p", "shared": True,
                                                 "network:project_id": "q"})
    assert not neutron.check("create_subnet", member, {"project_id": "p", "shared": True,
                                                       "network:project_id": "q"})
    assert not neutron.check("get_quota", member, own) and neutron.check("get_quota",
                                                                         manager, own)
    assert not placement.check("placement:resource_providers:list", manager, own)
    assert placement.check("placement:usages", reader, own)
    assert not placement.check("placement:usages", reader, {"project_id": "q"})
