"""Placement pure functions: microversion header parsing and query-string parsers."""

from __future__ import annotations

import pytest

from onestack.common.errors import BadRequest
from onestack.placement.api import parse_member_of, parse_required, parse_resources
from onestack.placement.manager import INT_MAX, PlacementManager, capacity, traits_ok
from onestack.placement.microversion import VersionError, parse_header

AGG = "7f9c5690-4915-484d-9785-3f3a149c6453"
AGG2 = "d51a6915-a62a-4ccb-b541-e4928d2ba03c"


@pytest.mark.parametrize(("header", "expected"), [
    (None, (1, 0)), ("placement 1.20", (1, 20)), ("placement latest", (1, 39)),
    ("compute 2.1, placement 1.5", (1, 5)), ("compute 2.50", (1, 0)),
    ("PLACEMENT 1.39", (1, 39)),
])
def test_parse_header(header: str | None, expected: tuple[int, int]) -> None:
    assert parse_header(header) == expected


@pytest.mark.parametrize(("header", "status"), [
    ("placement 1.40", 406), ("placement 2.0", 406), ("placement 0.9", 406),
    ("placement 1.x", 400), ("placement one", 400), ("placement 1.-1", 400),
])
def test_parse_header_errors(header: str, status: int) -> None:
    with pytest.raises(VersionError) as exc:
        parse_header(header)
    assert exc.value.status == status


def test_parse_resources() -> None:
    assert parse_resources("VCPU:2,MEMORY_MB:512") == {"VCPU": 2, "MEMORY_MB": 512}
    for bad in ("VCPU", "VCPU:", "VCPU:-1", "VCPU:0", "VCPU:1,VCPU:2", ":1", "VCPU:1.5"):
        with pytest.raises(BadRequest):
            parse_resources(bad)


def test_parse_required() -> None:
    req, forb = parse_required(["A,!B", "in:C,D"], (1, 39))
    assert req == [frozenset({"A"}), frozenset({"C", "D"})] and forb == {"B"}
    with pytest.raises(BadRequest):
        parse_required(["in:C,D"], (1, 38))
    with pytest.raises(BadRequest):
        parse_required(["!B"], (1, 21))
    with pytest.raises(BadRequest):
        parse_required(["A,!A"], (1, 39))


def test_parse_member_of() -> None:
    any_of, forb = parse_member_of([f"in:{AGG},{AGG2}", f"!{AGG2}"], (1, 32))
    assert any_of == [frozenset({AGG, AGG2})] and forb == {AGG2}
    with pytest.raises(BadRequest):
        parse_member_of([f"!{AGG}"], (1, 31))
    with pytest.raises(BadRequest):
        parse_member_of(["not-a-uuid"], (1, 39))
    with pytest.raises(BadRequest):
        parse_member_of([f"{AGG},{AGG2}"], (1, 39))


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
