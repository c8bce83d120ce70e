"""The image manager's pure helpers (``image/manager.py``)."""

from __future__ import annotations

from onestack.image.manager import _split_in


def test_split_in() -> None:
    assert _split_in("a,b") == ["a", "b"]
    assert _split_in('"a,b",c') == ["a,b", "c"]
