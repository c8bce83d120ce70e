"""Re-imaging a volume (Cinder's ``os-reimage``, 3.68; what Nova's rebuild of a volume-backed
server at 2.93 asks for): the volume's data is replaced by an image's disk and its
``volume_image_metadata`` by that image's.

``begin`` checks and moves the volume to ``downloading`` (its status before is kept in the
admin metadata), ``finish`` writes the data and puts the status back. The backend replaces
the data whole (a new file renamed over the old one), so a crash leaves the old or the new
disk, never a mix; ``reconcile`` moves a volume a crash left ``downloading`` to ``error``,
as Cinder's volume service does on start.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy.orm import Session

from onestack.common.context import RequestContext
from onestack.common.errors import BadRequest, Conflict
from onestack.common.timeutils import utcnow
from onestack.db.volume import Volume
from onestack.drivers.volume.base import VolumeDriverError
from onestack.volume.images import VolumeImage
from onestack.volume.visibility import visible

LOG = logging.getLogger(__name__)

#: Admin metadata key that keeps the status a volume goes back to after a re-image.
PREVIOUS = "reimage_previous_status"


def begin(m: Any, ctx: RequestContext, volume_id: str, image: VolumeImage,
          reserved: bool) -> None:
    """Check a re-image of ``volume_id`` (``m``: the volume manager) and mark the volume
    ``downloading``: from ``available``/``error``, or ``reserved`` with ``reserved``."""
    def run(s: Session) -> None:
        row = visible(ctx, s.get(Volume, volume_id, with_for_update=True), "Volume",
                      volume_id)
        m.enforce(ctx, "volume:reimage_reserved" if row.status == "reserved"
                  else "volume:reimage", row.project_id)
        if len(row.attachments or []) > 1:
            raise Conflict("Cannot re-image a volume which is attached to more than one "
                           "server.")
        allowed = ("available", "error", "reserved") if reserved else ("available", "error")
        if row.status not in allowed:
            raise BadRequest(f"Invalid volume: Volume {volume_id} status must be "
                             f"{' or '.join(allowed)}, but current status is {row.status}.")
        image.check_fits(row.size)
        mark(row)
    m.write(run)


def mark(row: Volume) -> None:
    """``row`` goes ``downloading``; its current status is kept to go back to."""
    row.admin_metadata = {**(row.admin_metadata or {}), PREVIOUS: row.status}
    row.status = "downloading"
    row.updated_at = utcnow()


def finish(m: Any, volume_id: str, image: VolumeImage) -> bool:
    """Write ``image``'s disk over the volume's data (blocking); the volume gets the image's
    metadata, becomes bootable and goes back to its status before (``error`` and a user
    message when the backend fails). True when the data was replaced."""
    vol = m.read(lambda s: s.get(Volume, volume_id))
    if vol is None or vol.status != "downloading":
        return False
    try:
        loc = m.driver.create_from_image(vol.id, vol.size, image.path, image.disk_format)
    except VolumeDriverError as exc:
        LOG.warning("volume %s: re-image failed: %s", volume_id, exc)
        _end(m, volume_id, None, None)
        m.add_message(vol.project_id, "VOLUME", volume_id, "VOLUME_VOLUME_003_002",
                      "reimage volume:Could not re-image the volume.")
        return False
    _end(m, volume_id, loc, image)
    return True


def _end(m: Any, volume_id: str, location: str | None, image: VolumeImage | None) -> None:
    def run(s: Session) -> None:
        row = s.get(Volume, volume_id)
        if row is None:
            return
        admin = dict(row.admin_metadata or {})
        previous = admin.pop(PREVIOUS, "available")
        row.admin_metadata = admin
        if image is None:
            row.status = "error"
        else:
            row.status = previous
            row.provider_location = location
            row.image_metadata = image.metadata()
            row.bootable = True
        row.updated_at = utcnow()
    m.write(run)


def reconcile(m: Any, volume_id: str) -> None:
    """A volume a crash left ``downloading``: ``error`` (its data is the old or the new disk
    whole, which one is not known)."""
    _end(m, volume_id, None, None)
