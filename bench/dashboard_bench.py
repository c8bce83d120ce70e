#!/usr/bin/env python3
"""Dashboard benchmark: the instances page of a project with many servers, and login.

    .venv/bin/python bench/dashboard_bench.py [--servers 1000] [--rounds 10]

One ``onestack up`` (fake driver, free ports, temporary data dir) gets ``--servers`` ACTIVE
servers in the admin project. Then, medians of ``--rounds``:

1. ``GET /project/instances/`` over HTTP with a logged-in session: time to first byte and
   to the whole document (the page shows 50 servers, paginated, built from three API calls);
2. the same page in headless Chromium (Debian's, through Selenium): navigation start to the
   load event, scripts and styles included (target <= 500 ms);
3. login -> overview: posting the login form until the overview is loaded, over HTTP and in
   the browser (target <= 300 ms).

Prints one line per figure, writes ``bench/results/dashboard.json``; exits non-zero when a
target is missed. The browser figures are skipped (with a note) without chromium and
chromedriver.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from compute_bench import PASSWORD, ROOT, Cloud, free_port  # noqa: E402
from snapshot_bench import active  # noqa: E402

TARGET_PAGE_MS = 500.0
TARGET_LOGIN_MS = 300.0


def dashboard_url(cloud: Cloud) -> str:
    run = json.loads((cloud.data / "run.json").read_text())
    return str(run["services"]["dashboard"])


def login(client: httpx.Client, base: str) -> None:
    page = client.get(base + "/auth/login/").text
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
    r = client.post(base + "/auth/login/", data={
        "username": "admin", "password": PASSWORD, "domain": "Default",
        "region": "RegionOne", "csrfmiddlewaretoken": csrf}, follow_redirects=True)
    if "Overview" not in r.text:
        raise RuntimeError("login failed")


def http_figures(base: str, rounds: int) -> dict[str, float]:
    ttfb, full, logins = [], [], []
    with httpx.Client(timeout=60) as client:
        login(client, base)
        for _ in range(rounds + 1):
            t0 = time.perf_counter()
            with client.stream("GET", base + "/project/instances/") as r:
                it = r.iter_bytes()
                next(it)
                t1 = time.perf_counter()
                for _chunk in it:
                    pass
                t2 = time.perf_counter()
            ttfb.append((t1 - t0) * 1000)
            full.append((t2 - t0) * 1000)
    for _ in range(rounds):
        with httpx.Client(timeout=60) as client:
            page = client.get(base + "/auth/login/").text
            csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
            t0 = time.perf_counter()
            r = client.post(base + "/auth/login/", data={
                "username": "admin", "password": PASSWORD, "domain": "Default",
                "region": "RegionOne", "csrfmiddlewaretoken": csrf}, follow_redirects=True)
            logins.append((time.perf_counter() - t0) * 1000)
            assert "Overview" in r.text
    return {"instances_ttfb_ms": statistics.median(ttfb[1:]),
            "instances_http_ms": statistics.median(full[1:]),
            "login_overview_http_ms": statistics.median(logins)}


def browser_figures(base: str, rounds: int) -> dict[str, float] | None:
    chromium, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if chromium is None or driver_bin is None:
        print("browser figures skipped: chromium or chromedriver missing")
        return None
    import tempfile

    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    profile = tempfile.mkdtemp(prefix="onestack-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    opts.add_argument(f"--user-data-dir={profile}")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--proxy-server=direct://", "--proxy-bypass-list=*"):
        opts.add_argument(arg)
    service = Service(driver_bin, env={**os.environ, "TMPDIR": profile})
    d = webdriver.Chrome(options=opts, service=service)
    timing = ("const t = performance.getEntriesByType('navigation')[0];"
              "return t.loadEventEnd - t.startTime;")
    try:
        pages, logins = [], []
        for i in range(rounds + 1):
            d.delete_all_cookies()
            d.get(base + "/auth/login/")
            d.find_element(By.ID, "id_username").send_keys("admin")
            d.find_element(By.ID, "id_password").send_keys(PASSWORD)
            t0 = time.perf_counter()
            d.find_element(By.ID, "loginBtn").click()
            while "Overview" not in d.title:
                time.sleep(0.002)
            d.execute_script("return document.readyState")
            if i:
                logins.append((time.perf_counter() - t0) * 1000)
            d.get(base + "/project/instances/")
            if i:
                pages.append(float(d.execute_script(timing)))
        rows = len(d.find_elements(By.CSS_SELECTOR, "tbody tr"))
    finally:
        d.quit()
        shutil.rmtree(profile, ignore_errors=True)
    return {"instances_browser_ms": statistics.median(pages),
            "login_overview_browser_ms": statistics.median(logins), "rows_shown": rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--servers", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=10)
    args = ap.parse_args()
    os.environ["ONESTACK_DASHBOARD_PORT"] = str(free_port())
    cloud = Cloud(hosts=max(1, args.servers // 250))
    try:
        cloud.unlimited_quota()
        left = args.servers
        while left > 0:
            n = min(100, left)
            r = httpx.post(cloud.url("compute") + "/v2.1/servers", headers=cloud.headers,
                           json={"server": {"name": "bench", "imageRef": cloud.image,
                                            "flavorRef": "1", "min_count": n,
                                            "networks": "none"}}, timeout=120)
            r.raise_for_status()
            left -= n
        deadline = time.monotonic() + 600
        while active(cloud) < args.servers:
            if time.monotonic() > deadline:
                raise RuntimeError("servers did not become ACTIVE")
            time.sleep(1)
        base = dashboard_url(cloud)
        result: dict[str, Any] = {"servers": args.servers, "rounds": args.rounds,
                                  **http_figures(base, args.rounds)}
        browser = browser_figures(base, args.rounds)
        if browser:
            result.update(browser)
    finally:
        cloud.stop()
    result = {k: round(v, 1) if isinstance(v, float) else v for k, v in result.items()}
    print(f"instances page ({args.servers} servers, 50 shown): first byte "
          f"{result['instances_ttfb_ms']:.0f} ms, whole document "
          f"{result['instances_http_ms']:.0f} ms (HTTP)")
    print(f"login -> overview (HTTP): {result['login_overview_http_ms']:.0f} ms")
    if browser:
        print(f"instances page in Chromium, to the load event: "
              f"{result['instances_browser_ms']:.0f} ms (target <= {TARGET_PAGE_MS:.0f})")
        print(f"login -> overview in Chromium: {result['login_overview_browser_ms']:.0f} ms "
              f"(target <= {TARGET_LOGIN_MS:.0f})")
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / "dashboard.json").write_text(json.dumps(result, indent=1) + "\n")
    page = result.get("instances_browser_ms", result["instances_http_ms"])
    login_ms = result.get("login_overview_browser_ms", result["login_overview_http_ms"])
    return 0 if page <= TARGET_PAGE_MS and login_ms <= TARGET_LOGIN_MS else 1


if __name__ == "__main__":
    sys.exit(main())
