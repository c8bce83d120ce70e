"""Time helpers: everything is UTC, serialised the way OpenStack APIs do."""

from __future__ import annotations

import datetime as dt

UTC = dt.UTC


def utcnow() -> dt.datetime:
    """Naive UTC now (the database stores naive UTC)."""
    return dt.datetime.now(UTC).replace(tzinfo=None)


def isotime(value: dt.datetime | None, subsecond: bool = False) -> str | None:
    """``2024-01-02T03:04:05Z`` or, with ``subsecond``, ``…05.123456Z`` (Keystone tokens)."""
    if value is None:
        return None
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    if subsecond:
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def from_timestamp(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, UTC).replace(tzinfo=None)


def to_timestamp(value: dt.datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def parse_isotime(text: str) -> dt.datetime:
    """Parse an ISO 8601 time; naive results are taken as UTC. Raises ValueError."""
    text = text.strip()
    if text.endswith("Z") or text.endswith("z"):
        text = text[:-1] + "+00:00"
    value = dt.datetime.fromisoformat(text)
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value
