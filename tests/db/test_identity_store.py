"""Identity manager and token service on every database backend."""

from __future__ import annotations

import threading

import pytest

from onestack.common.errors import Conflict, Forbidden, NotFound
from onestack.config import Settings
from onestack.db.engine import Database
from onestack.db.migrate import current, upgrade
from onestack.identity.auth import TokenService
from onestack.identity.manager import IdentityManager
from onestack.identity.records import Grant
from onestack.identity.setup import bootstrap
from onestack.identity.tokens import FernetCodec, KeyRepository, TokenFormatter


def _stack(database: Database, settings: Settings) -> tuple[IdentityManager, TokenService]:
    cred = KeyRepository(settings.credential_key_dir)
    cred.setup()
    fern = KeyRepository(settings.fernet_key_dir)
    fern.setup()
    m = IdentityManager(database, settings, FernetCodec(cred))
    return m, TokenService(m, TokenFormatter(FernetCodec(fern)), settings)


def test_migrations_idempotent(database: Database) -> None:
    rev = current(database.engine)
    assert rev is not None
    upgrade(database.engine)
    assert current(database.engine) == rev


def test_bootstrap_and_password_auth(database: Database, settings: Settings) -> None:
    settings.admin_password = "pw-admin"
    m, tokens = _stack(database, settings)
    bootstrap(m, settings, ["identity"])
    bootstrap(m, settings, ["identity"])  # idempotent
    assert len(m.list_users({"name": "admin"})) == 1
    body = {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": "pw-admin"}}},
        "scope": {"project": {"name": "admin", "domain": {"name": "Default"}}}}
    valid = tokens.authenticate(body)
    assert {r.name for r in valid.roles} == {"admin", "manager", "member", "reader"}
    again = tokens.validate(valid.token_id)
    assert again.project is not None and again.project.name == "admin"
    doc = tokens.document(valid)
    assert doc["token"]["catalog"][0]["type"] == "identity"


def test_uniqueness_and_conflicts(database: Database, settings: Settings) -> None:
    m, _ = _stack(database, settings)
    m.ensure_generation_row()
    m.create_domain("D1")
    with pytest.raises(Conflict):
        m.create_domain("d1")
    d = m.list_domains(name="D1")[0]
    m.create_project("p", d.id)
    with pytest.raises(Conflict):
        m.create_project("P", d.id)
    m.create_role("r1")
    m.create_role("r1", domain_id=d.id)  # domain-specific roles have their own namespace
    with pytest.raises(Conflict):
        m.create_role("r1")
    with pytest.raises(Forbidden):
        m.delete_domain(d.id)
    m.update_domain(d.id, {"enabled": False})
    m.delete_domain(d.id)
    with pytest.raises(NotFound):
        m.get_domain(d.id)


def test_effective_roles_inheritance_and_implication(database: Database,
                                                     settings: Settings) -> None:
    m, _ = _stack(database, settings)
    m.ensure_generation_row()
    m.create_domain("Default", domain_id="default")
    a, b = m.create_role("a"), m.create_role("b")
    m.create_implied_role(a.id, b.id)
    with pytest.raises(Forbidden):
        m.create_implied_role(b.id, a.id)  # no cycles
    parent = m.create_project("parent", "default")
    child = m.create_project("child", "default", parent_id=parent.id)
    u = m.create_user("u", "default", "pw")
    g = m.create_group("g", "default")
    m.add_member(g.id, u.id)
    m.create_grant(a.id, Grant(group_id=g.id, project_id=parent.id, inherited=True))
    names = {r.name for r in m.effective_roles(u.id, project_id=child.id)}
    assert names == {"a", "b"}
    assert m.effective_roles(u.id, project_id=parent.id) == []
    m.remove_member(g.id, u.id)
    assert m.effective_roles(u.id, project_id=child.id) == []


def test_concurrent_creates_one_wins(database: Database, settings: Settings) -> None:
    m, _ = _stack(database, settings)
    m.ensure_generation_row()
    m.create_domain("Default", domain_id="default")
    results: list[str] = []

    def worker() -> None:
        try:
            m.create_project("race", "default")
            results.append("ok")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 1 and results.count("conflict") == 5


def test_cross_process_cache_and_revocations(database: Database, settings: Settings) -> None:
    """A second manager on the same database (another process) sees changes on refresh."""
    m1, t1 = _stack(database, settings)
    m2, t2 = _stack(database, settings)
    settings.admin_password = "pw"
    bootstrap(m1, settings, ["identity"])
    m2.refresh()
    body = {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": "pw"}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}
    valid = t1.authenticate(body)
    assert t2.validate(valid.token_id).user.name == "admin"
    t1.revoke_token(valid)
    m2.refresh()
    with pytest.raises(Exception):  # noqa: B017 - Unauthorized
        t2.validate(valid.token_id)
