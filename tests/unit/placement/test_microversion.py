"""Placement's microversion header (``placement/microversion.py``)."""

from __future__ import annotations

import pytest

from onestack.placement.microversion import VersionError, parse_header


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
