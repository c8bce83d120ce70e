"""Validation data of image locations (``image/locations.py``)."""

from __future__ import annotations

import hashlib

import pytest

from onestack.common.errors import BadRequest
from onestack.image.locations import check_validation_data


def test_validation_data() -> None:
    sha = hashlib.sha512(b"x").hexdigest()
    assert check_validation_data(None) == {}
    assert check_validation_data({"os_hash_algo": "sha512", "os_hash_value": sha.upper(),
                                  "checksum": "A" * 32}) == {
        "os_hash_algo": "sha512", "os_hash_value": sha, "checksum": "a" * 32}
    for bad in ({"os_hash_value": sha}, {"os_hash_algo": "md4", "os_hash_value": sha},
                {"os_hash_algo": "sha256", "os_hash_value": sha}, {"checksum": "1" * 31},
                {"checksum": "g" * 32}, {"other": 1}, [1]):
        with pytest.raises(BadRequest):
            check_validation_data(bad)
