"""Image locations: data that lives at an http(s) URL (Glance's ``locations``).

Two APIs, both off unless the operator turns them on:

* ``image_locations`` (Glance's ``show_multiple_locations``): images show ``locations``
  (``[{"url", "metadata"}]``: file-store copies as ``file://`` paths, then URL locations) and
  JSON-patch may ``add`` a URL location (``/locations/-`` or ``/locations/N``, optionally with
  ``validation_data`` that must agree with the image's checksums: 409 otherwise), ``replace``
  the list with the same URLs (only metadata may change: 400 otherwise) and ``remove`` one
  (admins only; never the last one: 403). A queued image given a location becomes active with
  the size the URL announces, without reading the data.
* ``POST /v2/images/{id}/locations`` (API 2.17): a queued image gets its one location and turns
  active at once; a ``location_import`` task then reads the data, computes md5 and the hash
  (``validation_data``'s algorithm, else sha512) and checks them against ``validation_data``;
  a mismatch returns the image to ``queued``.

Every URL must be http(s) and pass ``image_url_allow`` (``fetch.UrlPolicy``): no user can make
the service read a place the operator did not allow, and ``file://`` or other schemes are
refused, so no image can point at a file of the host.
"""

from __future__ import annotations

import hashlib
import logging
import re
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, Conflict, Forbidden
from onestack.common.timeutils import utcnow
from onestack.db.image import Image, ImageTask
from onestack.drivers.imagestore.base import StoreError
from onestack.image import fetch
from onestack.image.records import finish_task, new_task

if TYPE_CHECKING:
    from onestack.image.stores import StoreSet

LOG = logging.getLogger(__name__)

#: Hash algorithms accepted in ``validation_data`` and their hex digest lengths.
HASH_ALGOS = {name: hashlib.new(name).digest_size * 2
              for name in ("sha1", "sha224", "sha256", "sha384", "sha512", "sha3_224",
                           "sha3_256", "sha3_384", "sha3_512", "blake2b", "blake2s")}
_HEX = re.compile(r"^[0-9a-fA-F]+$")
#: While a location task hashes data, it checks every this many bytes that the image is
#: still there (a deleted image cancels the task).
CANCEL_CHECK_BYTES = 16 << 20


def url_locations(internal: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The URL locations recorded in an image's internal document."""
    locs = (internal or {}).get("url_locations")
    return [dict(x) for x in locs] if isinstance(locs, list) else []


def check_validation_data(vd: Any) -> dict[str, str]:
    """``validation_data`` of a new location, well-formed (400 otherwise)."""
    if vd is None:
        return {}
    if not isinstance(vd, dict):
        raise BadRequest("validation_data must be an object.")
    unknown = set(vd) - {"checksum", "os_hash_algo", "os_hash_value"}
    if unknown:
        raise BadRequest(f"Unknown validation_data keys: {', '.join(sorted(unknown))}.")
    out: dict[str, str] = {}
    checksum = vd.get("checksum")
    if checksum is not None:
        if not isinstance(checksum, str) or len(checksum) != 32 or not _HEX.match(checksum):
            raise BadRequest("validation_data checksum must be an MD5 hex digest.")
        out["checksum"] = checksum.lower()
    algo, value = vd.get("os_hash_algo"), vd.get("os_hash_value")
    if value is not None and algo is None:
        raise BadRequest("validation_data with os_hash_value needs os_hash_algo.")
    if algo is not None:
        if algo not in HASH_ALGOS:
            raise BadRequest(f"Unsupported hash algorithm {algo!r}; use one of "
                             f"{', '.join(sorted(HASH_ALGOS))}.")
        out["os_hash_algo"] = algo
        if value is not None:
            if not isinstance(value, str) or not _HEX.match(value) or len(
                    value) != HASH_ALGOS[algo]:
                raise BadRequest(f"validation_data os_hash_value is not a {algo} hex digest "
                                 f"({HASH_ALGOS[algo]} hex digits).")
            out["os_hash_value"] = value.lower()
    return out


def _conflicts(img: Image, vd: Any) -> None:
    """409 when ``vd`` disagrees with what the image already records."""
    if not isinstance(vd, dict):
        return
    for key in ("checksum", "os_hash_algo", "os_hash_value"):
        have = getattr(img, key)
        want = vd.get(key)
        if have is not None and want is not None and str(want).lower() != have.lower():
            raise Conflict(f"The location's {key} does not match the image's {key}.")


class LocationHost(Protocol):
    """What the location operations need from the image manager that owns them."""

    db: Any
    stores: StoreSet
    show_locations: bool

    def allowed(self, ctx: RequestContext, action: str, target: dict[str, Any]) -> bool:
        """Whether ``action``'s policy lets ``ctx`` act on ``target``."""
        ...

    def writable_row(self, ctx: RequestContext, s: Any, image_id: str,
                     action: str) -> Image:
        """The image row ``ctx`` sees (404 otherwise) once ``action`` is allowed on it
        (403 otherwise)."""
        ...

    def touch(self, img: Image) -> None:
        """``img``'s ``updated_at`` set to now."""
        ...


class ImageLocations:
    """Location operations of the image manager (see the module docstring); built by
    ``ImageManager`` as its ``location_ops``."""

    def __init__(self, host: LocationHost) -> None:
        self.m = host

    def location_docs(self, info: Any) -> list[dict[str, Any]]:
        """``locations`` as shown: file-store copies by weight, then URL locations."""
        internal = info.internal or {}
        out: list[dict[str, Any]] = []
        recorded = internal.get("locations")
        file_locs = {sid: loc for sid, loc in (recorded or {}).items()
                     if not loc.startswith(("http://", "https://"))} if isinstance(
            recorded, dict) else {}
        if not file_locs and info.location and not info.location.startswith(
                ("http://", "https://")):
            file_locs = {self.m.stores.store_id_of(info.location): info.location}
        for sid in self.m.stores.order(file_locs.keys()):
            out.append({"url": file_locs[sid], "metadata": {"store": sid}})
        for loc in url_locations(internal):
            out.append({"url": loc["url"], "metadata": dict(loc.get("metadata") or {})})
        return out

    def check_url(self, url: Any) -> fetch.Target:
        if not isinstance(url, str) or not url:
            raise BadRequest("A location needs a 'url' string.")
        scheme = url.split(":", 1)[0].lower() if ":" in url else ""
        if scheme not in fetch.SCHEMES:
            raise BadRequest(f"Invalid location {url!r}: only http and https locations are "
                             "accepted.")
        return self.m.stores.url_policy.check(url)

    def _location_size(self, url: str) -> int:
        """The size a location's server announces (400 when unreadable or unannounced)."""
        target = self.check_url(url)
        try:
            size = fetch.head_size(target)
        except StoreError as exc:
            raise BadRequest(f"Location {url!r} cannot be read: {exc}") from None
        if size is None:
            raise BadRequest(f"Location {url!r} does not announce its size "
                             "(no Content-Length).")
        return size

    def prepare_location_changes(self,
                                 changes: list[tuple[str, list[str], Any]]) -> dict[str, Any]:
        """Network work of a PATCH before its transaction: the sizes of added URLs."""
        sizes: dict[str, Any] = {}
        if not self.m.show_locations:
            return sizes
        for op, path, value in changes:
            if path[0] != "locations":
                continue
            new: list[Any] = []
            if op == "add" and len(path) == 2:
                new = [value]
            elif op == "replace" and len(path) == 1 and isinstance(value, list):
                new = value
            for loc in new:
                if isinstance(loc, dict) and isinstance(loc.get("url"), str) and \
                        loc["url"] not in sizes:
                    self.check_url(loc["url"])
                    sizes[loc["url"]] = None
        for url in sizes:
            sizes[url] = self._location_size(url)
        return sizes

    def apply_location_change(self, ctx: RequestContext, img: Image, op: str,
                              path: list[str], value: Any, sizes: dict[str, Any],
                              dropped: list[str]) -> None:
        """One JSON-patch operation on ``/locations`` (inside the PATCH transaction)."""
        current = self.location_docs(img)
        if op == "remove":
            if len(path) != 2:
                raise BadRequest("Remove a location by its index: /locations/N.")
            target = {"project_id": img.owner or "", "owner": img.owner or ""}
            if not self.m.allowed(ctx, "delete_image_location", target):
                raise Forbidden("You are not authorized to delete image locations.")
            if not path[1].isdigit() or int(path[1]) >= len(current):
                raise BadRequest(f"Invalid location index {path[1]!r}.")
            gone = current[int(path[1])]
            if len(current) <= 1:
                raise Forbidden("Cannot remove the last location of an image.")
            self._drop_location(img, gone["url"], dropped)
            return
        if op == "replace":
            if len(path) != 1 or not isinstance(value, list) or not all(
                    isinstance(v, dict) and isinstance(v.get("url"), str) for v in value):
                raise BadRequest("Replace /locations with a list of locations "
                                 "(objects with a 'url').")
            if not current:
                for loc in value:
                    self._add_location(img, loc, sizes, len(url_locations(img.internal)))
                return
            if sorted(v["url"] for v in value) != sorted(c["url"] for c in current):
                raise BadRequest("Replacing locations may only change their metadata or "
                                 "order; add or remove locations one at a time.")
            by_url = {}
            for v in value:
                meta = v.get("metadata", {})
                if not isinstance(meta, dict):
                    raise BadRequest("Location metadata must be an object.")
                by_url[v["url"]] = meta
            internal = dict(img.internal or {})
            internal["url_locations"] = [{"url": loc["url"], "metadata": by_url[loc["url"]]}
                                         for loc in sorted(
                                             url_locations(internal),
                                             key=lambda x: [v["url"] for v in value].index(
                                                 x["url"]))]
            img.internal = internal
            return
        # add
        if len(path) != 2:
            raise BadRequest("Add a location at /locations/- or /locations/N.")
        n_files = len(current) - len(url_locations(img.internal))
        if path[1] == "-":
            index = len(url_locations(img.internal))
        elif path[1].isdigit():
            index = max(0, int(path[1]) - n_files)
        else:
            raise BadRequest(f"Invalid location index {path[1]!r}.")
        self._add_location(img, value, sizes, index)

    def _add_location(self, img: Image, loc: Any, sizes: dict[str, Any],
                      index: int) -> None:
        if not isinstance(loc, dict) or not isinstance(loc.get("url"), str):
            raise BadRequest("A location is an object with a 'url' and 'metadata'.")
        unknown = set(loc) - {"url", "metadata", "validation_data"}
        if unknown:
            raise BadRequest(f"Unknown location keys: {', '.join(sorted(unknown))}.")
        meta = loc.get("metadata", {})
        if not isinstance(meta, dict):
            raise BadRequest("Location metadata must be an object.")
        if img.status not in ("queued", "active"):
            raise Conflict(f"Locations cannot be added to an image in status {img.status}.")
        url = loc["url"]
        if any(x["url"] == url for x in self.location_docs(img)):
            raise BadRequest(f"Location {url!r} is already recorded for this image.")
        vd = loc.get("validation_data")
        _conflicts(img, vd)
        vd = check_validation_data(vd)
        size = sizes.get(url)
        if url not in sizes:  # not prepared: a programming error, never trust a URL unread
            raise BadRequest(f"Location {url!r} was not checked.")
        if img.size is not None and size is not None and size != img.size:
            raise Conflict(f"Location {url!r} holds {size} bytes; the image has {img.size}.")
        internal = dict(img.internal or {})
        locs = url_locations(internal)
        locs.insert(min(index, len(locs)), {"url": url, "metadata": meta})
        internal["url_locations"] = locs
        img.internal = internal
        if img.status == "queued":
            img.status = "active"
            img.size = size
            img.location = url
            img.checksum = vd.get("checksum")
            img.os_hash_algo = vd.get("os_hash_algo")
            img.os_hash_value = vd.get("os_hash_value")
        elif img.location is None:
            img.location = url

    def _drop_location(self, img: Image, url: str, dropped: list[str]) -> None:
        internal = dict(img.internal or {})
        urls = url_locations(internal)
        if any(x["url"] == url for x in urls):
            internal["url_locations"] = [x for x in urls if x["url"] != url]
        else:
            files = dict(internal.get("locations") or {})
            internal["locations"] = {k: v for k, v in files.items() if v != url}
            dropped.append(url)
        img.internal = internal
        remaining = self.location_docs(img)
        img.location = remaining[0]["url"] if remaining else None

    # ------------------------------------------------------------------ API 2.17
    def add_location(self, ctx: RequestContext, image_id: str, body: Any,
                     request_id: str) -> str:
        """``POST /v2/images/{id}/locations``: returns the id of the hashing task."""
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            raise BadRequest("Request body must be an object with a 'url'.")
        unknown = set(body) - {"url", "validation_data"}
        if unknown:
            raise BadRequest(f"Unknown keys: {', '.join(sorted(unknown))}.")
        vd = check_validation_data(body.get("validation_data"))
        url = body["url"]
        with self.m.db.reader() as s:
            img = self.m.writable_row(ctx, s, image_id, "add_image_location")
            if img.status != "queued" or self.location_docs(img):
                raise Conflict(f"Image {image_id} must be queued and have no location to "
                               f"be given one (its status is {img.status}).")
        size = self._location_size(url)
        now = utcnow()
        with self.m.db.transaction() as s:
            img = self.m.writable_row(ctx, s, image_id, "add_image_location")
            if img.status != "queued" or self.location_docs(img):
                raise Conflict(f"Image {image_id} changed while its location was checked.")
            internal = dict(img.internal or {})
            internal["url_locations"] = [{"url": url, "metadata": {}}]
            img.internal = internal
            img.location = url
            img.size = size
            img.status = "active"
            img.checksum = vd.get("checksum")
            img.os_hash_algo = vd.get("os_hash_algo", "sha512")
            img.os_hash_value = vd.get("os_hash_value")
            self.m.touch(img)
            task = new_task(ctx, img, "location_import", request_id, now,
                            {"image_id": image_id, "loc_url": url, "validation_data": vd})
            s.add(task)
            return task.id

    def run_location_task(self, task_id: str) -> None:
        """Hash the data of a new location and check it against its validation data."""
        with self.m.db.reader() as s:
            task = s.get(ImageTask, task_id)
            if task is None:
                return
            image_id = task.image_id
            url = task.input["loc_url"]
            vd = dict(task.input.get("validation_data") or {})
        algo = vd.get("os_hash_algo", "sha512")
        md5 = hashlib.md5(usedforsecurity=False)
        digest = hashlib.new(algo)
        size = 0
        try:
            since_check = 0
            for chunk in self.m.stores.open(url, chunk_size=1 << 20):
                md5.update(chunk)
                digest.update(chunk)
                size += len(chunk)
                since_check += len(chunk)
                if since_check >= CANCEL_CHECK_BYTES:
                    since_check = 0
                    with self.m.db.reader() as s:
                        if s.scalar(select(Image.id).where(Image.id == image_id)) is None:
                            return  # the image was deleted: nothing left to record
            got = {"checksum": md5.hexdigest(), "os_hash_algo": algo,
                   "os_hash_value": digest.hexdigest()}
            bad = [k for k in ("checksum", "os_hash_value") if k in vd and vd[k] != got[k]]
        except (StoreError, OSError) as exc:
            got, bad = {}, [f"read failed: {exc}"]
        with self.m.db.transaction() as s:
            img = s.get(Image, image_id)
            task = s.get(ImageTask, task_id)
            if img is None or task is None:
                return
            if bad:
                img.status = "queued"
                img.checksum = img.os_hash_algo = img.os_hash_value = None
                message = f"location data does not match: {', '.join(bad)}"
                LOG.warning("location of image %s refused: %s", image_id, message)
                finish_task(s, task_id, "failure", message, None)
            else:
                img.checksum = got["checksum"]
                img.os_hash_algo = got["os_hash_algo"]
                img.os_hash_value = got["os_hash_value"]
                if img.size is None:
                    img.size = size
                finish_task(s, task_id, "success", "", {"image_id": image_id})
            self.m.touch(img)
