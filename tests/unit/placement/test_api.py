"""Placement API query-string parsers (``placement/api.py``)."""

from __future__ import annotations

import pytest

from onestack.common.errors import BadRequest
from onestack.placement.api import parse_member_of, parse_required, parse_resources

AGG = "7f9c5690-4915-484d-9785-3f3a149c6453"
AGG2 = "d51a6915-a62a-4ccb-b541-e4928d2ba03c"


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
