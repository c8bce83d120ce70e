"""Sizes as people read them."""

from __future__ import annotations

from typing import Any


def human_size(n: Any) -> str:
    """``n`` bytes as ``512 B``, ``1.5 KiB`` ... ``2.0 TiB`` (``-`` when not a number)."""
    try:
        value = float(n)
    except (TypeError, ValueError):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return str(n)
