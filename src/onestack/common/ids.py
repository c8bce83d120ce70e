"""Identifier helpers."""

from __future__ import annotations

import uuid


def new_id() -> str:
    """A new id in OpenStack's 32-hex-digit form (Keystone style)."""
    return uuid.uuid4().hex


def new_uuid() -> str:
    """A new dashed UUID (Nova/Neutron/Glance style)."""
    return str(uuid.uuid4())


def is_uuid(value: object) -> bool:
    """Whether ``value`` is a string Python's UUID parser accepts (dashed or not)."""
    if not isinstance(value, str):
        return False
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True
