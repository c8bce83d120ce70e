"""Tempest against a running onestack (identity). Runs in CI; elsewhere set
ONESTACK_TEST_TEMPEST=1 (it installs Tempest 47.0.0 in its own venv on first use)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from tests.conftest import IN_CI, start_cloud

HARNESS = Path(__file__).with_name("run_tempest.py")

pytestmark = pytest.mark.skipif(
    not (IN_CI or os.environ.get("ONESTACK_TEST_TEMPEST")),
    reason="Tempest runs in CI or with ONESTACK_TEST_TEMPEST=1",
)


def _summary(out: str) -> tuple[int, int, int, int]:
    m = re.search(r"tempest: (\d+) passed, (\d+) failed, (\d+) skipped", out)
    h = re.search(r"http-500: (\d+)", out)
    assert m and h, out[-3000:]
    return int(m[1]), int(m[2]), int(m[3]), int(h[1])


def test_tempest_identity() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="onestack-tempest-"))
    cloud = start_cloud(tmp / "data")
    try:
        base = [sys.executable, str(HARNESS), "--auth-url", cloud.auth_url,
                "--admin-password", cloud.admin_password, "--quiet"]
        res = subprocess.run([*base, "--regex", "tempest.api.identity",
                              "--workdir", str(tmp / "all")],
                             capture_output=True, text=True, timeout=1500)
        passed, failed, skipped, http500 = _summary(res.stdout)
        total = passed + failed + skipped
        print(res.stdout[-4000:])
        assert http500 == 0
        assert passed / total >= 0.90, res.stdout[-4000:]
        res = subprocess.run([*base, "--interop", "--services", "identity",
                              "--workdir", str(tmp / "interop")],
                             capture_output=True, text=True, timeout=900)
        passed, failed, skipped, http500 = _summary(res.stdout)
        assert failed == 0 and skipped == 0 and passed >= 7 and http500 == 0, res.stdout
    finally:
        cloud.stop()
        shutil.rmtree(tmp, ignore_errors=True)
