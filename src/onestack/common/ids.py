"""Identifier helpers."""

from __future__ import annotations

import uuid


def new_id() -> str:
    """A new id in OpenStack's 32-hex-digit form (Keystone style)."""
    return uuid.uuid4().hex


def new_uuid() -> str:
    """A new dashed UUID (Nova/Neutron/Glance style)."""
    return str(uuid.uuid4())
