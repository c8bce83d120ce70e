"""Runs the bad-input fuzzer against a running cloud and checks its invariants.

For every endpoint (``routes.enumerate_endpoints``) a few requests, each with one or two
things wrong: a bad id in the path, a bad query string, a bad header (token, microversion,
content type) or a mutated body (``values.mutate_body`` of a plausible body built from what
the cloud itself shows for that path). Checked:

* no response is a 5xx and no request hangs (a transport error or timeout is a failure);
* a refused write stores nothing: for each write endpoint whose requests were all refused,
  the listing (POST) or the resource (PUT/PATCH) reads the same before and after;
* every list and show of every service still answers without a 5xx (stored poison would make
  them fail) — swept every few endpoints and at the end, with the users' own tokens;
* every service still answers ``/healthcheck``.

Destructive requests are kept away from what the run needs: ``DELETE`` only ever names a bad
id last, and the admin user/project, the default domain and the roles are only ever read.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import httpx

from tests.fuzz import values
from tests.fuzz.routes import PARAM, Endpoint

#: Headers that select the newest behaviour of each service when listing/showing.
LATEST = {"compute": {"OpenStack-API-Version": "compute latest"},
          "placement": {"OpenStack-API-Version": "placement latest"}}
#: Identity objects the run needs intact: never renamed, disabled or deleted.
PROTECTED_NAMES = {"admin", "member", "reader", "manager", "service", "Default", "default",
                   "fuzz-member"}
#: Keys that change on their own (or on a successful request elsewhere).
VOLATILE = {"updated", "updated_at", "progress", "last_used", "expires_at", "issued_at",
            "OS-EXT-STS:task_state", "OS-EXT-STS:power_state", "host_status",
            "usages", "resource_provider_generation", "generation"}
#: Action bodies the compute and image APIs take (mutated like any other template).
COMPUTE_ACTIONS: list[dict[str, Any]] = [
    {"os-start": None}, {"os-stop": None}, {"reboot": {"type": "SOFT"}},
    {"resize": {"flavorRef": "1"}}, {"confirmResize": None}, {"revertResize": None},
    {"rebuild": {"imageRef": "IMAGE", "name": "r"}}, {"createImage": {"name": "snap"}},
    {"addSecurityGroup": {"name": "default"}}, {"removeSecurityGroup": {"name": "default"}},
    {"lock": {"locked_reason": "x"}}, {"unlock": None}, {"pause": None}, {"unpause": None},
    {"suspend": None}, {"resume": None}, {"shelve": None}, {"unshelve": None},
    {"shelveOffload": None}, {"rescue": {"adminPass": "x"}}, {"unrescue": None},
    {"changePassword": {"adminPass": "x"}}, {"os-getConsoleOutput": {"length": 10}},
    {"os-resetState": {"state": "active"}}, {"migrate": None}, {"trigger_crash_dump": None},
    {"os-getVNCConsole": {"type": "novnc"}}, {"addFixedIp": {"networkId": "x"}},
    {"evacuate": {"host": "h"}}, {"os-resetNetwork": None}, {"injectNetworkInfo": None},
    {"restore": None}, {"forceDelete": None}, {"addFloatingIp": {"address": "1.2.3.4"}},
    {"os-migrateLive": {"host": None, "block_migration": "auto"}},
]
FLAVOR_ACTIONS: list[dict[str, Any]] = [{"addTenantAccess": {"tenant": "p"}},
                                        {"removeTenantAccess": {"tenant": "p"}}]
AGGREGATE_ACTIONS: list[dict[str, Any]] = [
    {"add_host": {"host": "h"}}, {"remove_host": {"host": "h"}},
    {"set_metadata": {"metadata": {"k": "v"}}}]
#: Compute actions sent only with bad ids (none: every action's body is validated).
SKIP_ACTIONS: set[str] = set()


@dataclass
class Failure:
    """One request that broke an invariant."""

    what: str
    endpoint: str
    request: str
    status: int
    detail: str

    def __str__(self) -> str:
        return f"[{self.what}] {self.endpoint}: {self.request} -> {self.status} {self.detail}"


@dataclass
class Stats:
    """Response counts of one service."""

    requests: int = 0
    codes: Counter[str] = field(default_factory=Counter)

    def add(self, status: int) -> None:
        self.requests += 1
        self.codes["error" if status < 0 else f"{status // 100}xx"] += 1


class Fuzzer:
    """One seeded run against a cloud reachable at ``urls`` (service -> base URL)."""

    def __init__(self, urls: dict[str, str], admin_token: str, member_token: str,
                 endpoints: list[Endpoint], seed: int, timeout: float = 30.0,
                 protected_ids: Iterable[str] = ()) -> None:
        self.urls = urls
        self.admin = admin_token
        self.member = member_token
        self.endpoints = [e for e in endpoints if e.service in urls]
        self.rng = random.Random(seed)
        self.http = httpx.Client(timeout=timeout)
        self.stats: dict[str, Stats] = {s: Stats() for s in urls}
        self.failures: list[Failure] = []
        self.protected = set(protected_ids)
        self._ids: dict[tuple[str, str], list[str]] = {}
        self._docs: dict[tuple[str, str], Any] = {}
        self.image_id = ""

    # ------------------------------------------------------------------ plumbing
    def send(self, service: str, method: str, path: str, *, query: str = "",
             headers: dict[str, str] | None = None, body: bytes | None = None,
             count: bool = True) -> tuple[int, bytes]:
        url = self.urls[service] + path + (f"?{query}" if query else "")
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        try:
            r = self.http.request(method, url, headers=hdrs, content=body)
            status, content = r.status_code, r.content
        except httpx.TimeoutException:
            status, content = -1, b"timeout"
        except (httpx.HTTPError, UnicodeError, ValueError) as exc:
            # A client-side refusal (httpx would not send it) is no server failure.
            if isinstance(exc, httpx.TransportError) and not isinstance(
                    exc, httpx.UnsupportedProtocol | httpx.LocalProtocolError):
                status, content = -1, repr(exc).encode()
            else:
                return -2, b""
        if count:
            self.stats[service].add(status)
        return status, content

    def _get_json(self, service: str, path: str, token: str | None = None) -> Any:
        status, content = self.send(service, "GET", path, count=False,
                                    headers={"X-Auth-Token": token or self.admin,
                                             **LATEST.get(service, {})})
        if status != 200:
            return None
        try:
            return json.loads(content)
        except ValueError:
            return None

    # ------------------------------------------------------------------ discovery
    def ids_at(self, service: str, path: str) -> list[str]:
        """Ids (or keys, names, tags) of what ``GET path`` lists, cached; protected ones
        and ones that do not fit in a path are left out."""
        key = (service, path)
        if key in self._ids:
            return self._ids[key]
        doc = self._get_json(service, path)
        found: list[str] = []
        if path == "/v2.0" and isinstance(doc, dict):  # network: the collections
            found = [r["collection"] for r in doc.get("resources", []) if "collection" in r]
        elif isinstance(doc, dict):
            for value in doc.values():
                found.extend(_ids_in(value))
        elif isinstance(doc, list):
            found.extend(_ids_in(doc))
        found = [i for i in found if i not in self.protected and "/" not in i][:20]
        self._ids[key] = found
        return found

    def template(self, ep: Endpoint, path: str) -> Any:
        """A plausible body for ``ep`` at ``path``: what the cloud shows there."""
        if ep.template.endswith("/action"):
            table = {"compute": COMPUTE_ACTIONS}
            if "/flavors/" in ep.template:
                return self.rng.choice(FLAVOR_ACTIONS)
            if "os-aggregates" in ep.template:
                return self.rng.choice(AGGREGATE_ACTIONS)
            doc = self.rng.choice(table.get(ep.service, [{"x": None}]))
            return json.loads(json.dumps(doc).replace("IMAGE", self.image_id))
        if ep.template == "/v3/auth/tokens":
            return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
                "name": "fuzz-member", "domain": {"id": "default"}, "password": "x"}}}}}
        if ep.service == "image" and ep.method == "PATCH":
            return [{"op": "replace", "path": "/name", "value": "x"}]
        key = (ep.service, path)
        if key not in self._docs:
            doc = self._get_json(ep.service, path)
            if ep.method == "POST" and isinstance(doc, dict):
                detail = self._get_json(ep.service, path + "/detail")
                doc = detail if isinstance(detail, dict) else doc
                doc = _item_template(doc)
            self._docs[key] = doc
        return self._docs[key]

    def fill(self, ep: Endpoint, bad: bool) -> str:
        """``ep``'s path with real ids (or, where ``bad``, bad ones) for its parameters."""
        parts = PARAM.split(ep.template)
        # PARAM.split alternates: literal, name, literal, name, ...
        path = parts[0]
        names = parts[1::2]
        literals = parts[2::2]
        bad_at = self.rng.randrange(len(names)) if bad and names else -1
        if ep.method == "DELETE" and names:
            bad_at = len(names) - 1
        for i, (name, literal) in enumerate(zip(names, literals, strict=True)):
            real = [] if i == bad_at else self.ids_at(ep.service, path.rstrip("/"))
            if name in ("coll", "resource") and not real and i != bad_at:
                real = self.ids_at(ep.service, "/v2.0")
            value = quote(self.rng.choice(real), safe="") if real else values.bad_id(self.rng)
            path += value + literal
        return path

    # ------------------------------------------------------------------ the run
    def run(self, per_endpoint: int, sweep_every: int = 60,
            deadline: float | None = None) -> None:
        """``per_endpoint`` requests to each endpoint, in a seeded order; a sweep of every
        list/show each ``sweep_every`` endpoints and at the end."""
        order = list(self.endpoints)
        self.rng.shuffle(order)
        for n, ep in enumerate(order, 1):
            if deadline is not None and time.monotonic() > deadline:
                break
            self.fuzz_endpoint(ep, per_endpoint)
            if n % sweep_every == 0:
                self.sweep()
        self.sweep()
        self.check_health()

    def fuzz_endpoint(self, ep: Endpoint, count: int) -> None:
        write = ep.method in ("POST", "PUT", "PATCH")
        # What a write there would change shows at the same path: the collection a POST
        # adds to, the resource a PUT/PATCH changes (an action: the resource's sub-path).
        snap_of = self.fill(ep, bad=False) if write else ""
        before = self.snapshot(ep.service, snap_of) if write else None
        refused_all = True
        for _ in range(count):
            status, _ = self.one(ep)
            if 200 <= status < 400:
                refused_all = False
        if write and refused_all and before is not None:
            after = self.snapshot(ep.service, snap_of)
            if after != before:
                detail = (_diff(before, after) if after is not None
                          else "no longer answers 200")
                self.failures.append(Failure(
                    "stored", str(ep), f"GET {snap_of}", 200,
                    f"changed by refused requests: {detail}"))

    def one(self, ep: Endpoint) -> tuple[int, str]:
        """One malformed request to ``ep``; records a 5xx or a hang."""
        rng = self.rng
        token = self.member if rng.random() < 0.2 else self.admin
        headers = {"X-Auth-Token": token, **(LATEST.get(ep.service, {})
                                             if rng.random() < 0.5 else {})}
        write = ep.method in ("POST", "PUT", "PATCH")
        attack = rng.choice(["path", "query", "headers"] + ["body"] * (4 if write else 0))
        if attack == "path" and not ep.params:
            attack = "query"
        path = self.fill(ep, bad=attack == "path")
        query = values.bad_query(rng, self._fields(ep)) if attack == "query" or (
            rng.random() < 0.1) else ""
        desc = attack
        if attack == "headers":
            headers, desc = values.bad_headers(rng, ep.service, token)
        body: bytes | None = None
        if write:
            template = self.template(ep, path.split("?")[0])
            if self._skipped(template):
                path = self.fill(ep, bad=True)
                template = {}
            if attack == "body" or rng.random() < 0.3:
                body, what = values.mutate_body(rng, template)
                desc += f" body[{what}]"
            else:
                body = values.dumps(template)
            if ep.service == "image" and ep.method == "PATCH" and "Content-Type" not in headers:
                headers["Content-Type"] = "application/openstack-images-v2.1-json-patch"
        status, content = self.send(ep.service, ep.method, path, query=query,
                                    headers=headers, body=body)
        if status == -2:
            return status, desc
        if status < 0 or status >= 500:
            self.failures.append(Failure(
                "5xx" if status >= 500 else "hang", str(ep),
                f"{ep.method} {path}{'?' + query if query else ''} ({desc}) "
                f"body={(body or b'')[:200]!r}", status, content[:300].decode("utf-8", "replace")))
        return status, desc

    def _skipped(self, template: Any) -> bool:
        return isinstance(template, dict) and bool(SKIP_ACTIONS & set(template))

    def _fields(self, ep: Endpoint) -> list[str]:
        doc = self._docs.get((ep.service, ep.template))
        item = _item_template(doc) if isinstance(doc, dict) else None
        if isinstance(item, dict) and item:
            inner = next(iter(item.values()))
            if isinstance(inner, dict):
                return list(inner)[:30]
        return []

    # ------------------------------------------------------------------ invariants
    def snapshot(self, service: str, path: str) -> Any:
        """What ``GET path`` shows, volatile fields left out (``None`` if it is no 200)."""
        doc = self._get_json(service, path)
        return _stable(doc) if doc is not None else None

    def sweep(self) -> None:
        """Every list and show of every service, as admin (all projects) and as the member:
        no 5xx (what stored poison would cause)."""
        for ep in self.endpoints:
            if ep.method != "GET":
                continue
            path = self.fill(ep, bad=False)
            if "{" in path:
                continue
            for token, query in ((self.admin, "all_tenants=1" if ep.service == "compute"
                                  else ""), (self.member, "")):
                status, content = self.send(ep.service, "GET", path, query=query, count=False,
                                            headers={"X-Auth-Token": token,
                                                     **LATEST.get(ep.service, {})})
                if status < 0 or status >= 500:
                    self.failures.append(Failure(
                        "poisoned", str(ep), f"GET {path}?{query}", status,
                        content[:300].decode("utf-8", "replace")))
        self._ids.clear()  # things come and go: discover afresh
        self._docs.clear()

    def check_health(self) -> None:
        for service in self.urls:
            status, _ = self.send(service, "GET", "/healthcheck", count=False)
            if status != 200:
                self.failures.append(Failure("down", service, "GET /healthcheck", status, ""))

    def report(self) -> str:
        lines = [f"{'service':<10} {'requests':>8} {'2xx':>6} {'3xx':>5} {'4xx':>6} "
                 f"{'5xx':>5} {'error':>5}"]
        total = Stats()
        for name, st in sorted(self.stats.items()):
            lines.append(f"{name:<10} {st.requests:>8} {st.codes['2xx']:>6} "
                         f"{st.codes['3xx']:>5} {st.codes['4xx']:>6} {st.codes['5xx']:>5} "
                         f"{st.codes['error']:>5}")
            total.requests += st.requests
            total.codes.update(st.codes)
        lines.append(f"{'all':<10} {total.requests:>8} {total.codes['2xx']:>6} "
                     f"{total.codes['3xx']:>5} {total.codes['4xx']:>6} "
                     f"{total.codes['5xx']:>5} {total.codes['error']:>5}")
        return "\n".join(lines)


def _ids_in(value: Any) -> list[str]:
    if isinstance(value, list):
        out = []
        for item in value:
            if isinstance(item, dict):
                for k in ("id", "uuid", "name", "alias", "key", "tag"):
                    v = item.get(k)
                    if isinstance(v, str | int) and not isinstance(v, bool):
                        out.append(str(v))
                        break
            elif isinstance(item, str):
                out.append(item)
        return out
    if isinstance(value, dict):  # metadata, extra specs, inventories by class
        return [str(k) for k in value]
    return []


def _item_template(doc: dict[str, Any]) -> Any:
    """``{"servers": [item, ...]}`` -> ``{"server": item}`` (links and the like dropped)."""
    for key, value in doc.items():
        if isinstance(value, list) and value and isinstance(value[0], dict):
            singular = key[:-1] if key.endswith("s") else key
            item = {k: v for k, v in value[0].items()
                    if k not in ("links", "id", "self", "schema", "file", "created_at",
                                 "updated_at")}
            return {singular: item}
    return doc


def _stable(doc: Any) -> Any:
    if isinstance(doc, dict):
        return {k: _stable(v) for k, v in doc.items() if k not in VOLATILE}
    if isinstance(doc, list):
        return [_stable(v) for v in doc]
    return doc


def _diff(a: Any, b: Any) -> str:
    ta, tb = json.dumps(a, sort_keys=True), json.dumps(b, sort_keys=True)
    i = next((n for n, (x, y) in enumerate(zip(ta, tb, strict=False)) if x != y),
             min(len(ta), len(tb)))
    return f"...{ta[max(0, i - 80):i + 120]} != ...{tb[max(0, i - 80):i + 120]}"
