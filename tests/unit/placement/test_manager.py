"""The placement manager's pure parts (``placement/manager.py``): capacity, traits, inventory."""

from __future__ import annotations

import pytest

from onestack.common.errors import BadRequest
from onestack.placement.manager import INT_MAX, PlacementManager, capacity, traits_ok


def test_capacity_and_traits() -> None:
    assert capacity(10, 2, 1.5) == 12
    assert capacity(4, 0, 0.5) == 2
    assert traits_ok({"A", "B"}, [frozenset({"A"}), frozenset({"X", "B"})], {"C"})
    assert not traits_ok({"A", "C"}, [frozenset({"A"})], {"C"})


def test_normalize_inventory() -> None:
    rec = PlacementManager.normalize_inventory("VCPU", 8)
    assert rec == {"total": 8, "reserved": 0, "min_unit": 1, "max_unit": INT_MAX,
                   "step_size": 1, "allocation_ratio": 1.0}
    assert PlacementManager.normalize_inventory("VCPU", {"total": 4, "reserved": 4})
    with pytest.raises(BadRequest):
        PlacementManager.normalize_inventory("VCPU", {"total": 4, "reserved": 4}, False)
    with pytest.raises(BadRequest):
        PlacementManager.normalize_inventory("VCPU", {"total": 4, "reserved": 5})
