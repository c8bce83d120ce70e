"""Browser tests: Debian's Chromium driven by Selenium (``chromium`` and ``chromium-driver``
from apt, installed by ``scripts/install-test-packages``). Skipped with a reason where they
are missing, except in CI, which has them. Screenshots go to ``test-artifacts/dashboard``."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import IN_CI, REPO

ARTIFACTS = Path(os.environ.get("ONESTACK_TEST_ARTIFACTS", REPO / "test-artifacts")) / "dashboard"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def _missing() -> str:
    missing = [name for name, path in (("chromium", CHROMIUM), ("chromedriver", DRIVER))
               if path is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip)")
    return ", ".join(missing)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    missing = _missing()
    if missing:
        if IN_CI:
            pytest.fail(f"browser tests need {missing} (scripts/install-test-packages)")
        pytest.skip(f"browser tests need {missing}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="onestack-chromium-")
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    opts.add_argument(f"--user-data-dir={profile}")
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1400,1000", "--no-first-run", "--disable-extensions",
                "--proxy-server=direct://", "--proxy-bypass-list=*"):
        opts.add_argument(arg)
    # Chromium's own temporary files (its singleton socket) go under the profile too.
    service = Service(str(DRIVER), env={**os.environ, "TMPDIR": profile})
    driver = webdriver.Chrome(options=opts, service=service)
    driver.set_page_load_timeout(60)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
