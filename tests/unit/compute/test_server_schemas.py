"""Nova's server-create schema by microversion (``compute/server_schemas.py``)."""

from __future__ import annotations

from typing import Any

import pytest

from onestack.common.errors import ValidationError
from onestack.compute.server_schemas import check_create

IMAGE = "3f1d2c9e-8a7b-4c6d-9e0f-1a2b3c4d5e6f"


def _body(minor: int, **extra: Any) -> dict[str, Any]:
    server: dict[str, Any] = {"name": "vm", "imageRef": IMAGE, "flavorRef": "1"}
    if minor >= 37:
        server["networks"] = "none"
    server.update(extra)
    return {"server": server}


@pytest.mark.parametrize("minor,extra", [
    (1, {}), (1, {"networks": [{"uuid": "x", "fixed_ip": "10.0.0.3"}]}),
    (1, {"personality": [{"path": "/etc/x", "contents": "eA=="}]}),
    (19, {"description": None}), (52, {"tags": ["a", "b"]}), (74, {"host": "compute-1"}),
    (90, {"hostname": "web-1"}), (94, {"hostname": "web-1.example.org"}),
    (96, {"metadata": {"k": "v"}, "key_name": "kp", "min_count": "2", "max_count": 3,
          "config_drive": "true", "security_groups": [{"name": "default"}],
          "user_data": "eA==", "availability_zone": "nova", "adminPass": "p",
          "block_device_mapping_v2": [{"boot_index": "0", "uuid": IMAGE,
                                       "source_type": "image",
                                       "destination_type": "local"}]}),
])
def test_accepted(minor: int, extra: dict[str, Any]) -> None:
    check_create(_body(minor, **extra), minor)


@pytest.mark.parametrize("minor,extra", [
    (96, {"foo": 1}), (1, {"foo": 1}), (18, {"description": "d"}), (51, {"tags": ["a"]}),
    (57, {"personality": []}), (73, {"host": "h"}), (89, {"hostname": "h"}),
    (96, {"hostname": 123}), (90, {"hostname": "a.b" + "c" * 70}), (96, {"key_name": 5}),
    (96, {"metadata": {"k": 1}}), (96, {"metadata": {"": "v"}}),
    (96, {"metadata": {"k": "v" * 256}}), (96, {"name": ""}), (96, {"name": ["x"]}),
    (96, {"min_count": 0}), (96, {"max_count": "x"}), (96, {"tags": [1]}),
    (96, {"networks": [{"uuid": "not-a-uuid"}]}), (96, {"networks": "some"}),
    (96, {"security_groups": [{"name": 1}]}), (96, {"OS-DCF:diskConfig": "x"}),
    (96, {"block_device_mapping_v2": [{"boot_index": []}]}), (96, {"user_data": 5}),
])
def test_refused(minor: int, extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        check_create(_body(minor, **extra), minor)


def test_refused_shapes() -> None:
    for body in ({}, {"server": []}, {"server": {"name": "x"}},
                 {**_body(96), "bogus": 1}, {**_body(96), "os:scheduler_hints": []}):
        with pytest.raises(ValidationError):
            check_create(body, 96)
    check_create({**_body(96), "os:scheduler_hints": {"group": IMAGE, "custom": [1]}}, 96)
