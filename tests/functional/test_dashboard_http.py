"""The dashboard over plain HTTP: Tempest's login flow (``test_dashboard_basic_ops``: the
login page's ``id_username``, hidden ``csrfmiddlewaretoken`` and ``region``, "Overview"
after login), and what hostile or mistaken requests get: wrong credentials, a missing or
forged CSRF token, a forged session cookie, an open redirect, oversized forms, markup in
names, admin pages for a member, assets with caching headers."""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from collections.abc import Iterator
from html.parser import HTMLParser
from http.cookiejar import CookieJar
from typing import Any

import httpx
import pytest

from tests.conftest import RunningCloud, own_cloud


@pytest.fixture(scope="module")
def dash() -> Iterator[tuple[RunningCloud, str]]:
    with own_cloud("onestack-dash-http-") as c:
        run = json.loads((c.data_dir / "run.json").read_text())
        yield c, str(run["services"]["dashboard"])


class LoginForm(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.values: dict[str, str] = {}
        self.action = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "input" and a.get("name") in ("csrfmiddlewaretoken", "region"):
            self.values[str(a["name"])] = a.get("value") or ""
        if tag == "form" and a.get("id") == "login":
            self.action = a.get("action") or ""


def test_tempest_login_flow(dash: tuple[RunningCloud, str]) -> None:
    cloud, url = dash
    user, password, _project = cloud.make_member("dash")
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(CookieJar()))
    page = opener.open(url).read().decode()
    assert "id_username" in page
    form = LoginForm()
    form.feed(page)
    assert form.values["region"] == "RegionOne" and form.values["csrfmiddlewaretoken"]
    req = urllib.request.Request(urllib.parse.urljoin(url, form.action))
    req.add_header("Content-type", "application/x-www-form-urlencoded")
    req.add_header("Referer", url)
    params = {"username": user, "password": password, "region": form.values["region"],
              "domain": "Default", "csrfmiddlewaretoken": form.values["csrfmiddlewaretoken"]}
    opener.open(req, urllib.parse.urlencode(params).encode())
    assert "Overview" in opener.open(url).read().decode()


def _login(url: str, user: str, password: str) -> httpx.Client:
    c = httpx.Client(base_url=url, follow_redirects=True)
    page = c.get("/auth/login/").text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    r = c.post("/auth/login/", data={"username": user, "password": password,
                                      "csrfmiddlewaretoken": token})
    assert "Overview" in r.text, r.text[:300]
    return c


def _csrf(c: httpx.Client) -> str:
    return re.search(r'data-csrf="([^"]+)"', c.get("/project/").text).group(1)


def test_login_refusals(dash: tuple[RunningCloud, str]) -> None:
    cloud, url = dash
    c = httpx.Client(base_url=url)
    page = c.get("/auth/login/").text
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    r = c.post("/auth/login/", data={"username": "admin", "password": "wrong",
                                     "csrfmiddlewaretoken": token})
    assert r.status_code == 401 and "Invalid credentials" in r.text
    assert "wrong" not in r.text  # the password is never echoed
    r = httpx.post(url + "/auth/login/", data={"username": "admin",
                                               "password": cloud.admin_password})
    assert r.status_code == 403  # no CSRF token
    r = c.post("/auth/login/", data={"username": "admin", "password": cloud.admin_password,
                                     "csrfmiddlewaretoken": "forged.token"})
    assert r.status_code == 403
    r = c.post("/auth/login/", content=b"x" * (2 << 20),
               headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 400
    # An open redirect after login is refused: only local paths.
    page = c.get("/auth/login/", params={"next": "https://evil.example/"}).text
    assert "evil.example" not in page
    # A forged session cookie is no session.
    r = httpx.get(url + "/project/", cookies={"onestack_session": "abc.def"},
                  follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/auth/login/")


def test_pages_escape_and_refuse(dash: tuple[RunningCloud, str]) -> None:
    cloud, url = dash
    user, password, _project = cloud.make_member("dash2")
    c = _login(url, user, password)
    token = _csrf(c)
    # Markup in a name is shown as text.
    r = c.post("/project/networks/create", data={"csrfmiddlewaretoken": token,
                                                  "name": "<script>alert(1)</script>"})
    assert r.status_code == 200
    assert "<script>alert(1)</script>" not in r.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
    # A form without its token, or with another session's, changes nothing.
    assert c.post("/project/networks/create", data={"name": "nope"}).status_code == 403
    assert c.post("/project/networks/create", data={
        "name": "nope", "csrfmiddlewaretoken": "x" * 43}).status_code == 403
    assert "nope" not in c.get("/project/networks/").text
    big = c.post("/project/networks/create", content=b"a=" + b"x" * (2 << 20),
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert big.status_code == 403
    # A member is no admin; another project's id is no project of hers.
    assert c.get("/admin/instances/").status_code == 403
    r = c.post("/auth/switch/", data={"csrfmiddlewaretoken": token,
                                      "project_id": "0" * 32})
    assert r.status_code == 403
    # API refusals come back as readable messages.
    r = c.post("/project/networks/create", data={"csrfmiddlewaretoken": token,
                                                  "name": "bad-cidr", "cidr": "10.0.0.0/99"})
    assert r.status_code == 200 and "flash error" in r.text
    r = c.post(f"/project/networks/{'0' * 32}/delete", data={"csrfmiddlewaretoken": token},
               follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/project/networks/"
    assert "flash error" in c.get("/project/networks/").text
    # A change that works lands back on its page with its message.
    r = c.post("/project/security_groups/create", data={"csrfmiddlewaretoken": token,
                                                         "name": "dash-sg"})
    assert r.status_code == 200 and "Security group created." in r.text
    # Ids that would step out of their resource are refused before any API call.
    assert c.get("/project/instances/status", params={"ids": "../os-keypairs"}).status_code \
        == 400
    assert c.get("/project/instances/..%2Fos-keypairs/").status_code in (400, 404)
    # Pages the dashboard does not have.
    assert c.get("/project/nothing/").status_code == 404
    # Security headers on pages; long-lived caching on assets, revalidated by ETag.
    page = c.get("/project/")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["cache-control"] == "no-store"
    css = re.search(r'href="(/static/app\.css\?v=[0-9a-f]+)"', page.text).group(1)
    asset = c.get(css)
    assert "immutable" in asset.headers["cache-control"]
    assert c.get(css, headers={"If-None-Match": asset.headers["etag"]}).status_code == 304
    cookie = [h for h in page.headers.get_list("set-cookie")]
    assert all("token" not in h.lower() for h in cookie)


def _wait_for(check: Any, what: str, timeout: float = 30) -> Any:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_images_and_boot_from_a_volume_snapshot(dash: tuple[RunningCloud, str]) -> None:
    cloud, url = dash
    user, password, project = cloud.make_member("dash3")
    _other_user, _other_pw, other_project = cloud.make_member("dash3b")
    c = _login(url, user, password)
    token = _csrf(c)
    api = {"X-Auth-Token": cloud.token(user, password, project)}
    # An image made in the browser's two steps, renamed, then shared with another project.
    made = c.post("/project/images/create", data={"name": "dash-img", "disk_format": "raw",
                                                   "visibility": "private"},
                  headers={"X-CSRFToken": token}).json()
    r = c.put(made["upload"], content=b"\0" * 65536, headers={"X-CSRFToken": token})
    assert r.status_code == 200, r.text
    assert c.put(made["upload"], content=b"\0").status_code == 403  # no CSRF token
    c.post("/project/images/_/update", data={"csrfmiddlewaretoken": token,
                                              "image": made["id"], "name": "renamed"})
    glance = cloud.url("image") + f"/v2/images/{made['id']}"
    assert httpx.get(glance, headers=api).json()["name"] == "renamed"
    other = httpx.get(cloud.url("identity") + "/v3/projects", headers={
        "X-Auth-Token": cloud.token()}, params={"name": other_project}).json()["projects"][0]
    c.post("/project/images/_/share", data={"csrfmiddlewaretoken": token,
                                             "image": made["id"], "project": other["id"]})
    members = httpx.get(glance + "/members", headers=api).json()["members"]
    assert [m["member_id"] for m in members] == [other["id"]]
    # A volume, its snapshot, and a server booted from a new volume made of the snapshot.
    c.post("/project/volumes/create", data={"csrfmiddlewaretoken": token, "name": "dv",
                                             "size": "1"})
    vols = cloud.url("volume")
    vol = _wait_for(lambda: [v for v in httpx.get(
        f"{vols}/v3/volumes/detail", headers=api).json()["volumes"]
        if v["name"] == "dv" and v["status"] == "available"], "the volume")[0]
    c.post(f"/project/volumes/{vol['id']}/snapshot", data={"csrfmiddlewaretoken": token})
    snap = _wait_for(lambda: [s for s in httpx.get(
        f"{vols}/v3/snapshots/detail", headers=api).json()["snapshots"]
        if s["status"] == "available"], "the snapshot")[0]
    form = c.get("/project/instances/launch").text
    source = f"snapshot:{snap['id']}:{snap['size']}"
    assert source in form
    r = c.post("/project/instances/launch", data={"csrfmiddlewaretoken": token,
                                                   "name": "from-snap", "source": source,
                                                   "flavor": "1"})
    assert "Launching from-snap" in r.text, r.text[:500]
    server = _wait_for(lambda: [s for s in httpx.get(
        cloud.url("compute") + "/v2.1/servers/detail", headers=api).json()["servers"]
        if s["name"] == "from-snap" and s["status"] == "ACTIVE"], "the server", 60)[0]
    assert server["os-extended-volumes:volumes_attached"]
    # Server actions from the detail page: one whose body takes a form value, one the
    # API refuses, one the dashboard does not know.
    action = f"/project/instances/{server['id']}/action"
    r = c.post(action, data={"csrfmiddlewaretoken": token, "action": "snapshot",
                             "name": "dash-snap"})
    assert "Create snapshot: request accepted." in r.text
    _wait_for(lambda: [i for i in httpx.get(cloud.url("image") + "/v2/images",
                                            headers=api).json()["images"]
                       if i["name"] == "dash-snap"], "the server snapshot")
    r = c.post(action, data={"csrfmiddlewaretoken": token, "action": "resize",
                             "flavor": "no-such-flavor"})
    assert "flash error" in r.text
    r = c.post(action, data={"csrfmiddlewaretoken": token, "action": "explode"})
    assert "Unknown action" in r.text
