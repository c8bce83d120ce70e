"""The one request-body parser (``onestack.api.body``): what it refuses and what it keeps."""

from __future__ import annotations

import json

import pytest

from onestack.api.body import MAX_DEPTH, BodyError, parse_json
from onestack.common.errors import BadRequest


@pytest.mark.parametrize("raw", [
    b'{"a": NaN}', b'{"a": Infinity}', b'[-Infinity]', b'{"a": 1e400}',
    b'{"name": "\\ud800"}', b'{"name": "x\\udc00y"}', b'{"\\ud800": 1}',
    b'{"name": "\xed\xa0\x80"}', b'{"name": "\xff"}', b'{"name": "a\\u0000b"}',
    b'{"a\\u0000": 1}',
    b'{"n": 9223372036854775808}', b'{"n": -9223372036854775809}',
    b'{"n": 18446744073709551615}', b'{"n": 18446744073709551616}',
    b'[1180591620717411303424]', b'{"n": 1e19}', b'{"n": -9.3e18}',
    b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
    b'{"a":' * 100000 + b"1" + b"}" * 100000,
    b"[" * 100000, b'{"a": 1', b"", b"nul", b"\"abc",
])
def test_refused(raw: bytes) -> None:
    with pytest.raises(BodyError) as info:
        parse_json(raw)
    assert isinstance(info.value, BadRequest) and info.value.status == 400


@pytest.mark.parametrize("doc", [
    {"port": {"name": "p", "network_id": "n", "fixed_ips": [{"ip_address": "10.0.0.3"}],
              "admin_state_up": True, "binding:profile": {}, "mtu": 1500, "x": None}},
    {"n": 9223372036854775807, "m": -9223372036854775808, "f": 1.5, "g": -9.2e18},
    {"name": "emoji \U0001f600 and ümlaut and 中文"}, [], 0, "text", None, True,
    [[[[{"deep": [1]}]]]],
])
def test_kept(doc: object) -> None:
    assert parse_json(json.dumps(doc).encode()) == doc


def test_depth_limit_is_exact() -> None:
    ok = "[" * MAX_DEPTH + "]" * MAX_DEPTH
    assert parse_json(ok.encode()) is not None
    with pytest.raises(BodyError):
        parse_json(("[" * (MAX_DEPTH + 1) + "]" * (MAX_DEPTH + 1)).encode())


# ---------------------------------------------------------------------- path and query checks
@pytest.mark.parametrize("value", ["a\x00b", str(2 ** 63), str(-(2 ** 63) - 1), "9" * 40,
                                   str(2 ** 70)])
def test_path_parameters_that_cannot_name_anything(value: str) -> None:
    from onestack.api.params import check_path
    from onestack.common.errors import NotFound

    with pytest.raises(NotFound):
        check_path({"id": value})


@pytest.mark.parametrize("items", [[("limit", str(2 ** 70))], [("minRam", "99999999999999999999")],
                                   [("name", "a\x00")], [("a\x00", "1")],
                                   [("marker", "-9223372036854775809")]])
def test_query_values_refused(items: list[tuple[str, str]]) -> None:
    from onestack.api.params import check_query

    with pytest.raises(BadRequest):
        check_query(items)


def test_ordinary_parameters_pass() -> None:
    from onestack.api.params import check_path, check_query

    check_path({"id": "3f1d2c9e-8a7b-4c6d-9e0f-1a2b3c4d5e6f", "n": str(2 ** 63 - 1),
                "name": "１２３４５６７８９０１２３４５６７８９０"})
    check_query([("limit", "1000"), ("marker", "abc"), ("name", "x" * 100),
                 ("n", str(-(2 ** 63))), ("ip", "10.0.0.1")])
