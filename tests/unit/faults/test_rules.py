"""Fault rules: validation, matching, rate and count across processes, a damaged file."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from onestack.common.errors import ValidationError
from onestack.faults import rules as fr
from onestack.faults.rules import FaultTable, parse_rule


def test_parse_rule_refuses_bad_rules() -> None:
    for body in ([], "x", {"kind": "nope"}, {"kind": "http", "status": 200},
                 {"kind": "http", "status": 600}, {"kind": "http", "rate": 1.5},
                 {"kind": "http", "count": 0}, {"kind": "http", "delay": 61},
                 {"kind": "http", "unknown": 1}, {"kind": "http", "path": "x" * 300},
                 {"kind": "http", "service": "dns"}):
        with pytest.raises(ValidationError):
            parse_rule(body)


def test_latency_only_rule_has_no_status() -> None:
    assert parse_rule({"kind": "http", "delay": 0.5}).status == 0
    assert parse_rule({"kind": "http", "delay": 0.5, "status": 500}).status == 500
    assert parse_rule({"kind": "http", "method": "post"}).method == "POST"


def test_match_by_service_method_path(tmp_path: Path) -> None:
    table = FaultTable(tmp_path)
    assert not table.active
    rule = table.add(parse_rule({"kind": "http", "service": "compute", "method": "POST",
                                 "path": "*/servers"}))
    assert table.match_http("network", "POST", "/v2.1/servers") is None
    assert table.match_http("compute", "GET", "/v2.1/servers") is None
    assert table.match_http("compute", "POST", "/v2.1/servers/x") is None
    hit = table.match_http("compute", "post", "/v2.1/servers")
    assert hit is not None and hit.id == rule.id and hit.hits == 1
    assert table.list()[0].hits == 1


def test_count_is_shared_between_processes(tmp_path: Path) -> None:
    one, two = FaultTable(tmp_path), FaultTable(tmp_path)
    one.add(parse_rule({"kind": "http", "count": 3}))
    two.reload(force=True)
    fired = [t.match_http("image", "GET", "/v2/images") for t in (one, two, one, two, one)]
    assert [f is not None for f in fired] == [True, True, True, False, False]
    assert one.list() == [] and two.list() == []


def test_rate_is_applied(tmp_path: Path) -> None:
    table = FaultTable(tmp_path, rng=random.Random(7))
    table.add(parse_rule({"kind": "http", "rate": 0.25}))
    fired = sum(table.match_http("identity", "GET", "/v3") is not None for _ in range(400))
    assert 60 <= fired <= 140  # binomial(400, 0.25): mean 100, sd 8.7


def test_other_kinds(tmp_path: Path) -> None:
    table = FaultTable(tmp_path)
    table.add(parse_rule({"kind": "build", "host": "h-00*"}))
    table.add(parse_rule({"kind": "host_down", "host": "h-0002"}))
    table.add(parse_rule({"kind": "bus", "topic": "compute.*", "method": "get_*"}))
    assert table.match_build("h-0101") is None
    assert table.match_build("h-0001") is not None
    assert table.hosts_down(["h-0001", "h-0002"]) == {"h-0002"}
    assert table.match_bus("scheduler", "get_x") is None
    assert table.match_bus("compute.h", "get_console_output") is not None
    assert table.match_http("compute", "GET", "/") is None
    assert table.remove(table.list()[0].id)
    assert not table.remove("nope")
    assert table.clear() == 2 and not table.active


def test_a_damaged_file_injects_nothing(tmp_path: Path) -> None:
    (tmp_path / fr.FAULT_FILE).write_text("{not json")
    table = FaultTable(tmp_path)
    assert not table.active
    (tmp_path / fr.FAULT_FILE).write_text(json.dumps({"rules": [{"kind": "http"},
                                                                {"bogus": 1}]}))
    table.reload(force=True)
    assert len(table.rules) == 1


def test_the_number_of_rules_is_bounded(tmp_path: Path) -> None:
    table = FaultTable(tmp_path)
    for _ in range(fr.MAX_RULES):
        table.add(parse_rule({"kind": "http", "path": "/never"}))
    with pytest.raises(ValidationError):
        table.add(parse_rule({"kind": "http"}))
