"""How many instances of one boot request fit: computed, bounded, Nova's refusal message."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from onestack.common.context import RequestContext
from onestack.common.errors import Forbidden
from onestack.compute import quotas
from onestack.compute.manager import ComputeManager
from onestack.db.compute import Instance
from onestack.db.engine import Database
from onestack.db.migrate import upgrade

FLAVOR = {"vcpus": 2, "memory_mb": 1024}
LIMITS = {"instances": 10, "cores": 20, "ram": 51200}


def test_fit_is_the_tightest_resource() -> None:
    used = {"instances": 3, "cores": 6, "ram": 3072}
    # instances: 7 left, cores: 14 // 2 = 7, ram: 48128 // 1024 = 47
    assert quotas.instances_that_fit(LIMITS, used, FLAVOR, 1, 100, 1000) == 7
    assert quotas.instances_that_fit(LIMITS, used, FLAVOR, 7, 7, 1000) == 7
    assert quotas.instances_that_fit(LIMITS, used, {"vcpus": 4, "memory_mb": 1}, 1, 9,
                                     1000) == 3


@pytest.mark.parametrize("huge", [10**6, 2**63, 10**4000])
def test_huge_max_count_is_answered_at_once(huge: int) -> None:
    start = time.monotonic()
    assert quotas.instances_that_fit(LIMITS, {}, FLAVOR, 1, huge, 1000) == 10
    with pytest.raises(quotas.OverQuota) as err:
        quotas.instances_that_fit(LIMITS, {}, FLAVOR, huge, huge, 1000)
    assert time.monotonic() - start < 0.1
    assert err.value.status == 403
    assert err.value.message.startswith("Quota exceeded for cores, instances, ram: Requested ")


def test_refusal_message_is_novas() -> None:
    used = {"instances": 9, "cores": 0, "ram": 0}
    with pytest.raises(quotas.OverQuota) as err:
        quotas.instances_that_fit(LIMITS, used, FLAVOR, 2, 2, 1000)
    assert err.value.message == ("Quota exceeded for instances: Requested 2, but already used "
                                 "9 of 10 instances")
    with pytest.raises(quotas.OverQuota) as err:
        quotas.instances_that_fit(LIMITS, used, FLAVOR, 2, 5, 1000)
    assert err.value.message == ("Quota exceeded for instances: Requested 2-5, but already "
                                 "used 9 of 10 instances")
    with pytest.raises(quotas.OverQuota) as err:
        quotas.instances_that_fit(LIMITS, {"instances": 0, "cores": 19, "ram": 0}, FLAVOR,
                                  1, 1, 1000)
    assert err.value.message == ("Quota exceeded for cores: Requested 2, but already used 19 "
                                 "of 20 cores")


def test_unlimited_quota_is_capped_per_request() -> None:
    unlimited = {"instances": -1, "cores": -1, "ram": -1}
    assert quotas.instances_that_fit(unlimited, {}, FLAVOR, 1, 2**63, 50) == 50
    with pytest.raises(quotas.OverQuota) as err:
        quotas.instances_that_fit(unlimited, {}, FLAVOR, 51, 2**63, 50)
    assert "at most 50 instances can be created in one request" in err.value.message


def ctx() -> RequestContext:
    return RequestContext(request_id="req-test", user_id="u1", project_id="p1",
                          roles=["member"])


def test_manager_creates_at_most_the_cap_and_refuses_beyond(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'c.db'}", 5)
    upgrade(db.engine)
    try:
        m = ComputeManager(db, max_instances_per_request=5)
        m.ensure_default_flavors()
        m.set_quotas("p1", {"instances": -1, "cores": -1, "ram": -1}, None, True)
        spec = {"name": "vm", "flavor": m.get_flavor(None, "1"), "image_ref": "",
                "system_metadata": {}}
        start = time.monotonic()
        with pytest.raises(Forbidden):
            m.create_instances(ctx(), spec, 2**63, 2**63)
        with pytest.raises(Forbidden):
            m.create_instances(ctx(), spec, 10**6, 10**6)
        assert time.monotonic() - start < 1
        with db.reader() as s:
            assert s.scalar(select(func.count()).select_from(Instance)) == 0
        assert len(m.create_instances(ctx(), spec, 2**63, 1)) == 5
    finally:
        db.dispose()
