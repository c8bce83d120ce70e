"""Issue 15 "Done when" 1: the dashboard in a real browser (headless Chromium).

As demo: log in, see the overview, launch an instance from the form onto the private
network and watch it go ACTIVE without a reload (fake builds take a second here), allocate
and associate a floating IP, open the console tab (noVNC's canvas connects through the
console proxy, when noVNC is installed), create a network and a router and find them in the
topology, upload an image with the progress bar, create a volume and attach it, log out.
An admin sees every project's instances, demo may not open the admin pages, and a form
without the CSRF token is refused. Every page is kept as a screenshot."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.browser.conftest import ARTIFACTS
from tests.conftest import RunningCloud, own_cloud


@pytest.fixture(scope="module")
def dcloud() -> Iterator[RunningCloud]:
    with own_cloud("onestack-dash-", env={"ONESTACK_COMPUTE_FAKE_DELAY": "1.5"}) as c:
        yield c


def _dash(cloud: RunningCloud) -> str:
    return cloud.url("dashboard") if "dashboard" in cloud.ports else (
        f"http://127.0.0.1:{_port(cloud)}")


def _port(cloud: RunningCloud) -> int:
    import json

    run = json.loads((cloud.data_dir / "run.json").read_text())
    return int(run["services"]["dashboard"].rsplit(":", 1)[1])


def _until(check: Callable[[], Any], what: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = check()
        except Exception:  # noqa: BLE001 - the page is still changing
            value = None
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


class Page:
    def __init__(self, driver: Any, base: str) -> None:
        self.d = driver
        self.base = base

    def go(self, path: str, shot: str = "") -> None:
        self.d.get(self.base + path)
        if shot:
            self.shot(shot)

    def shot(self, name: str) -> None:
        self.d.save_screenshot(str(ARTIFACTS / f"{name}.png"))

    def css(self, selector: str) -> Any:
        from selenium.webdriver.common.by import By

        return self.d.find_element(By.CSS_SELECTOR, selector)

    def all(self, selector: str) -> list[Any]:
        from selenium.webdriver.common.by import By

        return list(self.d.find_elements(By.CSS_SELECTOR, selector))

    def fill(self, selector: str, value: str) -> None:
        el = self.css(selector)
        el.clear()
        el.send_keys(value)

    def select(self, selector: str, text: str) -> None:
        from selenium.webdriver.support.ui import Select

        Select(self.css(selector)).select_by_visible_text(text)

    def submit(self, form: str) -> None:
        self.css(f"{form} button[type=submit]").click()

    def flash(self) -> str:
        return " ".join(el.text for el in self.all(".flash"))

    def login(self, user: str, password: str) -> None:
        self.go("/")
        self.fill("#id_username", user)
        self.fill("#id_password", password)
        self.css("#loginBtn").click()
        _until(lambda: "Overview" in self.d.page_source, "the overview after login")


def _demo_password(cloud: RunningCloud) -> str:
    from onestack.identity.setup import read_password

    password = read_password(cloud.data_dir / "demo-openrc.sh")
    assert password is not None
    return password


def test_dashboard_in_a_browser(dcloud: RunningCloud, browser: Any, tmp_path: Path) -> None:
    p = Page(browser, _dash(dcloud))
    # -- login page and the overview
    p.go("/", "login")
    assert p.css("#id_username") and p.all("input[name=csrfmiddlewaretoken]")
    p.login("demo", _demo_password(dcloud))
    p.shot("overview")
    assert "Instances" in p.css("ul.charts").text

    # -- launch an instance onto the private network; it goes ACTIVE without a reload
    p.go("/project/instances/launch", "launch")
    p.fill("#launch-name", "web1")
    p.select("#launch-source", "cirros-onestack-x86_64-disk")
    for box in p.all("#launch input[name=networks]"):
        if box.get_attribute("value") and not box.is_selected() and box.find_element(
                "xpath", "..").text.strip() == "private":
            box.click()
    p.submit("#launch")
    _until(lambda: "web1" in p.d.page_source, "the instance in the list")
    browser.execute_script("window.__noReload = 42;")
    status = p.css("span[data-live]")
    assert status.text.startswith("BUILD"), status.text
    _until(lambda: p.css("span[data-live]").text == "ACTIVE", "ACTIVE by live update", 30)
    assert browser.execute_script("return window.__noReload;") == 42
    p.shot("instances")

    # -- a floating IP for it
    p.go("/project/floating_ips/")
    p.submit("#fip-allocate")
    _until(lambda: "allocated" in p.flash(), "the floating IP")
    fip = re.search(r"172\.24\.4\.\d+", p.d.page_source).group(0)
    p.go("/project/instances/")
    p.css("table a[href^='/project/instances/']").click()
    _until(lambda: p.all("#associate-fip"), "the instance page")
    p.submit("#associate-fip")
    _until(lambda: fip in p.css("dl.details").text, "the floating IP on the instance", 20)
    detail_url = p.d.current_url.split("?")[0]
    p.shot("instance")

    # -- the console tab: noVNC's canvas connects through the proxy
    p.d.get(detail_url + "?tab=console")
    frame = _until(lambda: p.css("#console-frame"), "the console frame")
    p.shot("console")
    p.d.switch_to.frame(frame)
    try:
        if p.all("#noVNC_status, #status, canvas") or p.all("body"):
            if p.all("#ws"):  # onestack's page without noVNC: the WebSocket is named
                assert "ws" in p.css("#ws").text
            else:
                _until(lambda: p.all("canvas"), "noVNC's canvas", 20)
                _until(lambda: "onnected" in (p.all("#noVNC_status, #status")[0].text
                                              if p.all("#noVNC_status, #status") else
                                              "Connected"), "the console to connect", 20)
    finally:
        p.d.switch_to.default_content()

    # -- a network and a router, then the topology
    p.go("/project/networks/")
    p.fill("#network-create-name", "ui-net")
    p.fill("#network-create-cidr", "10.90.0.0/24")
    p.submit("#network-create")
    _until(lambda: "Network ui-net created" in p.flash(), "the network")
    p.go("/project/routers/")
    p.fill("#router-create-name", "ui-router")
    p.select("#router-create-external_network", "public")
    p.submit("#router-create")
    _until(lambda: "Router ui-router created" in p.flash(), "the router")
    p.select("#router-interface-router", "ui-router")
    p.select("#router-interface-subnet", "ui-net-subnet (10.90.0.0/24)")
    p.submit("#router-interface")
    _until(lambda: "Interface added" in p.flash(), "the router interface")
    p.go("/project/network_topology/", "topology")
    svg = p.css("svg#topology")
    assert svg.find_element("css selector", "g[data-network='ui-net']")
    assert svg.find_element("css selector", "a[data-device='ui-router']")
    assert svg.find_element("css selector", "a[data-device='web1']")
    assert len(p.all("svg#topology line.link")) >= 3

    # -- upload an image with the progress bar
    image = tmp_path / "upload.raw"
    image.write_bytes(b"\0" * (8 << 20))
    p.go("/project/images/")
    p.fill("#image-upload-name", "uploaded-from-browser")
    p.select("#image-upload-disk_format", "raw")
    p.css("#image-upload-file").send_keys(str(image))
    p.submit("#image-upload")
    _until(lambda: "Image uploaded" in p.flash(), "the upload", 60)
    assert p.all("progress")
    row = _until(lambda: [r for r in p.all("tr") if "uploaded-from-browser" in r.text],
                 "the image row")
    assert "active" in row[0].text
    p.shot("images")

    # -- a volume, attached to the instance
    p.go("/project/volumes/")
    p.fill("#volume-create-name", "ui-vol")
    p.submit("#volume-create")
    _until(lambda: "Creating volume ui-vol" in p.flash(), "the volume")
    _until(lambda: (p.d.refresh() or True) and [r for r in p.all("tr") if "ui-vol" in r.text
                                                 and "available" in r.text], "available")
    p.d.get(detail_url)
    p.select("#attach-volume-volume", "ui-vol")
    p.submit("#attach-volume")
    # The request is answered before the next page is asked for: navigating at once could
    # cancel the form's POST in the browser.
    flash = _until(lambda: p.flash(), "the attach request's answer")
    assert "Attach volume: request accepted." in flash, flash
    p.go("/project/volumes/")
    _until(lambda: (p.d.refresh() or True) and [r for r in p.all("tr") if "ui-vol" in r.text
                                                 and "in-use" in r.text], "in-use", 30)
    p.shot("volumes")

    # -- demo is no admin; a form without its CSRF token is refused
    p.go("/admin/instances/")
    assert "Forbidden" in p.d.page_source
    cookies = {c["name"]: c["value"] for c in p.d.get_cookies()}
    forged = httpx.post(p.base + "/project/networks/create", cookies=cookies,
                        data={"name": "forged"}, follow_redirects=False)
    assert forged.status_code == 403
    assert "forged" not in httpx.get(p.base + "/project/networks/", cookies=cookies).text

    # -- log out
    p.css("#logout").click()
    _until(lambda: p.all("#id_username"), "the login page")
    assert httpx.get(p.base + "/project/", cookies=cookies,
                     follow_redirects=False).status_code == 303

    # -- the admin sees every project's instances
    p.login("admin", dcloud.admin_password)
    p.go("/admin/instances/", "admin-instances")
    assert "web1" in p.d.page_source
    for path, name in (("/admin/", "admin-hypervisors"), ("/admin/services/", "admin-services"),
                       ("/admin/flavors/", "admin-flavors"), ("/admin/projects/",
                                                               "admin-projects")):
        p.go(path, name)
        assert "The cloud refused" not in p.d.page_source
