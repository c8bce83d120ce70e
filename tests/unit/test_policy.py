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
