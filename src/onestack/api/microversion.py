"""Microversions shared by the services that have them: a comparable ``major.minor`` version
and the fault a version layer answers before any handler runs."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from functools import total_ordering
from typing import Any

from starlette.types import Send

_VERSION_RE = re.compile(r"^([1-9]\d*)\.([1-9]\d*|0)$")


@total_ordering
class APIVersion:
    """A ``major.minor`` version comparable with another or with a ``"2.x"`` string."""

    __slots__ = ("major", "minor")

    def __init__(self, text: str) -> None:
        m = _VERSION_RE.match(text.strip())
        if m is None:
            raise ValueError(text)
        self.major = int(m.group(1))
        self.minor = int(m.group(2))

    def _key(self, other: Any) -> tuple[int, int]:
        if isinstance(other, str):
            other = APIVersion(other)
        return (other.major, other.minor)

    def __eq__(self, other: object) -> bool:
        return (self.major, self.minor) == self._key(other)

    def __lt__(self, other: Any) -> bool:
        return (self.major, self.minor) < self._key(other)

    def __hash__(self) -> int:
        return hash((self.major, self.minor))

    def __str__(self) -> str:
        return f"{self.major}.{self.minor}"

    def matches(self, low: str, high: str | None = None) -> bool:
        """``low <= self`` (and ``self <= high`` when given)."""
        return self >= low and (high is None or self <= high)


async def send_fault(send: Send, status: int, kind: str, message: str,
                     headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    """Answer with Nova's/Cinder's fault body ``{kind: {"code", "message"}}``."""
    body = json.dumps({kind: {"code": status, "message": message}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *headers]})
    await send({"type": "http.response.body", "body": body})
