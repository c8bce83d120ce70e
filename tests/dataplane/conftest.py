"""Fixtures of the data-plane tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.dataplane.lab import Lab, lab_cloud


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """The DevStack-style lab (``tests/dataplane/lab.py``), one per test module."""
    yield from lab_cloud()
