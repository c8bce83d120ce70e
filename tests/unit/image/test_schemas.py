"""Image attribute names and values (``image/schemas.py``)."""

from __future__ import annotations

import pytest

from onestack.common.errors import BadRequest, Forbidden
from onestack.image import schemas


def test_attribute_names() -> None:
    for name in ("os_glance_x", "location", "deleted"):
        with pytest.raises(Forbidden):
            schemas.check_attribute_name(name)
    with pytest.raises(Forbidden, match="read-only"):
        schemas.check_attribute_name("checksum")
    schemas.check_attribute_name("hw_disk_bus")
    schemas.validate_image({"name": None, "disk_format": None, "x": "y"})
    with pytest.raises(BadRequest):
        schemas.validate_image({"disk_format": "floppy"})
    with pytest.raises(BadRequest):
        schemas.validate_image({"x": 1})
