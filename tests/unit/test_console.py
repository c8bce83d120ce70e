"""Console proxy units: token store (hashing, expiry, deleted instances), token forms,
Origin checks and the noVNC pages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from onestack.console.proxy import origin_allowed, token_from_request
from onestack.console.static import FALLBACK_PAGE, StaticPages, find_novnc
from onestack.console.tokens import ConsoleTokenStore, hash_token
from onestack.db.compute import Instance
from onestack.db.console import ConsoleAuthToken
from onestack.db.engine import Database
from onestack.db.migrate import upgrade


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'console.db'}")
    upgrade(database.engine)
    try:
        yield database
    finally:
        database.dispose()


def add_instance(db: Database, uuid: str, deleted: bool = False) -> None:
    now = dt.datetime(2026, 1, 1)
    with db.transaction() as s:
        s.add(Instance(uuid=uuid, project_id="p", user_id="u", created_at=now,
                       updated_at=now, deleted=deleted))


UUID = "11111111-2222-3333-4444-555555555555"


def test_token_round_trip_and_only_hash_stored(db: Database) -> None:
    add_instance(db, UUID)
    store = ConsoleTokenStore(db, ttl=600, clock=Clock())
    token, conn = store.create(UUID, "novnc", "127.0.0.1", 5901, "host1")
    assert len(token) >= 40 and conn.port == 5901 and conn.expires == 1_000_600
    got = store.validate(token)
    assert got is not None and got == conn
    assert store.validate(token) == conn  # reusable until it expires (noVNC reconnects)
    with db.reader() as s:
        rows = s.query(ConsoleAuthToken).all()
    assert [r.token_hash for r in rows] == [hash_token(token)]
    assert token not in rows[0].token_hash


def test_token_expiry_and_pruning(db: Database) -> None:
    add_instance(db, UUID)
    clock = Clock()
    store = ConsoleTokenStore(db, ttl=10, clock=clock)
    token, _ = store.create(UUID, "novnc", "127.0.0.1", 5900)
    clock.now += 9
    assert store.validate(token) is not None
    clock.now += 1
    assert store.validate(token) is None
    # Creating another token deletes the expired rows.
    store.create(UUID, "novnc", "127.0.0.1", 5900)
    with db.reader() as s:
        assert s.query(ConsoleAuthToken).count() == 1
    clock.now += 100
    assert store.prune_expired() == 1


@pytest.mark.parametrize("bad", ["", "x", "bad" * 200, "\x00", "a b"])
def test_malformed_or_unknown_tokens(db: Database, bad: str) -> None:
    store = ConsoleTokenStore(db)
    assert store.validate(bad) is None


def test_tokens_die_with_their_instance(db: Database) -> None:
    add_instance(db, UUID)
    store = ConsoleTokenStore(db)
    token, _ = store.create(UUID, "novnc", "127.0.0.1", 5900)
    with db.transaction() as s:
        s.get(Instance, UUID).deleted = True  # type: ignore[union-attr]
    assert store.validate(token) is None
    orphan, _ = store.create("no-such-instance", "novnc", "127.0.0.1", 5900)
    assert store.validate(orphan) is None
    assert store.delete_for_instance(UUID) == 1


def test_ttl_must_be_positive(db: Database) -> None:
    with pytest.raises(ValueError):
        ConsoleTokenStore(db, ttl=0)


@pytest.mark.parametrize(("query", "cookie", "token"), [
    ("token=abc", None, "abc"),
    ("path=%3Ftoken%3Dabc", None, "abc"),
    ("path=/%3Ftoken%3Dabc", None, "abc"),
    ("", "token=abc", "abc"),
    ("", "other=1; token=abc", "abc"),
    ("", "path=%3Ftoken%3Dabc", "abc"),  # Tempest copies the URL's query into a cookie
    ("token=q", "token=c", "q"),
    ("", 'bad"cookie; token=abc', "abc"),
    ("", None, None),
    ("path=%3Fnothing%3D1", "x=1", None),
])
def test_token_forms(query: str, cookie: str | None, token: str | None) -> None:
    assert token_from_request(query, cookie) == token


@pytest.mark.parametrize(("origin", "host", "allowed", "ok"), [
    (None, "127.0.0.1:6080", [], True),  # not a browser
    ("http://127.0.0.1:6080", "127.0.0.1:6080", [], True),
    ("https://console.example.org", "console.example.org:6080", [], True),
    ("http://CONSOLE.example.org", "console.example.org", [], True),
    ("http://evil.example.com", "127.0.0.1:6080", [], False),
    ("http://dash.example.org", "127.0.0.1:6080", ["dash.example.org"], True),
    ("http://dash.example.org", "127.0.0.1:6080", ["other.example.org"], False),
    ("null", "127.0.0.1:6080", [], False),
    ("file:///etc/passwd", "127.0.0.1:6080", [], False),
    ("ftp://127.0.0.1", "127.0.0.1:6080", [], False),
    ("http://[::1]:6080", "[::1]:6080", [], True),
    ("http://[bad", "127.0.0.1", [], False),
])
def test_origin_checks(origin: str | None, host: str, allowed: list[str], ok: bool) -> None:
    assert origin_allowed(origin, host, allowed) is ok


def test_fallback_page_without_novnc() -> None:
    pages = StaticPages(None)
    for name in ("/vnc_lite.html", "/vnc_auto.html", "/vnc.html"):
        page = pages.get(name)
        assert page is not None and page.body == FALLBACK_PAGE.encode()
        assert "noVNC" in FALLBACK_PAGE and "<script" in FALLBACK_PAGE
    assert pages.get("/core/rfb.js") is None


def test_novnc_directory_is_served_and_contained(tmp_path: Path) -> None:
    root = tmp_path / "novnc"
    (root / "core").mkdir(parents=True)
    (root / "vnc_lite.html").write_text("<html>noVNC lite<script></script></html>")
    (root / "core" / "rfb.js").write_text("export default 1;")
    (tmp_path / "secret.txt").write_text("no")
    assert find_novnc(str(root)) == root.resolve()
    assert find_novnc(str(tmp_path / "missing")) is None
    pages = StaticPages(root)
    lite = pages.get("/vnc_lite.html")
    assert lite is not None and b"noVNC lite" in lite.body
    alias = pages.get("/vnc_auto.html")  # the old name falls back to vnc_lite.html
    assert alias is not None and alias.body == lite.body
    js = pages.get("/core/rfb.js")
    assert js is not None and js.content_type == "text/javascript"
    for bad in ("/../secret.txt", "/core/../../secret.txt", "/", "/missing.js", "/core"):
        assert pages.get(bad) is None, bad


class _InlineDb:
    """``Database.run`` as the agent uses it (calls in place)."""

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)


class _Manager:
    """Just what the agent's get_vnc_console reads."""

    def __init__(self, known: set[str]) -> None:
        self.known = known
        self.db = _InlineDb()

    def get_instance(self, ctx: object, uuid: str) -> dict[str, str]:
        if uuid not in self.known:
            raise LookupError(uuid)
        return {"uuid": uuid}


async def test_agent_reports_vnc_console(monkeypatch: pytest.MonkeyPatch) -> None:
    from onestack.agents.compute import ComputeAgent
    from onestack.agents.compute_context import AgentContext
    from onestack.drivers.hypervisor.base import Capabilities, PowerState
    from onestack.drivers.hypervisor.fake import FakeDriver

    monkeypatch.setattr(AgentContext, "spec", staticmethod(lambda inst: {"uuid": inst["uuid"]}))
    driver = FakeDriver("console-unit")
    await driver.spawn({"uuid": UUID, "name": "vm", "flavor": {}})
    agent = ComputeAgent("console-unit", driver, _Manager({UUID}), None)  # type: ignore[arg-type]
    try:
        info = await agent.get_vnc_console(UUID)
        assert info["host"] == "127.0.0.1" and info["port"] == driver.vnc.port
        assert (await agent.get_vnc_console("gone"))["error"] == "not_ready"
        driver.guests[UUID].state = PowerState.SHUTDOWN
        stopped = await agent.get_vnc_console(UUID)
        assert stopped["error"] == "not_ready" and "not running" in stopped["message"]
        monkeypatch.setattr(driver, "capabilities", Capabilities(supports_remote_console=False))
        assert await agent.get_vnc_console(UUID) == {"error": "unavailable"}
    finally:
        await driver.cleanup_host()
        FakeDriver.registry.pop("console-unit", None)
