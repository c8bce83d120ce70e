"""``onestack image-worker``: one more image API process next to ``onestack up``.

Glance deployments run several API workers (on several nodes) over one database and one
staging area; Tempest calls the second one ``image_remote``. This process serves the same
image API on its own port, over the same database and data directory as the cloud it joins:
an image staged through one process can be imported, deleted or downloaded through the other,
and an import runs in the process that was asked for it. It keeps its own image cache
(``DATA/images/cache-<port>/``), as each Glance node does. It validates tokens itself with the
cloud's Fernet keys and follows revocations like the identity workers do.

It never runs the start-up recovery of ``onestack up`` (that would roll back the main
process's uploads in progress); start it after the cloud, and stop it before restarting the
cloud. It does not register itself in the catalog: an operator adds an endpoint of a service
type of their choosing (``image_remote`` for Tempest's ``alternate_image_endpoint``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import uvicorn

from onestack.api.app import make_app
from onestack.api.http import HttpProtocol
from onestack.config import Settings
from onestack.db.engine import Database
from onestack.db.migrate import upgrade
from onestack.drivers.imagestore.file import FileStore
from onestack.identity.manager import IdentityManager
from onestack.identity.service import build_identity
from onestack.image.api import AcceptCapture, ImageAPI, build_policy
from onestack.image.manager import ImageManager
from onestack.image.metadefs_api import add_metadef_routes

LOG = logging.getLogger(__name__)


def build_worker(settings: Settings,
                 port: int) -> tuple[uvicorn.Server, Database, IdentityManager]:
    """The worker's server (not started), its database and its identity manager."""
    db = Database(settings.db_url, settings.database_pool_size)
    upgrade(db.engine)  # a no-op once the cloud has migrated; fails early on a bad DB
    parts = build_identity(settings, db)
    parts.manager.refresh()
    store = FileStore(settings.data_dir / "images")
    policy = build_policy(settings.policy_file or None)
    manager = ImageManager(db, store, policy, settings.image_quota_bytes,
                           stores=settings.image_stores, url_allow=settings.image_url_allow,
                           show_locations=settings.image_locations,
                           require_format_match=settings.image_require_format_match)
    if settings.image_unified_limits:
        from onestack.identity.limits import UnifiedLimits

        manager.unified_limits = UnifiedLimits("image", settings.region)
    api = ImageAPI(manager, store, policy, settings.url("identity"),
                   max_json_body=settings.image_max_json_body,
                   cache_dir=settings.data_dir / "images" / f"cache-{port}")
    add_metadef_routes(api)
    app = AcceptCapture(make_app(api.service, parts.tokens, 0))
    config = uvicorn.Config(app, host=settings.bind, port=port, lifespan="off",
                            access_log=False, log_level=settings.log_level,
                            timeout_keep_alive=75, server_header=False,
                            http=HttpProtocol)
    return uvicorn.Server(config), db, parts.manager


async def serve(settings: Settings, port: int) -> None:
    """Serve until SIGTERM/SIGINT, refreshing identity state (revocations) periodically."""
    server, db, identity = build_worker(settings, port)  # uvicorn handles SIGTERM/SIGINT

    async def refresh() -> None:
        interval = max(0.2, settings.cache_refresh_interval)
        while not server.should_exit:
            await asyncio.sleep(interval)
            try:
                await asyncio.to_thread(identity.refresh)
            except Exception:  # noqa: BLE001 - keep refreshing, log the failure
                LOG.exception("identity refresh failed")

    watcher = asyncio.create_task(refresh())
    try:
        await server.serve()
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await watcher
        db.dispose()
