"""Volume transfers: a project offers a volume; the project that presents the transfer's id
and auth key takes it (the volume, and its snapshots unless ``no_snapshots``), as Cinder's
``os-volume-transfer``/``volume-transfers``. The volume waits ``awaiting-transfer`` meanwhile;
deleting the offer makes it ``available`` again."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, NotFound
from onestack.common.timeutils import utcnow
from onestack.db.volume import Snapshot, Transfer, Volume
from onestack.volume.manager import VolumeManager
from onestack.volume.visibility import scoped, visible


def _hash(salt: str, key: str) -> str:
    return hashlib.sha256((salt + key).encode()).hexdigest()


class Transfers:
    """Transfer bookkeeping over the volume manager's database."""

    def __init__(self, manager: VolumeManager) -> None:
        self.m = manager

    def create(self, ctx: RequestContext, volume_id: str, name: str | None,
               no_snapshots: bool) -> tuple[Transfer, str]:
        """The transfer and its auth key (shown once)."""
        key = secrets.token_hex(8)

        def run(s: Session) -> Transfer:
            vol = visible(ctx, s.get(Volume, volume_id), "Volume", volume_id)
            self.m.enforce(ctx, "volume:create_transfer", vol.project_id)
            if vol.status != "available":
                raise BadRequest(f"Invalid volume: status must be available (volume "
                                 f"{volume_id} is {vol.status}).")
            snaps = list(s.scalars(select(Snapshot).where(Snapshot.volume_id == vol.id)))
            if not no_snapshots and any(sn.status != "available" for sn in snaps):
                raise BadRequest("Invalid volume: snapshots of the volume must be available "
                                 "to transfer it.")
            salt = secrets.token_hex(8)
            t = Transfer(id=str(uuid.uuid4()), volume_id=vol.id, project_id=vol.project_id,
                         name=name, salt=salt, key_hash=_hash(salt, key),
                         no_snapshots=no_snapshots, created_at=utcnow())
            vol.status = "awaiting-transfer"
            s.add(t)
            return t
        return self.m.write(run), key

    def _visible(self, ctx: RequestContext, s: Session, transfer_id: str) -> Transfer:
        return visible(ctx, s.get(Transfer, transfer_id), "Transfer", transfer_id)

    def list(self, ctx: RequestContext, all_projects: bool) -> list[Transfer]:
        def run(s: Session) -> list[Transfer]:
            return list(s.scalars(scoped(select(Transfer).order_by(Transfer.created_at),
                                         Transfer.project_id, ctx, all_projects)))
        return self.m.read(run)

    def get(self, ctx: RequestContext, transfer_id: str) -> Transfer:
        def run(s: Session) -> Transfer:
            t = self._visible(ctx, s, transfer_id)
            self.m.enforce(ctx, "volume:get_transfer", t.project_id)
            return t
        return self.m.read(run)

    def delete(self, ctx: RequestContext, transfer_id: str) -> None:
        def run(s: Session) -> None:
            t = self._visible(ctx, s, transfer_id)
            self.m.enforce(ctx, "volume:delete_transfer", t.project_id)
            vol = s.get(Volume, t.volume_id)
            if vol is not None and vol.status == "awaiting-transfer":
                vol.status = "available"
            s.delete(t)
        self.m.write(run)

    def accept(self, ctx: RequestContext, transfer_id: str, auth_key: str) -> Transfer:
        """Any project holding the key takes the volume (a 404 for a wrong id, 400 for a
        wrong key, Cinder's answers)."""
        def run(s: Session) -> Transfer:
            t = s.get(Transfer, transfer_id)
            if t is None:
                raise NotFound(f"Transfer {transfer_id} could not be found.")
            self.m.enforce(ctx, "volume:accept_transfer", ctx.project_id)
            if not hmac.compare_digest(t.key_hash, _hash(t.salt, auth_key)):
                raise BadRequest(f"Invalid auth key: Attempt to transfer {t.volume_id} with "
                                 "invalid auth key.")
            vol = s.get(Volume, t.volume_id)
            if vol is None:
                raise NotFound(f"Volume {t.volume_id} could not be found.")
            project = ctx.project_id or ""
            snaps = [] if t.no_snapshots else list(s.scalars(
                select(Snapshot).where(Snapshot.volume_id == vol.id)))
            self.m.check_quota(s, project, volumes=1, snapshots=len(snaps),
                               gigabytes=vol.size + sum(sn.size for sn in snaps))
            vol.project_id = project
            vol.user_id = ctx.user_id or ""
            vol.status = "available"
            vol.updated_at = utcnow()
            for sn in snaps:
                sn.project_id = project
                sn.user_id = ctx.user_id or ""
            s.delete(t)
            return t
        return self.m.write(run)
