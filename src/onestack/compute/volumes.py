"""The compute side of the block-storage service (Cinder): the seam between compute and
volume.

``ComputeVolumes`` is everything compute asks of the volume service, in Nova's terms
(``nova/volume/cinder.py`` is its model, new-style attachments only): look a volume up,
reserve it for a server (an attachment), connect the attachment for the host that runs the
guest (the connection info the hypervisor opens), complete it once the guest has the disk,
and release it (attachment delete) when the disk is gone; a volume marked
``delete_on_termination`` is deleted with its server.

``onestack.volume.for_compute.LocalVolumes`` implements it in process over the volume
service's manager and attachments (``onestack up`` runs both services in one process). A
compute API on a host without the volume service would be given an HTTP implementation of
the same methods (``/v3/attachments`` at 3.44); nothing else changes. Every method is
synchronous (callers run them in worker threads) and raises compute-style ``APIError``s with
Nova's messages.

A *block device* is how compute records a volume of a server (``system_metadata
["block_devices"]``, Nova's block device mapping): ``{"volume_id", "attachment_id",
"device", "tag", "delete_on_termination", "bdm_uuid", "boot_index", "connection_info",
"mode"}``. Drivers receive them in the instance spec (``block_devices``).
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

from onestack.common.context import RequestContext

LOG = logging.getLogger(__name__)


class ComputeVolumes(Protocol):
    """What the compute API and agents need of the volume service (see module docstring)."""

    def get(self, ctx: RequestContext, volume_id: str) -> dict[str, Any]: ...

    def reserve(self, ctx: RequestContext, volume_id: str, instance_uuid: str) -> str: ...

    def connect(self, attachment_id: str, host: str, device: str) -> dict[str, Any]: ...

    def complete(self, attachment_id: str) -> None: ...

    def release(self, attachment_id: str) -> None: ...

    def begin_detaching(self, volume_id: str) -> None: ...

    def roll_detaching(self, volume_id: str) -> None: ...

    def delete(self, volume_id: str) -> None: ...

    def attached_servers(self) -> set[str]: ...

    def reimage(self, volume_id: str, image_id: str) -> None:
        """Write ``image_id``'s disk over the (in-use) root volume of a server being rebuilt
        (blocking; Nova's rebuild at 2.93 through Cinder's re-image); raises when the
        volume service could not."""
        ...

    def get_snapshot(self, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]: ...

    def create(self, project_id: str, user_id: str, size: int, name: str,
               image_id: str | None = None, snapshot_id: str | None = None,
               volume_type: str | None = None) -> dict[str, Any]: ...

    # Nova's volume proxy (``os-volumes``/``os-snapshots``, ``compute/api_volume_proxy.py``),
    # in the neutral shapes ``LocalVolumes.describe*`` gives.

    def list_volumes(self, ctx: RequestContext) -> list[dict[str, Any]]: ...

    def show_volume(self, ctx: RequestContext, volume_id: str) -> dict[str, Any]: ...

    def begin_create(self, ctx: RequestContext, size: int | None, name: str | None,
                     description: str | None, volume_type: str | None,
                     metadata: dict[str, str], availability_zone: str | None,
                     snapshot_id: str | None, image_id: str | None) -> dict[str, Any]:
        """Record a new volume (``finish_create`` does the storage work)."""
        ...

    def finish_create(self, volume_id: str, image_id: str | None = None) -> None: ...

    def delete_volume(self, ctx: RequestContext, volume_id: str) -> None: ...

    def finish_delete(self, volume_id: str) -> None: ...

    def list_snapshots(self, ctx: RequestContext) -> list[dict[str, Any]]: ...

    def show_snapshot(self, ctx: RequestContext, snapshot_id: str) -> dict[str, Any]: ...

    def begin_snapshot(self, ctx: RequestContext, volume_id: str, name: str | None,
                       description: str | None, force: bool) -> dict[str, Any]: ...

    def finish_snapshot(self, snapshot_id: str) -> None: ...

    def delete_snapshot(self, ctx: RequestContext, snapshot_id: str) -> None: ...

    def finish_delete_snapshot(self, snapshot_id: str) -> None: ...


def release_all(volumes: ComputeVolumes, instance_uuid: str,
                block_devices: list[dict[str, Any]]) -> None:
    """A deleted server's volumes: attachments released, ``delete_on_termination`` volumes
    deleted (never raises: what fails is logged and retried by the next start's sweep)."""
    for bdm in block_devices:
        try:
            if bdm.get("attachment_id"):
                volumes.release(bdm["attachment_id"])
            if bdm.get("delete_on_termination"):
                volumes.delete(bdm["volume_id"])
        except Exception:  # noqa: BLE001 - keep releasing the others
            LOG.exception("could not release volume %s of deleted server %s",
                          bdm.get("volume_id"), instance_uuid)
