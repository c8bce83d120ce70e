"""Volume type encryption (Cinder's ``/types/{id}/encryption``): what encryption the volumes
of a type ask for (provider, cipher, key size, control location).

The specs are kept and served as Cinder does; a volume of an encrypted type needs a key
manager (Barbican) to hold its key, which this cloud does not run, so such a volume is
refused with 400 rather than made unencrypted under an encrypted type. While volumes of a
type exist, its encryption cannot be created, changed or removed (Cinder's rule).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Protocol, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session

from onestack.common.errors import BadRequest, Conflict, NotFound
from onestack.common.timeutils import isotime, utcnow
from onestack.db.volume import Volume, VolumeType, VolumeTypeEncryption

T = TypeVar("T")


class Sessions(Protocol):
    """The volume manager's transactions (what encryption types are written through)."""

    def write(self, fn: Callable[[Session], T]) -> T: ...

    def read(self, fn: Callable[[Session], T]) -> T: ...

#: The fields of an encryption spec.
FIELDS = ("provider", "cipher", "key_size", "control_location")


def parse(body: Any, create: bool) -> dict[str, Any]:
    """The ``encryption`` object of a create (``provider`` and ``control_location``
    required) or update request, checked (400 for anything else)."""
    if not isinstance(body, dict) or not isinstance(body.get("encryption"), dict) \
            or set(body) != {"encryption"}:
        raise BadRequest("Invalid input for field/attribute encryption: an 'encryption' "
                         "object is required.")
    spec = dict(body["encryption"])
    unknown = set(spec) - set(FIELDS)
    if unknown:
        raise BadRequest(f"Invalid input for field/attribute encryption: additional "
                         f"properties are not allowed ({', '.join(sorted(unknown))}).")
    if create:
        for key in ("provider", "control_location"):
            if key not in spec:
                raise BadRequest(f"Invalid input for field/attribute encryption: '{key}' "
                                 "is a required property.")
    if "provider" in spec and (not isinstance(spec["provider"], str)
                               or len(spec["provider"]) > 255):
        raise BadRequest("Invalid input for field/attribute provider: a string of at most "
                         "255 characters is required.")
    if "cipher" in spec and spec["cipher"] is not None and (
            not isinstance(spec["cipher"], str) or len(spec["cipher"]) > 255):
        raise BadRequest("Invalid input for field/attribute cipher: a string of at most "
                         "255 characters or null is required.")
    if "control_location" in spec and spec["control_location"] not in ("front-end",
                                                                        "back-end"):
        raise BadRequest("Invalid input for field/attribute control_location: it must be "
                         "'front-end' or 'back-end'.")
    if "key_size" in spec and spec["key_size"] is not None:
        size = spec["key_size"]
        if isinstance(size, bool) or not (
                isinstance(size, int) or (isinstance(size, str) and size.isdigit())):
            raise BadRequest("Invalid input for field/attribute key_size: a non-negative "
                             "integer is required.")
        if int(size) > 65536:
            raise BadRequest("Invalid input for field/attribute key_size: at most 65536.")
        spec["key_size"] = int(size)
    return spec


def view(row: VolumeTypeEncryption) -> dict[str, Any]:
    """Cinder's show of a type's encryption."""
    return {"volume_type_id": row.volume_type_id, "encryption_id": row.encryption_id,
            "provider": row.provider, "cipher": row.cipher, "key_size": row.key_size,
            "control_location": row.control_location, "deleted": False,
            "created_at": isotime(row.created_at, subsecond=True),
            "updated_at": isotime(row.updated_at, subsecond=True) if row.updated_at else None,
            "deleted_at": None}


def encrypted(s: Session, type_id: str | None) -> bool:
    return bool(type_id) and s.get(VolumeTypeEncryption, type_id) is not None


class EncryptionTypes:
    """Encryption specs of volume types (``m``: the volume manager, for transactions)."""

    def __init__(self, manager: Sessions) -> None:
        self.m = manager

    @staticmethod
    def _type(s: Session, type_id: str) -> VolumeType:
        vt = s.get(VolumeType, type_id)
        if vt is None:
            raise NotFound(f"Volume type {type_id} could not be found.")
        return vt

    @staticmethod
    def _unused(s: Session, type_id: str, verb: str) -> None:
        if s.scalar(select(Volume.id).where(Volume.volume_type_id == type_id).limit(1)):
            raise BadRequest(f"Cannot {verb} encryption specs. Volume type in use.")

    def get(self, type_id: str) -> dict[str, Any]:
        """The type's encryption (``{}`` when it has none; 404 for no such type)."""
        def run(s: Session) -> dict[str, Any]:
            self._type(s, type_id)
            row = s.get(VolumeTypeEncryption, type_id)
            return view(row) if row is not None else {}
        return dict(self.m.read(run))

    def create(self, type_id: str, spec: dict[str, Any]) -> dict[str, Any]:
        def run(s: Session) -> dict[str, Any]:
            self._unused(s, type_id, "create")
            self._type(s, type_id)
            if s.get(VolumeTypeEncryption, type_id) is not None:
                raise Conflict(f"Volume type encryption for type {type_id} already "
                               "exists.")
            row = VolumeTypeEncryption(
                volume_type_id=type_id, encryption_id=str(uuid.uuid4()),
                provider=spec["provider"], cipher=spec.get("cipher"),
                key_size=spec.get("key_size"), control_location=spec["control_location"],
                created_at=utcnow())
            s.add(row)
            return {"volume_type_id": type_id, "encryption_id": row.encryption_id,
                    **{k: getattr(row, k) for k in FIELDS}}
        return dict(self.m.write(run))

    def _existing(self, s: Session, type_id: str, encryption_id: str,
                  verb: str) -> VolumeTypeEncryption:
        """The type's encryption ``encryption_id`` when it may change (404, 400 in use)."""
        self._type(s, type_id)
        self._unused(s, type_id, verb)
        row = s.get(VolumeTypeEncryption, type_id)
        if row is None or row.encryption_id != encryption_id:
            raise NotFound(f"Volume type encryption for type {type_id} does not exist.")
        return row

    def update(self, type_id: str, encryption_id: str, spec: dict[str, Any]) -> None:
        def run(s: Session) -> None:
            row = self._existing(s, type_id, encryption_id, "update")
            for key, value in spec.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
        self.m.write(run)

    def delete(self, type_id: str, encryption_id: str) -> None:
        def run(s: Session) -> None:
            s.delete(self._existing(s, type_id, encryption_id, "delete"))
        self.m.write(run)
