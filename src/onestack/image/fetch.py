"""Fetching image data from URLs, only from places the operator allowed.

The image service reads a URL in three cases: ``web-download`` imports, image ``locations``
(the read-only ``web`` store) and ``glance-download`` imports from another image endpoint of
the catalog. Each is a server-side request forgery risk (a user making the service read its
own network), so every URL must match an entry of ``image_url_allow`` (empty by default:
nothing is ever fetched). An entry is ``scheme://host[:port][/path-prefix]``; a URL matches
when its scheme, host name and port are equal (the port defaults to 80/443) and its path
starts with the entry's path. URLs with user info, other schemes or no host are refused, and
redirects are never followed (a redirect could leave the allowed place).
"""

from __future__ import annotations

import http.client
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from onestack.common.errors import BadRequest
from onestack.drivers.imagestore.base import DataNotFound, StoreError

SCHEMES = ("http", "https")
_DEFAULT_PORT = {"http": 80, "https": 443}
#: Seconds to wait for a remote server to answer or send the next chunk.
TIMEOUT = 30.0


@dataclass(frozen=True)
class _Entry:
    scheme: str
    host: str
    port: int
    path: str


@dataclass(frozen=True)
class Target:
    """A URL that passed the allow-list, split for ``http.client``."""

    url: str
    scheme: str
    host: str
    port: int
    path: str


def _split(url: str) -> Target:
    """Split ``url`` (ValueError when it is not a plain http(s) URL with a host)."""
    if not isinstance(url, str) or not url or any(c in url for c in "\r\n\t ") or len(
            url) > 2048:
        raise ValueError("not a URL")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError(f"scheme {parts.scheme!r} is not http or https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise ValueError("user information in URLs is not accepted")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("no host")
    port = parts.port or _DEFAULT_PORT[scheme]
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(url, scheme, host, port, path)


class UrlPolicy:
    """The ``image_url_allow`` setting: which URLs the service may read."""

    def __init__(self, spec: str = "") -> None:
        self.entries: list[_Entry] = []
        for item in (p.strip() for p in spec.split(",")):
            if not item:
                continue
            t = _split(item)  # ValueError for a malformed setting: fail at start
            self.entries.append(_Entry(t.scheme, t.host, t.port, t.path))

    @property
    def enabled(self) -> bool:
        """Whether any URL at all may be fetched."""
        return bool(self.entries)

    def check(self, url: object) -> Target:
        """The split URL when it may be fetched; 400 (``does not pass filtering``) if not."""
        try:
            t = _split(url)  # type: ignore[arg-type]
        except (ValueError, TypeError) as exc:
            raise BadRequest(f"URL {url!r} does not pass filtering: {exc}.") from None
        for e in self.entries:
            if (t.scheme, t.host, t.port) == (e.scheme, e.host, e.port) and \
                    t.path.startswith(e.path):
                return t
        raise BadRequest(f"URL {url!r} does not pass filtering: this cloud only fetches "
                         "image data from the places its operator allowed "
                         "(image_url_allow).")


def _connect(t: Target, timeout: float) -> http.client.HTTPConnection:
    cls = http.client.HTTPSConnection if t.scheme == "https" else http.client.HTTPConnection
    return cls(t.host, t.port, timeout=timeout)


def head_size(t: Target, headers: Mapping[str, str] | None = None,
              timeout: float = TIMEOUT) -> int | None:
    """The size the server announces for ``t`` (None when it does not say).

    Raises StoreError when the URL cannot be read (unreachable, not 200).
    """
    conn = _connect(t, timeout)
    try:
        conn.request("HEAD", t.path, headers=dict(headers or {}))
        resp = conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise StoreError(f"{t.url} answered {resp.status} {resp.reason}")
        length = resp.getheader("content-length")
        return int(length) if length and length.isdigit() else None
    except (OSError, http.client.HTTPException) as exc:
        raise StoreError(f"cannot reach {t.url}: {exc}") from exc
    finally:
        conn.close()


def stream(t: Target, offset: int = 0, length: int | None = None,
           chunk_size: int = 1 << 20, headers: Mapping[str, str] | None = None,
           timeout: float = TIMEOUT) -> Iterator[bytes]:
    """GET ``t`` and yield its body in chunks (``offset``/``length`` as a Range request).

    Connects before returning, so an unreachable URL or an error status raises StoreError
    (DataNotFound for 404/410) before anything is yielded.
    """
    hdrs = dict(headers or {})
    if offset or length is not None:
        end = "" if length is None else str(offset + length - 1)
        hdrs["Range"] = f"bytes={offset}-{end}"
    conn = _connect(t, timeout)
    try:
        conn.request("GET", t.path, headers=hdrs)
        resp = conn.getresponse()
    except (OSError, http.client.HTTPException) as exc:
        conn.close()
        raise StoreError(f"cannot reach {t.url}: {exc}") from exc
    if resp.status in (404, 410):
        conn.close()
        raise DataNotFound(f"{t.url} answered {resp.status}")
    if resp.status not in (200, 206):
        conn.close()
        raise StoreError(f"{t.url} answered {resp.status} {resp.reason}")
    # A server that ignores Range sends everything: skip to the offset ourselves.
    skip = offset if resp.status == 200 else 0

    def body() -> Iterator[bytes]:
        left = length
        try:
            to_skip = skip
            while to_skip > 0:
                try:
                    dropped = resp.read(min(chunk_size, to_skip))
                except (OSError, http.client.HTTPException) as exc:
                    raise StoreError(f"reading {t.url} failed: {exc}") from exc
                if not dropped:
                    return
                to_skip -= len(dropped)
            while left is None or left > 0:
                want = chunk_size if left is None else min(chunk_size, left)
                try:
                    data = resp.read(want)
                except (OSError, http.client.HTTPException) as exc:
                    raise StoreError(f"reading {t.url} failed: {exc}") from exc
                if not data:
                    break
                if left is not None:
                    left -= len(data)
                yield data
        finally:
            conn.close()

    return body()
