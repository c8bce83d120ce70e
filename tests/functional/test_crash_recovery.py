"""``kill -9`` of the whole cloud under load, three times, then: nothing acknowledged lost,
nothing deleted back, no duplicate address, nothing stuck, no usage drift.

On SQLite + the in-process bus always; on the first server database of
ONESTACK_TEST_DATABASE_URLS + RabbitMQ when they are there (``scripts/test-services``).
Longer runs: ``bench/crash_bench.py``.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import IN_CI, amqp_vhost, scratch_database
from tests.functional.crash_harness import run
from tests.functional.test_real_engines import AMQP, SERVERS, _amqp_reachable

BACKENDS = ["sqlite", *SERVERS[:1]]


@pytest.fixture(params=BACKENDS, ids=lambda u: u.split(":")[0].split("+")[0])
def backend_env(request: pytest.FixtureRequest) -> Iterator[tuple[Path, dict[str, str]]]:
    tmp = Path(tempfile.mkdtemp(prefix="onestack-crash-"))
    try:
        if request.param == "sqlite":
            yield tmp, {}
            return
        if not AMQP or not _amqp_reachable(AMQP):
            if IN_CI:
                pytest.fail(f"CI must run the crash test on RabbitMQ ({AMQP or 'no URL'})")
            pytest.skip("RabbitMQ not reachable (ONESTACK_TEST_AMQP_URL)")
        scratch = scratch_database(request.param, tmp)
        url = next(scratch)
        try:
            with amqp_vhost(AMQP) as bus_url:
                yield tmp, {"ONESTACK_DATABASE_URL": url, "ONESTACK_BUS_URL": bus_url}
        finally:
            next(scratch, None)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_kill_under_load_loses_nothing(backend_env: tuple[Path, dict[str, str]]) -> None:
    root, env = backend_env
    result = run(root, kills=3, env=env, load=(1.5, 3.0))
    print(json.dumps(result))
    assert result["acknowledged"] >= 9, result  # >= 3 before each kill
    for key in ("lost", "resurrected", "duplicates", "stuck", "orphan_ports", "usage_drift",
                "unexpected_answers"):
        assert result[key] == [], (key, result)
