"""The image service's stores: one default store plus optional extra local file stores.

Glance calls this "multiple backends" (``enabled_backends``). ``image_stores`` in the settings
lists them as ``id[:weight]`` entries, comma-separated, e.g. ``fast:200,file:100,slow:50``;
the first entry is the default store. The store with id ``file`` is the data directory's
``images/``; any other id is ``images-<id>/`` next to it (a different disk can be mounted
there). Empty means the single ``file`` store. Stores are listed, and an image's ``stores``
attribute is ordered, by weight (highest first, then id).

Every writable store is a ``FileStore`` of this host. When ``image_url_allow`` names places
the service may read, a read-only ``web`` store (Glance's http store) serves images whose
data lives at an http(s) location; it only ever reads URLs the allow-list accepts.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

from onestack.common.errors import APIError, BadRequest
from onestack.drivers.imagestore.base import (
    DataNotFound,
    ImageStore,
    ImageWriter,
    StoredData,
    StoreError,
)
from onestack.drivers.imagestore.file import FileStore
from onestack.image import fetch

_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def parse_spec(spec: str) -> list[tuple[str, int]]:
    """``"fast:200,file"`` -> ``[("fast", 200), ("file", 0)]`` (ValueError when malformed)."""
    out: list[tuple[str, int]] = []
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        sid, _, weight = item.partition(":")
        if not _ID.match(sid):
            raise ValueError(f"bad image store id {sid!r}")
        if any(sid == s for s, _w in out):
            raise ValueError(f"image store {sid!r} listed twice")
        out.append((sid, int(weight) if weight else 0))
    return out


WEB_STORE = "web"


class HttpStore(ImageStore):
    """Read-only store of data at http(s) URLs (image locations), behind the allow-list."""

    store_id = WEB_STORE
    description = "Read-only http(s) locations (allow-listed)"

    def __init__(self, policy: fetch.UrlPolicy) -> None:
        self.policy = policy

    def begin(self, image_id: str, staging: bool = False) -> ImageWriter:
        raise StoreError("the web store is read-only")

    def open(self, location: str, offset: int = 0, length: int | None = None,
             chunk_size: int = 1 << 20) -> Iterator[bytes]:
        try:
            target = self.policy.check(location)
        except APIError as exc:
            raise StoreError(exc.message) from None
        return fetch.stream(target, offset, length, chunk_size)

    def delete(self, location: str) -> None:
        """Nothing to do: the data is not ours (Glance's http store does not delete)."""

    def promote(self, staged: StoredData, image_id: str) -> StoredData:
        raise StoreError("the web store is read-only")

    def owns(self, location: str) -> bool:
        return location.startswith(("http://", "https://"))


class StoreSet:
    """The stores an image can live in, by id."""

    def __init__(self, default: ImageStore, spec: str = "",
                 url_policy: fetch.UrlPolicy | None = None) -> None:
        entries = parse_spec(spec) or [(default.store_id, 0)]
        self.weights = dict(entries)
        self.weighted = any(w for _s, w in entries)
        self.default_id = entries[0][0]
        self._stores: dict[str, ImageStore] = {}
        root = getattr(default, "root", None)
        for sid, _w in entries:
            if sid == default.store_id:
                self._stores[sid] = default
            elif isinstance(root, Path):
                store = FileStore(root.parent / f"{root.name}-{sid}")
                store.store_id = sid
                store.description = f"Local filesystem store {sid}"
                self._stores[sid] = store
            else:  # pragma: no cover - only file stores are configured today
                raise ValueError(f"cannot add store {sid!r} next to a non-file store")
        if default.store_id not in self._stores:
            # The default store always exists (it holds staged data and older images).
            self._stores[default.store_id] = default
            self.weights.setdefault(default.store_id, 0)
        self.staging = default
        self.url_policy = url_policy or fetch.UrlPolicy("")
        self.web: HttpStore | None = None
        if self.url_policy.enabled and WEB_STORE not in self._stores:
            self.web = HttpStore(self.url_policy)
            self._stores[WEB_STORE] = self.web
            self.weights.setdefault(WEB_STORE, 0)

    @property
    def default(self) -> ImageStore:
        return self._stores[self.default_id]

    def ids(self) -> list[str]:
        """Store ids, highest weight first (then by id)."""
        return sorted(self._stores, key=lambda s: (-self.weights.get(s, 0), s))

    def writable_ids(self) -> list[str]:
        """Store ids that accept data (all but the read-only ``web`` store)."""
        return [s for s in self.ids() if self._stores[s] is not self.web]

    def order(self, ids: Iterator[str] | list[str] | set[str]) -> list[str]:
        return sorted(ids, key=lambda s: (-self.weights.get(s, 0), s))

    def __len__(self) -> int:
        return len(self._stores)

    def __iter__(self) -> Iterator[ImageStore]:
        return iter(self._stores[s] for s in self.ids())

    def get(self, store_id: str) -> ImageStore:
        """The writable store ``store_id`` (400 when there is none)."""
        store = self._stores.get(store_id) if isinstance(store_id, str) else None
        if store is None or store is self.web:
            raise BadRequest(f"Unknown or read-only store {store_id!r}; available: "
                             f"{', '.join(self.writable_ids())}.")
        return store

    def store_of(self, location: str) -> ImageStore:
        """The store that holds ``location`` (StoreError when none does)."""
        if self.web is not None and self.web.owns(location):
            return self.web
        for store in self._stores.values():
            if store.local_path(location) is not None:
                return store
        raise StoreError(f"no store holds {location!r}")

    def store_id_of(self, location: str) -> str:
        try:
            return self.store_of(location).store_id
        except StoreError:
            return self.default_id

    def local_path(self, location: str) -> str | None:
        try:
            return self.store_of(location).local_path(location)
        except StoreError:
            return None

    def delete(self, location: str) -> None:
        self.store_of(location).delete(location)

    def open(self, location: str, offset: int = 0, length: int | None = None,
             chunk_size: int = 1 << 20) -> Iterator[bytes]:
        try:
            store = self.store_of(location)
        except StoreError:
            raise DataNotFound(f"no data at {location}") from None
        return store.open(location, offset, length, chunk_size)

    def info(self) -> list[dict[str, object]]:
        out: list[dict[str, object]] = []
        for sid in self.ids():
            doc: dict[str, object] = {"id": sid, "description": self._stores[sid].description}
            if sid == self.default_id:
                doc["default"] = True
            if self.weighted:
                doc["weight"] = self.weights.get(sid, 0)
            if self._stores[sid] is self.web:
                doc["read-only"] = "true"
            out.append(doc)
        return out
