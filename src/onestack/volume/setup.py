"""Wiring of the block-storage service for ``onestack up``: driver, manager, API app."""

from __future__ import annotations

import shutil
import socket

from starlette.types import ASGIApp

from onestack.api.app import TokenValidator, add_declared, make_app
from onestack.config import Settings
from onestack.db.engine import Database
from onestack.drivers.volume.base import VolumeDriver
from onestack.volume.api import VolumeAPI, build_policy
from onestack.volume.api_admin import AdminRoutes
from onestack.volume.api_attachments import AttachmentRoutes
from onestack.volume.api_backups import BackupRoutes
from onestack.volume.api_groups import GroupRoutes
from onestack.volume.api_metadata import add_metadata_routes
from onestack.volume.api_qos import QosRoutes
from onestack.volume.api_quotas import QuotaRoutes
from onestack.volume.api_snapshots import SnapshotRoutes
from onestack.volume.api_transfers import TransferRoutes
from onestack.volume.api_types import TypeRoutes
from onestack.volume.api_volume_actions import VolumeActionRoutes
from onestack.volume.api_volumes import VolumeRoutes
from onestack.volume.attachments import Attachments
from onestack.volume.backup_store import DirectoryBackupStore
from onestack.volume.backups import Backups
from onestack.volume.images import ImageSource
from onestack.volume.manager import VolumeManager
from onestack.volume.microversion import VolumeVersionLayer


def build_volume_driver(settings: Settings) -> VolumeDriver:
    """``volume_driver``: ``file`` (sparse files under the data dir, the default) or
    ``fake`` (in memory: a test double)."""
    if settings.volume_driver == "fake":
        from onestack.drivers.volume.fake import FakeVolumeDriver

        return FakeVolumeDriver(settings.volume_fake_capacity_gb)
    if settings.volume_driver != "file":
        raise ValueError(f"unknown volume_driver {settings.volume_driver!r}")
    from onestack.drivers.volume.file import FileVolumeDriver

    return FileVolumeDriver(settings.data_dir / "volumes",
                            settings.volume_max_over_subscription_ratio)


def build_volume(settings: Settings, db: Database, tokens: TokenValidator,
                 policy_file: str | None, auth_uri: str, images: ImageSource | None = None
                 ) -> tuple[VolumeManager, ASGIApp, VolumeAPI]:
    """``images``: the image service (volumes from images read its files; None: no
    volumes from images)."""
    manager = VolumeManager(db, build_volume_driver(settings), build_policy(policy_file),
                            host=settings.compute_host or socket.gethostname(),
                            images=images)
    if settings.volume_unified_limits:
        from onestack.identity.limits import UnifiedLimits

        manager.unified_limits = UnifiedLimits("block-storage", settings.region)
    manager.ensure_default_type()
    manager.reconcile()
    backups = Backups(manager, DirectoryBackupStore(settings.data_dir / "backups"))
    manager.backup_usage = backups.usage
    backups.reconcile()
    api = VolumeAPI(manager, manager.policy, auth_uri, backups=backups)
    scratch = settings.data_dir / "volumes-scratch"
    shutil.rmtree(scratch, ignore_errors=True)  # conversions a crash interrupted
    scratch.mkdir(parents=True, exist_ok=True, mode=0o700)
    api.scratch_dir = str(scratch)
    # One handler per resource, each declaring its routes (``api/routes.py``).
    add_declared(api.service, VolumeRoutes(api), VolumeActionRoutes(api), SnapshotRoutes(api))
    add_metadata_routes(api)
    api.attachments = Attachments(manager)
    add_declared(api.service, QuotaRoutes(api), TypeRoutes(api), TransferRoutes(api),
                 QosRoutes(api), GroupRoutes(api), BackupRoutes(api, backups), AdminRoutes(api),
                 AttachmentRoutes(api.attachments, api.guard_nova))
    app = VolumeVersionLayer(make_app(api.service, tokens, settings.max_request_body_size))
    return manager, app, api
